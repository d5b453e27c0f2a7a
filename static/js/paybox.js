/* Re-initialise Bootstrap Italia widgets on content that htmx swaps in (they only run on DOMContentLoaded). */
(function () {
  if (!window.htmx) { return; }
  htmx.onLoad(function (root) {
    if (!window.bootstrap || !bootstrap.Input) { return; }
    root.querySelectorAll('input.form-control, textarea.form-control').forEach(function (el) {
      bootstrap.Input.getOrCreateInstance(el);
    });
  });
})();
