"""Configuration of a creditor: the Ente's data, its pagoPA accounts and its services.

Its own area above the ledger (it reads the ledger's models and rules, and the notices' logo preparation):
plain Python, like :mod:`portal.ledger.services`: every function takes the session and the actor, validates all
of its input before touching a row (so a rejected change leaves nothing to flush), flushes, never commits, and
logs who changed what.
"""

import logging
import re
from dataclasses import dataclass, fields

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.ledger import allocation, notice_numbers, taxonomy
from portal.ledger.errors import FieldError, ValidationFailed
from portal.ledger.identifiers import (
    IdentifierError,
    validate_creditor_fiscal_code,
    validate_iban,
    validate_postal_code,
)
from portal.ledger.models import Account, Creditor, Service
from portal.notices.logo import LogoError, prepare_logo

log = logging.getLogger(__name__)

SERVICE_CODE_RE = re.compile(r"^[A-Z0-9_-]{1,35}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PROVINCE_RE = re.compile(r"^[A-Z]{2}$")
CBILL_RE = re.compile(r"^[A-Z0-9]{5}$")
POSTAL_ACCOUNT_RE = re.compile(r"^\d{1,12}$")
PAGOPA_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,35}$")
WEBSITE_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
MAX_DUE_DAYS = 3650


def create_creditor(session: Session, *, fiscal_code: str, name: str, segregation_code: str, **fields) -> Creditor:
    """Create an Ente with its IUV counter row (numbers start at 1)."""
    creditor = Creditor(
        fiscal_code=validate_creditor_fiscal_code(fiscal_code),
        name=name.strip(),
        segregation_code=notice_numbers.validate_segregation_code(segregation_code),
        **fields,
    )
    session.add(creditor)
    session.flush()
    allocation.start_counter(session, creditor)
    return creditor


def add_account(session: Session, creditor: Creditor, *, iban: str, label: str, is_postal: bool = False) -> Account:
    """Register one of the creditor's IBANs."""
    account = Account(creditor=creditor, iban=validate_iban(iban), label=label.strip(), is_postal=is_postal)
    session.add(account)
    session.flush()
    return account


def _clean(value: str | None) -> str | None:
    """Trimmed text, or ``None`` when nothing was typed."""
    value = (value or "").strip()
    return value or None


# --- Creditor -------------------------------------------------------------------------------------------------


@dataclass
class CreditorInput:
    """Everything an admin may change about the Ente."""

    name: str
    fiscal_code: str
    segregation_code: str
    department: str | None = None
    cbill_code: str | None = None
    postal_account: str | None = None
    postal_authorization: str | None = None
    broker_id: str | None = None
    station_id: str | None = None
    address: str | None = None
    city: str | None = None
    province: str | None = None
    postal_code: str | None = None
    email: str | None = None
    pec: str | None = None
    phone: str | None = None
    website: str | None = None
    bilingual_notices: bool = False


