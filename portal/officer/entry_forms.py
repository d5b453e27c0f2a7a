"""The manual-entry form of a new position, and its translation into the ledger's :class:`PositionInput`.

The form only collects text. Every rule lives in :mod:`portal.ledger` (``parse_euro``, identifiers, taxonomy,
``validate_position``); this module parses the text with those helpers, runs the same validation the service
runs, and places each :class:`FieldError` next to the form field it belongs to.

Installment plans with more than one beneficiary: the beneficiary amounts are typed once (they split the single
payment, or the plan's total when there is no single payment) and each installment is split in the same ratio,
cents by largest remainder (:func:`split_by_ratio`), so every option's transfers always add up to its amount.
"""

import copy
import re
from dataclasses import dataclass, field, replace
from datetime import date

from flask_wtf import FlaskForm
from wtforms import FieldList, Form, FormField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice

from portal.formatting import parse_date_input as parse_date
from portal.ledger.errors import FieldError, ValidationFailed
from portal.ledger.inputs import (
    MAX_TRANSFERS,
    DebtorInput,
    OptionInput,
    PositionInput,
    TransferInput,
    validate_position,
)
from portal.ledger.plans import monthly_due_dates, split_by_ratio, split_evenly
from portal.money import AmountError, format_euro, parse_euro

#: Limits of the plan an officer builds by hand (the ledger accepts longer plans from other channels).
MIN_INSTALLMENTS = 2
MAX_FORM_INSTALLMENTS = 36
#: Rows the form reads at most; anything beyond is dropped by WTForms (still over the limits above).
MAX_INSTALLMENT_ROWS = 100
MAX_TRANSFER_ROWS = 10

MODES = (("single", "Unica soluzione"), ("installments", "Rate"), ("both", "Unica soluzione e rate"))
MODE_VALUES = {value for value, _ in MODES}

#: Key of the errors shown only in the summary at the top of the form.
SUMMARY = "__all__"


def _optional_int(value):
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class TransferRowForm(Form):
    """One beneficiary of the payment (the first row is always the Comune)."""

    beneficiary_fiscal_code = StringField("Codice fiscale")
    beneficiary_name = StringField("Denominazione")
    iban = StringField("IBAN")
    taxonomy_code = StringField("Codice tassonomico")
    amount = StringField("Importo")


class InstallmentRowForm(Form):
    """One installment of the plan."""

    amount = StringField("Importo")
    due_date = StringField("Scadenza")


class PositionForm(FlaskForm):
    """A new position typed by an officer. Fields are plain text: parsing and rules are the ledger's."""

    service_id = SelectField("Servizio", coerce=_optional_int, validate_choice=False)
    debtor_fiscal_code = StringField("Codice fiscale o partita IVA")
    debtor_name = StringField("Nome e cognome o ragione sociale")
    debtor_street = StringField("Indirizzo")
    debtor_civic_number = StringField("Numero civico")
    debtor_postal_code = StringField("CAP")
    debtor_city = StringField("Comune")
    debtor_province = StringField("Provincia")
    debtor_email = StringField("E-mail")
    debtor_pec = StringField("PEC")
    subject = StringField("Causale")
    external_id = StringField("Identificativo esterno")
    mode = RadioField("Modalità di pagamento", choices=[SelectChoice(value, label) for value, label in MODES],
                      default="single", validate_choice=False)
    single_amount = StringField("Importo")
    single_due_date = StringField("Scadenza")
    installment_count = StringField("Numero di rate")
    plan_total = StringField("Totale da rateizzare")
    plan_first_due = StringField("Scadenza della prima rata")
    installments = FieldList(FormField(InstallmentRowForm), max_entries=MAX_INSTALLMENT_ROWS)
    transfers = FieldList(FormField(TransferRowForm), min_entries=1, max_entries=MAX_TRANSFER_ROWS)


# --- From the form to a PositionInput -------------------------------------------------------------------------


class ErrorBag(dict):
    """Messages by form field name (``transfers-1-iban``); :data:`SUMMARY` for those without a field."""

    def add(self, name: str, message: str) -> None:
        messages = self.setdefault(name, [])
        if message not in messages:
            messages.append(message)


@dataclass
class Draft:
    """What the form says, as the ledger sees it, and what is wrong with it."""

    data: PositionInput
    errors: ErrorBag
    #: A normalised copy (defaults filled in) for the summary shown before saving.
    preview: PositionInput
    #: Transfer rows in use, in the order of the option's transfers (blank extra rows are skipped).
    transfer_rows: list = field(default_factory=list)
    #: Field names of rows whose amounts failed to parse (their transfer sums are not worth reporting).
    unparsed: set = field(default_factory=set)


