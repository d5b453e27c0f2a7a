/* New-position form: when the live check swaps a field's error box, mark the field itself as (in)valid, so
   screen readers and the red border agree with the message. The rest of the page works without this file. */
(function () {
  document.addEventListener('htmx:afterSwap', function (event) {
    var box = event.detail.target;
    if (!box || !box.classList || !box.classList.contains('field-error') || !/-error$/.test(box.id)) { return; }
    var field = document.getElementById(box.id.replace(/-error$/, ''));
    if (!field || !/^(INPUT|SELECT|TEXTAREA)$/.test(field.tagName)) { return; }
    var invalid = box.textContent.trim() !== '';
    field.classList.toggle('is-invalid', invalid);
    field.setAttribute('aria-invalid', invalid ? 'true' : 'false');
  });
})();
