"""The subject (causale) of a payment, written by the officer as a template: ``Diritti di segreteria – {tipo}``.

Placeholders name form fields (and ``{voce}``, the chosen entry of a list amount). The result is what pagoPA shows
the citizen and prints on the receipt: at most 140 characters, spaces collapsed.
"""

from __future__ import annotations

import string

from portal.ledger.inputs import SUBJECT_MAX

#: Placeholders that are not fields.
SPECIAL = {"voce": "la voce scelta dall'elenco degli importi"}


class TemplateInvalid(ValueError):
    """The template is malformed or names a field the form does not have (Italian message for the officer)."""


def placeholders(template: str) -> list[str]:
    """The names used in ``template``, in order.

    :raise TemplateInvalid: unbalanced braces, formats or attribute access (``{a.b}``, ``{a:>3}``).
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateInvalid("Parentesi graffe non bilanciate: scrivere i campi come {nome_campo}.") from exc
    names = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or spec or conversion or not name.replace("_", "").isalnum() or not name.isascii():
            raise TemplateInvalid(f"Segnaposto non valido: {{{name}}}. Usare il nome di un campo, ad esempio "
                                  "{tipo_certificato}.")
        names.append(name)
    return names


def check(template: str, field_keys: set[str], *, has_choice: bool) -> None:
    """Check an officer's template against the form's fields.

    :raise TemplateInvalid: with what to correct.
    """
    text = (template or "").strip()
    if not text:
        raise TemplateInvalid("Indicare la causale del pagamento.")
    if len(text) > 300:
        raise TemplateInvalid("La causale può avere al massimo 300 caratteri (il testo finale al massimo 140).")
    for name in placeholders(text):
        if name == "voce" and has_choice:
            continue
        if name not in field_keys:
            raise TemplateInvalid(f"La causale usa {{{name}}}, che non è un campo del modulo.")


def render(template: str, values: dict[str, str]) -> str:
    """The subject for these displayed values (missing ones empty), collapsed and cut to 140 characters."""
    parts = []
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            parts.append(values.get(name) or "")
    text = " ".join("".join(parts).split())
    # A separator left dangling by an empty optional field ("Mensa – ") goes too.
    text = text.rstrip(" -–—:,;")
    return text[:SUBJECT_MAX]