def _clean(text: str | None) -> str | None:
    return (text or "").strip() or None


def _amount(f, errors: ErrorBag, unparsed: set) -> int | None:
    try:
        return parse_euro(f.data or "")
    except AmountError as exc:
        errors.add(f.name, str(exc))
        unparsed.add(f.name)
        return None


def _row_filled(row: TransferRowForm) -> bool:
    return any((f.data or "").strip() for f in row)


def build_draft(form: PositionForm, *, creditor, services: list, today: date) -> Draft:
    """Parse the form into a :class:`PositionInput` and collect every problem, placed on its field.

    ``services`` are the ones the officer may use; any other ``service_id`` is refused here. Nothing is stored.
    """
    errors = ErrorBag()
    unparsed: set[str] = set()
    service = next((s for s in services if s.id == form.service_id.data), None)
    if form.service_id.data is None:
        errors.add("service_id", "Scegliere il servizio.")
    elif service is None:
        errors.add("service_id", "Servizio non disponibile: scegliere uno dei servizi dell'elenco.")
    mode = form.mode.data if form.mode.data in MODE_VALUES else None
    if mode is None:
        errors.add("mode", "Scegliere la modalità di pagamento.")

    debtor = DebtorInput(
        fiscal_code=form.debtor_fiscal_code.data or "",
        name=form.debtor_name.data or "",
        **{name: _clean(getattr(form, f"debtor_{name}").data)
           for name in ("street", "civic_number", "postal_code", "city", "province", "email", "pec")},
    )
    data = PositionInput(
        service_id=service.id if service else (form.service_id.data or 0),
        debtor=debtor,
        subject=form.subject.data or "",
        external_id=_clean(form.external_id.data),
        source="manual",
    )

    if mode in ("single", "both"):
        data.single = OptionInput(amount_cents=_amount(form.single_amount, errors, unparsed),
                                  due_date=parse_date(form.single_due_date.data))
    if mode in ("installments", "both"):
        rows = form.installments.entries
        if not rows:
            errors.add("installments", "Indicare le rate: scegliere il numero di rate e premere «Genera rate».")
        elif len(rows) > MAX_FORM_INSTALLMENTS:
            errors.add("installments", f"Al massimo {MAX_FORM_INSTALLMENTS} rate.")
        data.installments = [
            OptionInput(amount_cents=_amount(row.form.amount, errors, unparsed),
                        due_date=parse_date(row.form.due_date.data))
            for row in rows
        ]

    # Beneficiaries: the first row is the Comune (its fiscal code and name come from the creditor).
    rows = [form.transfers.entries[0]] + [r for r in form.transfers.entries[1:] if _row_filled(r.form)]
    explicit = len(rows) > 1 or bool((rows[0].form.amount.data or "").strip())
    templates = []
    for n, row in enumerate(rows):
        f = row.form
        templates.append(TransferInput(
            amount_cents=_amount(f.amount, errors, unparsed) if explicit else None,
            iban=_clean(f.iban.data),
            taxonomy_code=_clean(f.taxonomy_code.data),
            beneficiary_fiscal_code=_clean(f.beneficiary_fiscal_code.data) if n else None,
            beneficiary_name=_clean(f.beneficiary_name.data) if n else None,
        ))
    weights = [t.amount_cents for t in templates]
    ratio_ready = explicit and all(isinstance(w, int) and w > 0 for w in weights)

    if data.single:
        data.single.transfers = ([replace(t) for t in templates] if explicit
                                 else [replace(templates[0], amount_cents=data.single.amount_cents)])
    if data.installments:
        amounts = [o.amount_cents for o in data.installments]
        if data.single is None and ratio_ready and all(isinstance(a, int) for a in amounts) \
                and sum(weights) != sum(amounts):
            errors.add("transfers", "La somma degli importi dei beneficiari deve essere uguale al totale delle rate "
                                    f"({format_euro(sum(amounts))}).")
        for option in data.installments:
            if not explicit:
                option.transfers = [replace(templates[0], amount_cents=option.amount_cents)]
            elif ratio_ready and isinstance(option.amount_cents, int) and option.amount_cents > 0 \
                    and len(weights) <= MAX_TRANSFERS:
                option.transfers = [replace(t, amount_cents=share)
                                    for t, share in zip(templates, split_by_ratio(option.amount_cents, weights),
                                                        strict=True)]
            else:
                option.transfers = [replace(t) for t in templates]

    draft = Draft(data=data, errors=errors, preview=copy.deepcopy(data), transfer_rows=rows, unparsed=unparsed)
    defaults = service or (services[0] if services else None)
    try:
        validate_position(
            draft.preview,
            today=today,
            creditor_fiscal_code=creditor.fiscal_code,
            default_iban=defaults.account.iban if defaults else "",
            default_taxonomy=defaults.taxonomy_code if defaults else "",
        )
    except ValidationFailed as exc:
        place_errors(draft, exc.errors)
    return draft


