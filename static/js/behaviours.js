/*
 * Small page behaviours that used to be inline event handlers (onchange=, onsubmit=). The Content
 * Security Policy (docs/security.md) runs no inline script, so they are declared with data attributes:
 *
 *   <select data-autosubmit>          submits its form when the choice changes;
 *   <form data-confirm="Sure?">       asks before submitting (Cancel keeps the page as it is).
 */
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var field = event.target.closest("[data-autosubmit]");
    if (field && field.form) {
      if (field.form.requestSubmit) field.form.requestSubmit(); else field.form.submit();
    }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
})();