def _validate_creditor(session: Session, creditor: Creditor, data: CreditorInput) -> dict:
    """The normalised values to store; :class:`ValidationFailed` with every problem otherwise."""
    errors: list[FieldError] = []
    values: dict = {}
    for f in fields(CreditorInput):
        raw = getattr(data, f.name)
        values[f.name] = bool(raw) if f.name == "bilingual_notices" else _clean(raw)

    if not values["name"]:
        errors.append(FieldError("name", "Indicare la denominazione dell'ente."))
    try:
        values["fiscal_code"] = validate_creditor_fiscal_code(values["fiscal_code"] or "")
    except IdentifierError as exc:
        errors.append(FieldError("fiscal_code", str(exc)))
    else:
        taken = session.scalar(sa.select(Creditor.id).where(
            Creditor.fiscal_code == values["fiscal_code"], Creditor.id != creditor.id))
        if taken:
            errors.append(FieldError("fiscal_code", "Il codice fiscale è già usato da un altro ente."))
    try:
        values["segregation_code"] = notice_numbers.validate_segregation_code(values["segregation_code"] or "")
    except notice_numbers.NoticeNumberError as exc:
        errors.append(FieldError("segregation_code", str(exc)))

    if values["cbill_code"]:
        values["cbill_code"] = values["cbill_code"].upper()
        if not CBILL_RE.match(values["cbill_code"]):
            errors.append(FieldError("cbill_code", "Il codice CBILL è di 5 caratteri alfanumerici."))
    if values["postal_account"]:
        values["postal_account"] = re.sub(r"\s+", "", values["postal_account"])
        if not POSTAL_ACCOUNT_RE.match(values["postal_account"]):
            errors.append(FieldError("postal_account", "Il conto corrente postale è di al massimo 12 cifre."))
    for name, label in (("broker_id", "dell'intermediario"), ("station_id", "della stazione")):
        if values[name] and not PAGOPA_ID_RE.match(values[name]):
            errors.append(FieldError(name, f"Il codice {label} ammette lettere, cifre, '_', '-' e '.' "
                                           f"(massimo 35 caratteri)."))
    if values["province"]:
        values["province"] = values["province"].upper()
        if not PROVINCE_RE.match(values["province"]):
            errors.append(FieldError("province", "Indicare la sigla della provincia (2 lettere)."))
    if values["postal_code"]:
        try:
            values["postal_code"] = validate_postal_code(values["postal_code"])
        except IdentifierError as exc:
            errors.append(FieldError("postal_code", str(exc)))
    for name in ("email", "pec"):
        if values[name]:
            values[name] = values[name].lower()
            if not EMAIL_RE.match(values[name]):
                errors.append(FieldError(name, "Indirizzo e-mail non valido."))
    if values["website"] and not WEBSITE_RE.match(values["website"]):
        errors.append(FieldError("website", "Indicare un indirizzo che inizi con https://."))
    _check_lengths(Creditor, values, errors)
    if errors:
        raise ValidationFailed(errors)
    return values


def update_creditor(session: Session, creditor: Creditor, data: CreditorInput, *, actor: str) -> list[str]:
    """Change the Ente's data.

    A new segregation code only affects numbers allocated from now on: the IUVs already issued keep theirs.

    :return: the names of the fields that changed (empty if nothing did).
    :raise ValidationFailed: with every problem found; the creditor is left untouched.
    """
    values = _validate_creditor(session, creditor, data)
    changed = [name for name, value in values.items() if getattr(creditor, name) != value]
    for name in changed:
        setattr(creditor, name, values[name])
    if changed:
        session.flush()
        log.info("creditor %s: %s changed by %s", creditor.id, ", ".join(changed), actor)
        if "segregation_code" in changed:
            log.warning("creditor %s: segregation code set to %s by %s (new numbers only)",
                        creditor.id, creditor.segregation_code, actor)
    return changed


def has_logo(session: Session, creditor_id: int) -> bool:
    """Whether the creditor has a logo (without loading the image)."""
    return bool(session.scalar(sa.select(Creditor.logo_png.is_not(None)).where(Creditor.id == creditor_id)))


def get_logo(session: Session, creditor_id: int) -> bytes | None:
    """The creditor's logo as stored (a PNG), or ``None``."""
    return session.scalar(sa.select(Creditor.logo_png).where(Creditor.id == creditor_id))


def set_logo(session: Session, creditor: Creditor, data: bytes, *, actor: str) -> int:
    """Store the logo printed on the creditor's notices, replacing any previous one.

    The upload is checked and re-encoded by :func:`portal.notices.logo.prepare_logo` (PNG or JPEG, at most 1 MB,
    stored as a PNG of at most 600×600 px).

    :return: the size in bytes of the stored PNG.
    :raise ValidationFailed: on the field ``logo`` with the reason; the creditor is left untouched.
    """
    try:
        png = prepare_logo(data)
    except LogoError as exc:
        raise ValidationFailed([FieldError("logo", str(exc))]) from exc
    creditor.logo_png = png
    session.flush()
    log.info("creditor %s: logo set (%d bytes) by %s", creditor.id, len(png), actor)
    return len(png)


def remove_logo(session: Session, creditor: Creditor, *, actor: str) -> bool:
    """Remove the creditor's logo (notices are then printed without one).

    :return: whether there was a logo to remove.
    """
    if not has_logo(session, creditor.id):
        return False
    creditor.logo_png = None
    session.flush()
    log.info("creditor %s: logo removed by %s", creditor.id, actor)
    return True