# --- From FieldError paths to form fields ---------------------------------------------------------------------

_DEBTOR_FIELDS = {"fiscal_code", "name", "street", "civic_number", "postal_code", "city", "province", "email", "pec"}
_TRANSFER_FIELDS = {"iban", "taxonomy_code", "beneficiary_fiscal_code", "beneficiary_name", "amount"}
_OPTION_TRANSFER_SUM = re.compile(r"^(single|installments\.\d+)\.transfers(\.\d+\.amount)?$")


def place_errors(draft: Draft, errors: list[FieldError]) -> None:
    """Add the ledger's errors to ``draft.errors`` under the form field each one belongs to.

    A field that already has a parsing error keeps only that one (it is the cause); transfer amounts and sums are
    not reported while an amount they depend on could not be read.
    """
    bag = draft.errors
    parse_failed = set(draft.unparsed)
    for error in errors:
        name, prefix = field_for(error.field, draft)
        if name in parse_failed:
            continue
        if (m := _OPTION_TRANSFER_SUM.match(error.field)) and _depends_on_unparsed(m.group(1), draft):
            continue
        if error.field == "options" and "installments" in bag:
            continue
        bag.add(name, prefix + error.message)


def _depends_on_unparsed(option: str, draft: Draft) -> bool:
    if any(row.form.amount.name in draft.unparsed for row in draft.transfer_rows):
        return True
    if option == "single":
        return "single_amount" in draft.unparsed
    return any(name.startswith("installments-") for name in draft.unparsed)


def field_for(path: str, draft: Draft) -> tuple[str, str]:
    """The form field name for a ledger error path, and a prefix for the message when the place is approximate."""
    parts = path.split(".")
    if path in ("service_id", "subject", "external_id"):
        return path, ""
    if parts[0] == "debtor" and len(parts) == 2 and parts[1] in _DEBTOR_FIELDS:
        return f"debtor_{parts[1]}", ""
    if path == "options":
        return "mode", ""
    if parts[0] == "single" and len(parts) >= 2:
        rest = parts[1:]
        if rest in (["amount"], ["due_date"]):
            return f"single_{rest[0]}", ""
        if rest == ["transfers"]:
            return "transfers", ""
        if len(rest) == 3 and rest[0] == "transfers" and rest[1].isdigit():
            return _transfer_field(int(rest[1]), rest[2], draft)
    if parts[0] == "installments":
        if len(parts) == 1:
            return "installments", ""
        if parts[1].isdigit() and 1 <= int(parts[1]) <= len(draft.data.installments):
            n = int(parts[1])
            row = f"installments-{n - 1}"
            rest = parts[2:]
            if rest in (["amount"], ["due_date"]):
                return f"{row}-{rest[0]}", ""
            if rest == ["transfers"]:
                return "transfers", ""
            if len(rest) == 3 and rest[0] == "transfers" and rest[1].isdigit():
                if rest[2] == "amount":
                    return f"{row}-amount", f"Quota del beneficiario {rest[1]}: "
                return _transfer_field(int(rest[1]), rest[2], draft)
    return SUMMARY, ""


def _transfer_field(number: int, name: str, draft: Draft) -> tuple[str, str]:
    rows = draft.transfer_rows
    if not 1 <= number <= len(rows) or name not in _TRANSFER_FIELDS:
        return "transfers", f"Beneficiario {number}: "
    if number == 1 and name in ("beneficiary_fiscal_code", "beneficiary_name"):
        return "transfers", "Beneficiario 1: "
    return getattr(rows[number - 1].form, name).name, ""


def field_labels(form: PositionForm) -> dict[str, str]:
    """A readable label for every field name, for the error summary."""
    labels = {f.name: f.label.text for f in form if f.name not in ("installments", "transfers", "csrf_token")}
    labels["mode"] = form.mode.label.text
    labels["installments"] = "Piano di rate"
    labels["transfers"] = "Beneficiari"
    labels["single_amount"] = "Unica soluzione: importo"
    labels["single_due_date"] = "Unica soluzione: scadenza"
    for n, row in enumerate(form.installments.entries, start=1):
        for f in row.form:
            labels[f.name] = f"Rata {n}: {f.label.text}"
    for n, row in enumerate(form.transfers.entries, start=1):
        for f in row.form:
            labels[f.name] = f"Beneficiario {n}: {f.label.text}"
    return labels


