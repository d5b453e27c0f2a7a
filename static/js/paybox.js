/* Pay Box page glue: load Bootstrap Italia's fonts from our static folder, and re-initialise its widgets on
   content that htmx swaps in (they only run on DOMContentLoaded). */
(function () {
  if (window.bootstrap && bootstrap.loadFonts) { bootstrap.loadFonts(); }
  if (!window.htmx) { return; }
  htmx.onLoad(function (root) {
    if (!window.bootstrap || !bootstrap.Input) { return; }
    root.querySelectorAll('input.form-control, textarea.form-control').forEach(function (el) {
      bootstrap.Input.getOrCreateInstance(el);
    });
  });
})();
