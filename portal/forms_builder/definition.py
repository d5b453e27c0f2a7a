"""A whole payment form: its fields, amount rule, subject template and which answers make the debtor.

:func:`check_definition` is what the builder runs before saving or publishing (every problem at once, on the input
to correct); :func:`fill` applies a citizen's answers and returns what the payment will be, or every field error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from portal.forms_builder import amounts, subjects
from portal.forms_builder.amounts import Amount, AmountInvalid, AmountRule
from portal.forms_builder.fields import KEY_RE, KINDS, AnswerError, FieldSpec, display_value, read_answer
from portal.ledger.errors import FieldError, ValidationFailed

MAX_FIELDS = 30
MAX_CHOICES = 50
LABEL_MAX = 100
HELP_MAX = 300
INTRO_MAX = 2000
CHOICE_MAX = 100


@dataclass(frozen=True)
class DebtorMapping:
    """Which fields give the debtor's fiscal code, name and (optionally) e-mail."""

    fiscal_code_field: str = ""
    name_field: str = ""
    email_field: str | None = None


@dataclass(frozen=True)
class FormDefinition:
    """What a citizen fills in to pay a service spontaneously."""

    title: str
    fields: tuple[FieldSpec, ...]
    amount: AmountRule
    subject_template: str
    debtor: DebtorMapping
    intro: str = ""

    def field(self, key: str) -> FieldSpec | None:
        """The field named ``key``, if any."""
        return next((f for f in self.fields if f.key == key), None)

    def to_dict(self) -> dict:
        """The JSON stored with each version."""
        return {"title": self.title, "intro": self.intro, "fields": [f.to_dict() for f in self.fields],
                "amount": self.amount.to_dict(), "subject_template": self.subject_template,
                "debtor": {"fiscal_code_field": self.debtor.fiscal_code_field, "name_field": self.debtor.name_field,
                           "email_field": self.debtor.email_field}}

    @classmethod
    def from_dict(cls, data: dict) -> FormDefinition:
        """The form stored by :meth:`to_dict`."""
        debtor = data.get("debtor") or {}
        return cls(title=data.get("title", ""), intro=data.get("intro") or "",
                   fields=tuple(FieldSpec.from_dict(f) for f in data.get("fields") or ()),
                   amount=AmountRule.from_dict(data.get("amount") or {}),
                   subject_template=data.get("subject_template", ""),
                   debtor=DebtorMapping(debtor.get("fiscal_code_field", ""), debtor.get("name_field", ""),
                                        debtor.get("email_field") or None))


def check_definition(form: FormDefinition) -> None:
    """Check a form as an officer built it.

    Field problems are reported on ``fields.<n>.<attribute>`` (``n`` from 1), the rest on the builder's inputs
    (``amount_cents``, ``subject_template``, ``debtor_fiscal_code_field``...).

    :raise ValidationFailed: with every problem found.
    """
    errors: list[FieldError] = []
    if not form.title.strip():
        errors.append(FieldError("title", "Indicare il titolo del modulo."))
    elif len(form.title) > LABEL_MAX:
        errors.append(FieldError("title", f"Il titolo può avere al massimo {LABEL_MAX} caratteri."))
    if len(form.intro) > INTRO_MAX:
        errors.append(FieldError("intro", f"Il testo introduttivo può avere al massimo {INTRO_MAX} caratteri."))
    if not form.fields:
        errors.append(FieldError("fields", "Il modulo deve avere almeno un campo."))
    if len(form.fields) > MAX_FIELDS:
        errors.append(FieldError("fields", f"Al massimo {MAX_FIELDS} campi."))
    seen: set[str] = set()
    for n, spec in enumerate(form.fields, start=1):
        _check_field(n, spec, seen, errors)
    by_key = {f.key: f for f in form.fields}
    errors += [FieldError(name, message) for name, message in amounts.validate_rule(form.amount, by_key)]
    try:
        subjects.check(form.subject_template, set(by_key), has_choice=form.amount.kind == "choice")
    except subjects.TemplateInvalid as exc:
        errors.append(FieldError("subject_template", str(exc)))
    _check_debtor(form.debtor, by_key, errors)
    if errors:
        raise ValidationFailed(errors)


