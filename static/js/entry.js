/* New-position form: when the live check swaps a field's error box, mark the field itself as (in)valid, so
   screen readers and the red border agree with the message, and keep the error summary in step. The rest of the page works without this file. */
(function () {
  document.addEventListener('htmx:afterSwap', function (event) {
    var box = event.detail.target;
    if (!box || !box.classList || !box.classList.contains('field-error') || !/-error$/.test(box.id)) { return; }
    var field = document.getElementById(box.id.replace(/-error$/, ''));
    if (!field || !/^(INPUT|SELECT|TEXTAREA)$/.test(field.tagName)) { return; }
    var invalid = box.textContent.trim() !== '';
    field.classList.toggle('is-invalid', invalid);
    field.setAttribute('aria-invalid', invalid ? 'true' : 'false');
    if (!invalid) { dropFromSummary(field.id); }
  });

  /* The error summary at the top lists what the last save refused: a field the live check now accepts leaves it,
     and the summary goes when nothing is left in it. */
  function dropFromSummary(id) {
    var summary = document.getElementById('form-errors');
    if (!summary) { return; }
    summary.querySelectorAll('a[href="#' + id + '"]').forEach(function (link) {
      var item = link.closest('li');
      if (item) { item.remove(); }
    });
    if (!summary.querySelector('li')) { summary.remove(); }
  }
})();