# --- Accounts -------------------------------------------------------------------------------------------------


def get_account(session: Session, creditor_id: int, account_id: int) -> Account | None:
    """One of the creditor's accounts, or ``None`` (also when it belongs to another creditor)."""
    account = session.get(Account, account_id)
    return account if account is not None and account.creditor_id == creditor_id else None


def _validate_label(label: str | None, errors: list[FieldError]) -> str:
    label = _clean(label) or ""
    if not label:
        errors.append(FieldError("label", "Indicare una descrizione del conto."))
    elif len(label) > 70:
        errors.append(FieldError("label", "La descrizione può avere al massimo 70 caratteri."))
    return label


def create_account(session: Session, creditor: Creditor, *, iban: str, label: str, is_postal: bool = False,
                   actor: str) -> Account:
    """Register one more IBAN of the creditor (already registered on pagoPA).

    :raise ValidationFailed: on an invalid or repeated IBAN or a missing label.
    """
    errors: list[FieldError] = []
    try:
        iban = validate_iban(iban)
    except IdentifierError as exc:
        errors.append(FieldError("iban", str(exc)))
    else:
        if session.scalar(sa.select(Account.id).where(Account.creditor_id == creditor.id, Account.iban == iban)):
            errors.append(FieldError("iban", f"L'IBAN {iban} è già registrato."))
    label = _validate_label(label, errors)
    if errors:
        raise ValidationFailed(errors)
    account = Account(creditor=creditor, iban=iban, label=label, is_postal=bool(is_postal))
    session.add(account)
    session.flush()
    log.info("creditor %s: account %s (%s) added by %s", creditor.id, account.id, iban, actor)
    return account


def update_account(session: Session, account: Account, *, label: str, is_postal: bool, actor: str) -> list[str]:
    """Change an account's label or postal flag; the IBAN itself never changes (add a new account instead).

    :return: the names of the fields that changed.
    """
    errors: list[FieldError] = []
    label = _validate_label(label, errors)
    if errors:
        raise ValidationFailed(errors)
    values = {"label": label, "is_postal": bool(is_postal)}
    changed = [name for name, value in values.items() if getattr(account, name) != value]
    for name in changed:
        setattr(account, name, values[name])
    if changed:
        session.flush()
        log.info("account %s (%s): %s changed by %s", account.id, account.iban, ", ".join(changed), actor)
    return changed


def services_using_account(session: Session, account: Account) -> list[Service]:
    """The services whose transfers are credited to this account."""
    return list(session.scalars(sa.select(Service).where(Service.account_id == account.id).order_by(Service.code)))


def remove_account(session: Session, account: Account, *, actor: str) -> None:
    """Remove an account no service uses.

    :raise ValidationFailed: if a service still credits it.
    """
    users = services_using_account(session, account)
    if users:
        names = ", ".join(s.code for s in users)
        raise ValidationFailed([FieldError("account", f"Il conto è usato dai servizi {names}: non può essere "
                                                      f"eliminato.")])
    creditor_id, account_id, iban = account.creditor_id, account.id, account.iban
    session.delete(account)
    session.flush()
    log.info("creditor %s: account %s (%s) removed by %s", creditor_id, account_id, iban, actor)


# --- Services -------------------------------------------------------------------------------------------------


@dataclass
class ServiceInput:
    """A service's settings as an admin types them."""

    code: str
    name: str
    taxonomy_code: str
    account_id: int | None
    description: str | None = None
    office: str | None = None
    default_due_days: int | None = 30
    draft_first: bool = False
    spontaneous: bool = False
    active: bool = True


def get_service(session: Session, creditor_id: int, service_id: int) -> Service | None:
    """One of the creditor's services, or ``None`` (also when it belongs to another creditor)."""
    service = session.get(Service, service_id)
    return service if service is not None and service.creditor_id == creditor_id else None


