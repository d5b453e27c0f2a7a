"""Plain input records for creating positions, shared by every feeding channel (form, API, file).

Each channel parses its own format into these; :func:`validate_position` then applies one set of rules.
"""

from dataclasses import dataclass, field
from datetime import date

from portal.ledger import taxonomy
from portal.ledger.errors import FieldError, ValidationFailed
from portal.ledger.identifiers import (
    IdentifierError,
    normalize_fiscal_code,
    validate_creditor_fiscal_code,
    validate_debtor_fiscal_code,
    validate_iban,
    validate_postal_code,
)

MAX_TRANSFERS = 5
MAX_INSTALLMENTS = 100
SUBJECT_MAX = 140
REMITTANCE_MAX = 140


@dataclass
class TransferInput:
    """A part of an option credited to one beneficiary; beneficiary fields default to the creditor."""

    amount_cents: int
    iban: str | None = None
    taxonomy_code: str | None = None
    remittance: str | None = None
    beneficiary_fiscal_code: str | None = None
    beneficiary_name: str | None = None


@dataclass
class OptionInput:
    """The single payment or one installment."""

    amount_cents: int
    due_date: date
    transfers: list[TransferInput] = field(default_factory=list)
    description: str | None = None


@dataclass
class DebtorInput:
    """Who owes the money, and where the notice goes."""

    fiscal_code: str
    name: str
    kind: str | None = None
    street: str | None = None
    civic_number: str | None = None
    postal_code: str | None = None
    city: str | None = None
    province: str | None = None
    country: str = "IT"
    email: str | None = None
    pec: str | None = None
    phone: str | None = None


@dataclass
class PositionInput:
    """A new credit: a single payment, an installment plan, or both."""

    service_id: int
    debtor: DebtorInput
    subject: str
    single: OptionInput | None = None
    installments: list[OptionInput] = field(default_factory=list)
    external_id: str | None = None
    source: str = "manual"


def validate_position(data: PositionInput, *, today: date, creditor_fiscal_code: str, default_iban: str,
                      default_taxonomy: str) -> None:
    """Check a new position and normalise it in place; raise one error listing every problem.

    Fills transfer defaults (the creditor as beneficiary, the service's IBAN and taxonomy code) and the
    single transfer of an option given without transfers.

    :raise ValidationFailed: with the field path and an Italian message for each problem.
    """
    errors: list[FieldError] = []
    _validate_debtor(data.debtor, errors)
    subject = (data.subject or "").strip()
    if not subject:
        errors.append(FieldError("subject", "Indicare la causale."))
    elif len(subject) > SUBJECT_MAX:
        errors.append(FieldError("subject", f"La causale può avere al massimo {SUBJECT_MAX} caratteri."))
    data.subject = subject
    if data.single is None and not data.installments:
        errors.append(FieldError("options", "Indicare il pagamento in unica soluzione o un piano di rate."))
    if len(data.installments) == 1:
        errors.append(FieldError("installments", "Un piano rateale deve avere almeno due rate."))
    if len(data.installments) > MAX_INSTALLMENTS:
        errors.append(FieldError("installments", f"Al massimo {MAX_INSTALLMENTS} rate."))
    options = ([("single", data.single)] if data.single else []) + [
        (f"installments.{n}", option) for n, option in enumerate(data.installments, start=1)
    ]
    for prefix, option in options:
        _validate_option(prefix, option, errors, today=today, creditor_fiscal_code=creditor_fiscal_code,
                         default_iban=default_iban, default_taxonomy=default_taxonomy)
    if data.installments:
        dues = [o.due_date for o in data.installments if isinstance(o.due_date, date)]
        if dues != sorted(dues) or len(set(dues)) != len(dues):
            errors.append(FieldError("installments", "Le scadenze delle rate devono essere in ordine crescente."))
    if data.external_id is not None:
        data.external_id = data.external_id.strip() or None
        if data.external_id and len(data.external_id) > 100:
            errors.append(FieldError("external_id", "L'identificativo esterno può avere al massimo 100 caratteri."))
    if errors:
        raise ValidationFailed(errors)


def _validate_debtor(debtor: DebtorInput, errors: list[FieldError]) -> None:
    try:
        debtor.fiscal_code, debtor.kind = validate_debtor_fiscal_code(debtor.fiscal_code, debtor.kind)
    except IdentifierError as exc:
        errors.append(FieldError("debtor.fiscal_code", str(exc)))
    debtor.name = " ".join((debtor.name or "").split())
    if not debtor.name:
        errors.append(FieldError("debtor.name", "Indicare il nome e cognome o la ragione sociale."))
    elif len(debtor.name) > 140:
        errors.append(FieldError("debtor.name", "Il nome può avere al massimo 140 caratteri."))
    debtor.country = (debtor.country or "IT").strip().upper()
    if debtor.postal_code:
        try:
            debtor.postal_code = validate_postal_code(debtor.postal_code, debtor.country)
        except IdentifierError as exc:
            errors.append(FieldError("debtor.postal_code", str(exc)))
    if debtor.province:
        debtor.province = debtor.province.strip().upper()
        if len(debtor.province) != 2 or not debtor.province.isalpha():
            errors.append(FieldError("debtor.province", "La provincia è una sigla di due lettere (es. RM)."))
    for name in ("email", "pec"):
        value = (getattr(debtor, name) or "").strip() or None
        setattr(debtor, name, value)
        if value and ("@" not in value or " " in value or value.startswith("@") or value.endswith("@")):
            errors.append(FieldError(f"debtor.{name}", "Indirizzo e-mail non valido."))


