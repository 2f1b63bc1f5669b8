/*
 * The score and limit history chart of /me/score/ (Chart.js, served from static/vendor/).
 * Data comes from a <script type="application/json" id="score-chart-data"> block (json_script), so
 * the page needs no inline script.
 */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var canvas = document.getElementById("score-chart");
    var source = document.getElementById("score-chart-data");
    if (!canvas || !source || typeof Chart === "undefined") return;
    var data = JSON.parse(source.textContent);
    function points(series) {
      return series.map(function (p) { return { x: new Date(p.x).getTime(), y: Number(p.y) }; });
    }
    function dateLabel(value) {
      var d = new Date(value);
      // Beijing time (UTC+8) whatever the device's zone, as every time on the site.
      var bj = new Date(d.getTime() + (8 * 60 + d.getTimezoneOffset()) * 60000);
      return bj.getFullYear() + "-" + String(bj.getMonth() + 1).padStart(2, "0") + "-" + String(bj.getDate()).padStart(2, "0");
    }
    new Chart(canvas, {
      type: "line",
      data: {
        datasets: [
          { label: data.labels.score, data: points(data.score), yAxisID: "score", stepped: true, borderColor: "#0d6efd", backgroundColor: "#0d6efd" },
          { label: data.labels.limit, data: points(data.limit), yAxisID: "limit", stepped: true, borderColor: "#198754", backgroundColor: "#198754" }
        ]
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", intersect: false },
        scales: {
          x: { type: "linear", ticks: { callback: dateLabel, maxTicksLimit: 5 } },
          score: { position: "left", suggestedMin: 350, suggestedMax: 950 },
          limit: { position: "right", grid: { drawOnChartArea: false }, beginAtZero: true }
        },
        plugins: { tooltip: { callbacks: { title: function (items) { return items.length ? dateLabel(items[0].parsed.x) : ""; } } } }
      }
    });
  });
})();
