/*
 * Active search that waits for Chinese input-method composition to end.
 *
 * While someone types 充电 with a pinyin IME, the box holds "chong'dian" and fires `input` events
 * with event.isComposing = true; searching for those half-typed letters is noise (and a request per
 * keystroke). This script watches every <input data-active-search>: it ignores input while a
 * composition is open (compositionstart … compositionend), and once typing pauses (or the
 * composition ends) it dispatches one bubbling `search-ready` event. The form listens for it with
 * hx-trigger="search-ready" and htmx fetches the results. Without JavaScript the form still works
 * as a plain GET form with its submit button.
 */
(function () {
  "use strict";
  var DELAY_MS = 350;

  function attach(input) {
    if (input.dataset.activeSearchBound) return;
    input.dataset.activeSearchBound = "1";
    var composing = false;
    var timer = null;
    var last = input.value;

    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(function () {
        if (composing || input.value === last) return;
        last = input.value;
        input.dispatchEvent(new CustomEvent("search-ready", { bubbles: true }));
      }, DELAY_MS);
    }

    input.addEventListener("compositionstart", function () {
      composing = true;
      clearTimeout(timer);
    });
    input.addEventListener("compositionend", function () {
      composing = false;
      schedule();
    });
    input.addEventListener("input", function (event) {
      if (composing || event.isComposing) return;
      schedule();
    });
  }

  function scan(root) {
    (root || document).querySelectorAll("input[data-active-search]").forEach(attach);
  }

  // A filter <select> in the same form searches at once. (This was an hx-trigger filter expression,
  // change[target.tagName==='SELECT'], which htmx evaluates with eval – refused by the CSP.)
  document.addEventListener("change", function (event) {
    var field = event.target;
    if (field.tagName === "SELECT" && field.form && field.form.querySelector("input[data-active-search]")) {
      field.dispatchEvent(new CustomEvent("search-ready", { bubbles: true }));
    }
  });

  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  document.addEventListener("htmx:load", function (event) { scan(event.target); });
})();
