/* Pay Box page glue: load Bootstrap Italia's fonts from our static folder, and re-initialise its widgets on
   content that htmx swaps in (they only run on DOMContentLoaded). */
(function () {
  if (window.bootstrap && bootstrap.loadFonts) { bootstrap.loadFonts(); }
  if (!window.htmx) { return; }
  // After a swap that brings an error message, move the focus to it (WCAG 2.4.3 / 4.1.3).
  htmx.on('htmx:afterSettle', function () {
    var alert = document.querySelector('[data-focus-after-swap]');
    if (alert) { alert.focus(); }
  });
  htmx.onLoad(function (root) {
    if (!window.bootstrap || !bootstrap.Input) { return; }
    root.querySelectorAll('input.form-control, textarea.form-control').forEach(function (el) {
      bootstrap.Input.getOrCreateInstance(el);
    });
  });
})();
