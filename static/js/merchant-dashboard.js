/*
 * Charts of the merchant dashboard. The figures come from the page itself ({{ chart|json_script }}),
 * so the script fetches nothing; without JavaScript the numbers above the charts are all there.
 */
(function () {
  "use strict";
  var source = document.getElementById("dashboard-data");
  if (!source || typeof Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  var daily = document.getElementById("chart-daily");
  if (daily) {
    new Chart(daily, {
      data: {
        labels: data.labels,
        datasets: [
          { type: "bar", label: data.text.orders, data: data.orders, yAxisID: "y", backgroundColor: "rgba(13,110,253,0.5)" },
          { type: "line", label: data.text.gmv, data: data.gmv.map(Number), yAxisID: "y1", borderColor: "#198754", tension: 0.2 },
          { type: "line", label: data.text.overdue, data: data.overdue, yAxisID: "y", borderColor: "#dc3545", tension: 0.2 }
        ]
      },
      options: {
        responsive: true,
        interaction: { mode: "index", intersect: false },
        scales: {
          y: { beginAtZero: true, position: "left", ticks: { precision: 0 } },
          y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } }
        }
      }
    });
  }
  var dpd = document.getElementById("chart-dpd");
  if (dpd) {
    new Chart(dpd, {
      type: "bar",
      data: {
        labels: data.dpd_labels,
        datasets: [{ label: data.text.dpd, data: data.dpd, backgroundColor: ["#ffc107", "#fd7e14", "#dc3545", "#6f1d1b"] }]
      },
      options: { responsive: true, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
    });
  }
})();