def _validate_service(session: Session, creditor: Creditor, data: ServiceInput, *,
                      service_id: int | None = None) -> dict:
    errors: list[FieldError] = []
    code = (data.code or "").strip().upper()
    if not code:
        errors.append(FieldError("code", "Indicare il codice del servizio."))
    elif not SERVICE_CODE_RE.match(code):
        errors.append(FieldError("code", "Il codice ammette solo lettere maiuscole, cifre, '_' e '-' "
                                         "(massimo 35 caratteri)."))
    else:
        clash = sa.select(Service.id).where(Service.creditor_id == creditor.id, Service.code == code)
        if service_id is not None:
            clash = clash.where(Service.id != service_id)
        if session.scalar(clash):
            errors.append(FieldError("code", f"Esiste già un servizio con codice {code}."))
    name = _clean(data.name) or ""
    if not name:
        errors.append(FieldError("name", "Indicare il nome del servizio."))
    try:
        taxonomy_code = taxonomy.validate(data.taxonomy_code or "")
    except taxonomy.TaxonomyError as exc:
        taxonomy_code = None
        errors.append(FieldError("taxonomy_code", str(exc)))
    account = get_account(session, creditor.id, data.account_id) if data.account_id else None
    if account is None:
        errors.append(FieldError("account_id", "Scegliere uno dei conti dell'ente."))
    due_days = data.default_due_days
    if due_days is None or not 0 <= due_days <= MAX_DUE_DAYS:
        errors.append(FieldError("default_due_days", f"Indicare un numero di giorni tra 0 e {MAX_DUE_DAYS}."))
    values = {
        "code": code,
        "name": name,
        "description": _clean(data.description),
        "taxonomy_code": taxonomy_code,
        "account_id": account.id if account else None,
        "office": _clean(data.office),
        "default_due_days": due_days,
        "draft_first": bool(data.draft_first),
        "spontaneous": bool(data.spontaneous),
        "active": bool(data.active),
    }
    _check_lengths(Service, values, errors)
    if errors:
        raise ValidationFailed(errors)
    return values


def create_service(session: Session, creditor: Creditor, data: ServiceInput, *, actor: str) -> Service:
    """Add a service to the creditor.

    :raise ValidationFailed: on a repeated or malformed code, an unknown or expired taxonomy code, an account of
        another creditor, ...; nothing is stored.
    """
    values = _validate_service(session, creditor, data)
    service = Service(creditor_id=creditor.id, **values)
    session.add(service)
    session.flush()
    log.info("creditor %s: service %s (%s) created by %s", creditor.id, service.id, service.code, actor)
    return service


def update_service(session: Session, service: Service, data: ServiceInput, *, actor: str) -> list[str]:
    """Change a service's settings (positions already created keep their own amounts and transfers).

    :return: the names of the fields that changed.
    :raise ValidationFailed: as :func:`create_service`; the service is left untouched.
    """
    values = _validate_service(session, service.creditor, data, service_id=service.id)
    changed = [name for name, value in values.items() if getattr(service, name) != value]
    for name in changed:
        setattr(service, name, values[name])
    if "account_id" in changed:
        session.expire(service, ["account"])
    if changed:
        session.flush()
        log.info("service %s (%s): %s changed by %s", service.id, service.code, ", ".join(changed), actor)
    return changed


# --- helpers --------------------------------------------------------------------------------------------------


def _check_lengths(model, values: dict, errors: list[FieldError]) -> None:
    """Report text longer than its column, instead of letting the database refuse it."""
    already = {e.field for e in errors}
    for name, value in values.items():
        if not isinstance(value, str) or name in already:
            continue
        length = getattr(model.__table__.c[name].type, "length", None)
        if length and len(value) > length:
            errors.append(FieldError(name, f"Massimo {length} caratteri."))


def only_creditor(session: Session, fiscal_code: str | None = None) -> Creditor | None:
    """The creditor with ``fiscal_code``, or the only one configured; ``None`` when that does not name exactly one
    (commands ask for ``--creditor`` then)."""
    query = sa.select(Creditor)
    if fiscal_code:
        query = query.where(Creditor.fiscal_code == fiscal_code)
    creditors = session.scalars(query.limit(2)).all()
    return creditors[0] if len(creditors) == 1 else None