def preview_rows(preview: PositionInput | None) -> list[tuple[str, OptionInput]]:
    """The options of a draft as the summary lists them: the single payment first, then each installment."""
    if preview is None:
        return []
    rows = [("Unica soluzione", preview.single)] if preview.single else []
    return rows + [(f"Rata {n}", option) for n, option in enumerate(preview.installments, start=1)]


# --- Helpers of the form's buttons ----------------------------------------------------------------------------


def generate_installments(form: PositionForm) -> ErrorBag:
    """Fill the installment rows: the total split evenly (leftover cents on the first), one month apart.

    The total defaults to the single payment's amount and the first due date to its due date.
    """
    errors = ErrorBag()
    count = _optional_int((form.installment_count.data or "").strip())
    if count is None or not MIN_INSTALLMENTS <= count <= MAX_FORM_INSTALLMENTS:
        errors.add("installment_count", f"Indicare un numero di rate da {MIN_INSTALLMENTS} a {MAX_FORM_INSTALLMENTS}.")
    total_text = (form.plan_total.data or "").strip() or (form.single_amount.data or "").strip()
    total = None
    try:
        total = parse_euro(total_text)
    except AmountError as exc:
        errors.add("plan_total", str(exc))
    first = parse_date(form.plan_first_due.data) or parse_date(form.single_due_date.data)
    if first is None:
        errors.add("plan_first_due", "Indicare la scadenza della prima rata.")
    if errors:
        return errors
    if total < count:
        errors.add("plan_total", f"Il totale è troppo basso per {count} rate.")
        return errors
    form.plan_total.data = format_euro(total, symbol=False)
    form.plan_first_due.data = first.isoformat()
    while form.installments.entries:
        form.installments.pop_entry()
    for amount, due in zip(split_evenly(total, count), monthly_due_dates(first, count), strict=True):
        form.installments.append_entry({"amount": format_euro(amount, symbol=False), "due_date": due.isoformat()})
    return errors


def add_transfer_row(form: PositionForm) -> None:
    """One more blank beneficiary row, up to the pagoPA limit."""
    if len(form.transfers.entries) < MAX_TRANSFERS:
        form.transfers.append_entry()


def remove_transfer_row(form: PositionForm, index: int) -> None:
    """Drop an extra beneficiary row (never the Comune's)."""
    if 1 <= index < len(form.transfers.entries):
        form.transfers.pop_entry(index)


# --- Editing: the form filled with a position's content ---------------------------------------------------------


def fill_form(form: PositionForm, data: PositionInput) -> None:
    """Prefill the form with what a position holds (``changes.position_input``), as an officer would type it.

    Beneficiaries are typed once for the whole position (see the module docstring): the single payment's, or the
    plan's totals per beneficiary when there is only a plan. One beneficiary (the Comune) leaves the amount blank.
    """
    form.service_id.data = data.service_id
    for name in ("fiscal_code", "name", "street", "civic_number", "postal_code", "city", "province", "email", "pec"):
        getattr(form, f"debtor_{name}").data = getattr(data.debtor, name) or ""
    form.subject.data = data.subject
    form.external_id.data = data.external_id or ""
    form.mode.data = "both" if data.single and data.installments else ("single" if data.single else "installments")
    if data.single:
        form.single_amount.data = format_euro(data.single.amount_cents, symbol=False)
        form.single_due_date.data = data.single.due_date.isoformat()
    while form.installments.entries:
        form.installments.pop_entry()
    for option in data.installments:
        form.installments.append_entry({"amount": format_euro(option.amount_cents, symbol=False),
                                        "due_date": option.due_date.isoformat()})
    if data.installments:
        form.installment_count.data = str(len(data.installments))
        form.plan_total.data = format_euro(sum(o.amount_cents for o in data.installments), symbol=False)
        form.plan_first_due.data = data.installments[0].due_date.isoformat()
    source = data.single.transfers if data.single else _plan_transfers(data.installments)
    while form.transfers.entries:
        form.transfers.pop_entry()
    for transfer in source:
        form.transfers.append_entry({
            "beneficiary_fiscal_code": transfer.beneficiary_fiscal_code or "",
            "beneficiary_name": transfer.beneficiary_name or "",
            "iban": transfer.iban or "", "taxonomy_code": transfer.taxonomy_code or "",
            "amount": format_euro(transfer.amount_cents, symbol=False) if len(source) > 1 else "",
        })


def _plan_transfers(installments: list[OptionInput]) -> list[TransferInput]:
    """The beneficiaries of a plan with their totals over every installment."""
    if not installments:
        return []
    totals = [replace(t) for t in installments[0].transfers]
    for option in installments[1:]:
        for index, transfer in enumerate(option.transfers[:len(totals)]):
            totals[index].amount_cents += transfer.amount_cents
    return totals
