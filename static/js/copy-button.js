/*
 * Copy buttons: <button data-copy-target="#id" data-copied-text="Copied"> copies the target's value
 * (or text) to the clipboard and says so for two seconds. Without the Clipboard API (plain http) it
 * selects the text, so the person can press Ctrl+C.
 */
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var target = document.querySelector(button.dataset.copyTarget);
    if (!target) return;
    var text = "value" in target ? target.value : target.textContent;
    var label = button.innerHTML;
    function done() {
      button.textContent = button.dataset.copiedText || "✓";
      setTimeout(function () { button.innerHTML = label; }, 2000);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { target.select && target.select(); });
    } else if (target.select) {
      target.select();
    }
  });
})();