def _validate_option(prefix: str, option: OptionInput, errors: list[FieldError], *, today: date,
                     creditor_fiscal_code: str, default_iban: str, default_taxonomy: str) -> None:
    if not isinstance(option.amount_cents, int) or option.amount_cents <= 0:
        errors.append(FieldError(f"{prefix}.amount", "L'importo deve essere maggiore di zero."))
    if not isinstance(option.due_date, date):
        errors.append(FieldError(f"{prefix}.due_date", "Indicare una data di scadenza valida."))
    elif option.due_date < today:
        errors.append(FieldError(f"{prefix}.due_date", "La scadenza non può essere nel passato."))
    if option.description:
        option.description = option.description.strip()[:140]
    if not option.transfers and isinstance(option.amount_cents, int) and option.amount_cents > 0:
        option.transfers = [TransferInput(amount_cents=option.amount_cents)]
    if len(option.transfers) > MAX_TRANSFERS:
        errors.append(FieldError(f"{prefix}.transfers", f"Al massimo {MAX_TRANSFERS} beneficiari per pagamento."))
        return
    for n, transfer in enumerate(option.transfers, start=1):
        _validate_transfer(f"{prefix}.transfers.{n}", n, transfer, errors, creditor_fiscal_code=creditor_fiscal_code,
                           default_iban=default_iban, default_taxonomy=default_taxonomy)
    amounts = [t.amount_cents for t in option.transfers]
    amount_ok = isinstance(option.amount_cents, int) and option.amount_cents > 0
    amounts_ok = amounts and all(isinstance(a, int) and a > 0 for a in amounts)
    if amount_ok and amounts_ok and sum(amounts) != option.amount_cents:
        errors.append(FieldError(
            f"{prefix}.transfers",
            "La somma degli importi dei beneficiari deve essere uguale all'importo del pagamento.",
        ))


def _validate_transfer(prefix: str, n: int, transfer: TransferInput, errors: list[FieldError], *,
                       creditor_fiscal_code: str, default_iban: str, default_taxonomy: str) -> None:
    if not isinstance(transfer.amount_cents, int) or transfer.amount_cents <= 0:
        errors.append(FieldError(f"{prefix}.amount", "L'importo deve essere maggiore di zero."))
    beneficiary = normalize_fiscal_code(transfer.beneficiary_fiscal_code or "") or creditor_fiscal_code
    if n == 1 and beneficiary != creditor_fiscal_code:
        errors.append(FieldError(f"{prefix}.beneficiary_fiscal_code",
                                 "Il primo beneficiario deve essere l'ente titolare della posizione."))
    if beneficiary != creditor_fiscal_code:
        # An Ente's code, as the creditor's own: 11 ASCII digits, not all zeros, with its check digit.
        try:
            beneficiary = validate_creditor_fiscal_code(beneficiary, whose="del beneficiario")
        except IdentifierError as exc:
            errors.append(FieldError(f"{prefix}.beneficiary_fiscal_code", str(exc)))
    transfer.beneficiary_fiscal_code = beneficiary
    if beneficiary != creditor_fiscal_code:
        if not (transfer.iban or "").strip():
            errors.append(FieldError(f"{prefix}.iban", "Indicare l'IBAN dell'ente beneficiario."))
        if not (transfer.beneficiary_name or "").strip():
            errors.append(FieldError(f"{prefix}.beneficiary_name", "Indicare la denominazione dell'ente beneficiario."))
    try:
        transfer.iban = validate_iban(transfer.iban or default_iban)
    except IdentifierError as exc:
        errors.append(FieldError(f"{prefix}.iban", str(exc)))
    try:
        transfer.taxonomy_code = taxonomy.validate(transfer.taxonomy_code or default_taxonomy)
    except taxonomy.TaxonomyError as exc:
        errors.append(FieldError(f"{prefix}.taxonomy_code", str(exc)))
    remittance = (transfer.remittance or "").strip()
    if len(remittance) > REMITTANCE_MAX:
        errors.append(FieldError(f"{prefix}.remittance",
                                 f"La causale può avere al massimo {REMITTANCE_MAX} caratteri."))
    transfer.remittance = remittance or None