def _check_field(n: int, spec: FieldSpec, seen: set[str], errors: list[FieldError]) -> None:
    at = f"fields.{n}"
    if not KEY_RE.match(spec.key or ""):
        errors.append(FieldError(f"{at}.key", "Il nome del campo usa lettere minuscole, cifre e '_' e inizia con "
                                              "una lettera (massimo 30 caratteri)."))
    elif spec.key in seen:
        errors.append(FieldError(f"{at}.key", f"Il nome {spec.key} è già usato da un altro campo."))
    seen.add(spec.key)
    if not spec.label.strip():
        errors.append(FieldError(f"{at}.label", "Indicare l'etichetta del campo."))
    elif len(spec.label) > LABEL_MAX:
        errors.append(FieldError(f"{at}.label", f"L'etichetta può avere al massimo {LABEL_MAX} caratteri."))
    if spec.kind not in KINDS:
        errors.append(FieldError(f"{at}.kind", "Scegliere il tipo del campo."))
    if len(spec.help) > HELP_MAX:
        errors.append(FieldError(f"{at}.help", f"Il testo di aiuto può avere al massimo {HELP_MAX} caratteri."))
    for name in ("min_length", "max_length"):
        value = getattr(spec, name)
        if value is not None and not 1 <= value <= 500:
            errors.append(FieldError(f"{at}.{name}", "La lunghezza va da 1 a 500 caratteri."))
    if spec.min_length and spec.max_length and spec.min_length > spec.max_length:
        errors.append(FieldError(f"{at}.min_length", "La lunghezza minima supera la massima."))
    if spec.min_value is not None and spec.max_value is not None and spec.min_value > spec.max_value:
        errors.append(FieldError(f"{at}.min_value", "Il valore minimo supera il massimo."))
    if spec.kind == "choice":
        if not spec.choices:
            errors.append(FieldError(f"{at}.choices", "Indicare le voci dell'elenco, una per riga."))
        elif len(spec.choices) > MAX_CHOICES:
            errors.append(FieldError(f"{at}.choices", f"Al massimo {MAX_CHOICES} voci."))
        elif len(set(spec.choices)) != len(spec.choices):
            errors.append(FieldError(f"{at}.choices", "Una voce è ripetuta."))
        elif any(len(c) > CHOICE_MAX for c in spec.choices):
            errors.append(FieldError(f"{at}.choices", f"Ogni voce può avere al massimo {CHOICE_MAX} caratteri."))


def _check_debtor(debtor: DebtorMapping, by_key: dict[str, FieldSpec], errors: list[FieldError]) -> None:
    cf = by_key.get(debtor.fiscal_code_field or "")
    if cf is None or cf.kind != "fiscal_code" or not cf.required:
        errors.append(FieldError("debtor_fiscal_code_field",
                                 "Scegliere il campo obbligatorio di tipo codice fiscale che identifica il debitore."))
    name = by_key.get(debtor.name_field or "")
    if name is None or name.kind != "text" or not name.required:
        errors.append(FieldError("debtor_name_field",
                                 "Scegliere il campo obbligatorio di tipo testo con nome e cognome del debitore."))
    if debtor.email_field:
        email = by_key.get(debtor.email_field)
        if email is None or email.kind != "email":
            errors.append(FieldError("debtor_email_field", "Il campo dell'e-mail deve essere di tipo e-mail."))


# --- A citizen's answers -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilledForm:
    """A citizen's answers read and checked, and the payment they make."""

    answers: dict
    amount: Amount
    subject: str
    debtor_fiscal_code: str
    debtor_name: str
    debtor_email: str | None
    #: ``(label, value as shown)`` for the summary page and the officer's position page.
    summary: list[tuple[str, str]] = field(default_factory=list)


def fill(form: FormDefinition, raw: dict, *, today: date) -> FilledForm:
    """Read a citizen's answers (``raw``: input name → text as posted).

    :raise ValidationFailed: with one error per field to correct (``field`` is the field key, or an amount input).
    """
    errors: list[FieldError] = []
    answers: dict = {}
    for spec in form.fields:
        try:
            answers[spec.key] = read_answer(spec, raw.get(spec.key), today=today)
        except AnswerError as exc:
            errors.append(FieldError(spec.key, str(exc)))
    amount = None
    amount_inputs = {amounts.TYPED_INPUT, amounts.CHOICE_INPUT}
    if not any(e.field == form.amount.quantity_field for e in errors):
        try:
            amount = amounts.compute(form.amount, answers, {k: raw.get(k) for k in amount_inputs}, today=today)
        except AmountInvalid as exc:
            errors.append(FieldError(exc.field, exc.message))
    if errors:
        raise ValidationFailed(errors)
    shown = {spec.key: display_value(spec, answers[spec.key]) for spec in form.fields}
    values = {k: ("" if v == "—" else v) for k, v in shown.items()}
    if amount.option_label:
        values["voce"] = amount.option_label
    subject = subjects.render(form.subject_template, values) or form.title[:140]
    email = answers.get(form.debtor.email_field) if form.debtor.email_field else None
    return FilledForm(answers=answers, amount=amount, subject=subject,
                      debtor_fiscal_code=answers[form.debtor.fiscal_code_field],
                      debtor_name=" ".join(answers[form.debtor.name_field].split())[:140],
                      debtor_email=email or None,
                      summary=[(spec.label, shown[spec.key]) for spec in form.fields])


def summary_of(form: FormDefinition, answers: dict) -> list[tuple[str, str]]:
    """Stored answers as ``(label, value)`` pairs, for the officer (fields of that version, in order)."""
    return [(spec.label, display_value(spec, answers.get(spec.key))) for spec in form.fields]
