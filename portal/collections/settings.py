"""The collection settings an administrator edits: the legal-rate table and each service's policy."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.collections import charges
from portal.collections.models import CollectionPolicy, LegalRate, default_policy
from portal.ledger.errors import FieldError, ValidationFailed
from portal.ledger.models import Service

#: domain-digest.md §1.1, as the migration seeds it (2013 has no row: no decree, the 2012 rate stayed in force).
SEED_RATES = (
    (2010, "1.00", "DM 04/12/2009"), (2011, "1.50", "DM 07/12/2010"),
    (2012, "2.50", "DM 12/12/2011 (GU 291 del 15/12/2011)"), (2014, "1.00", "DM 12/12/2013"),
    (2015, "0.50", "DM 11/12/2014"), (2016, "0.20", "DM 11/12/2015 (GU 291 del 15/12/2015)"),
    (2017, "0.10", "DM 07/12/2016 (GU 291 del 14/12/2016)"), (2018, "0.30", "DM 13/12/2017 (GU 292 del 15/12/2017)"),
    (2019, "0.80", "DM 12/12/2018"), (2020, "0.05", "DM 12/12/2019"), (2021, "0.01", "DM 11/12/2020"),
    (2022, "1.25", "DM 13/12/2021"), (2023, "5.00", "DM 13/12/2022"), (2024, "2.50", "DM 29/11/2023 (GU 11/12/2023)"),
    (2025, "2.00", "DM 10/12/2024"), (2026, "1.60", "DM 10/12/2025 (GU 289 del 13/12/2025)"),
)


def seed_legal_rates(session: Session) -> int:
    """Add the rows of :data:`SEED_RATES` that are missing (an empty database, the tests); returns how many."""
    have = set(session.scalars(sa.select(LegalRate.effective_from)))
    rows = [LegalRate(effective_from=date(y, 1, 1), percent=Decimal(p), decree=d) for y, p, d in SEED_RATES
            if date(y, 1, 1) not in have]
    session.add_all(rows)
    session.flush()
    return len(rows)


def legal_rates(session: Session) -> list[LegalRate]:
    """The legal-rate table, oldest first."""
    return list(session.scalars(sa.select(LegalRate).order_by(LegalRate.effective_from)))


def rate_table(session: Session) -> list[charges.Rate]:
    """The legal-rate table as the engine takes it."""
    return [row.as_rate() for row in legal_rates(session)]


def save_legal_rate(session: Session, *, effective_from: date | None, percent: str, decree: str) -> LegalRate:
    """Add the rate in force from a date, or change the row of that date (a repeated request changes nothing).

    :raise ValidationFailed: with the field and an Italian message.
    """
    errors = []
    if effective_from is None:
        errors.append(FieldError("effective_from", "Indicare la data da cui il tasso è in vigore."))
    try:
        value = Decimal((percent or "").strip().replace(",", "."))
        if not (Decimal(0) <= value < Decimal(100)) or value.as_tuple().exponent < -3:
            raise InvalidOperation
    except InvalidOperation:
        errors.append(FieldError("percent", "Tasso non valido: un numero fra 0 e 100, al più tre decimali "
                                            "(es. 1,6)."))
        value = None
    if errors:
        raise ValidationFailed(errors)
    row = session.scalar(sa.select(LegalRate).where(LegalRate.effective_from == effective_from))
    if row is None:
        row = LegalRate(effective_from=effective_from)
        session.add(row)
    row.percent = value
    row.decree = " ".join((decree or "").split())[:140]
    session.flush()
    return row


def delete_legal_rate(session: Session, rate_id: int) -> bool:
    """Remove a row entered by mistake; whether there was one."""
    row = session.get(LegalRate, rate_id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def policy_for(session: Session, service: Service) -> CollectionPolicy:
    """The service's collection policy: the stored one, or the defaults (not stored) when none was saved."""
    return session.get(CollectionPolicy, service.id) or default_policy(service)


def policies_by_service(session: Session, creditor_id: int) -> dict[int, CollectionPolicy]:
    """Every service's policy of a creditor (defaults where none was saved)."""
    services = session.scalars(sa.select(Service).where(Service.creditor_id == creditor_id)).all()
    stored = {p.service_id: p for p in session.scalars(
        sa.select(CollectionPolicy).where(CollectionPolicy.service_id.in_([s.id for s in services] or [-1])))}
    return {s.id: stored.get(s.id) or default_policy(s) for s in services}


#: The policy's editable fields and their kind (``int``, ``cents``, ``decimal``, ``date``, ``bool``, ``text``,
#: ``choice``), with the Italian label the settings page shows.
POLICY_FIELDS = (
    ("grace_days", "int", "Giorni di tolleranza dopo la scadenza"),
    ("reminder_days", "int", "Giorni per pagare dopo il sollecito"),
    ("reminder_cost_cents", "cents", "Spese del sollecito addebitate"),
    ("requires_reminder", "bool", "Contenzioso solo dopo il sollecito"),
    ("interest_spread", "decimal", "Maggiorazione sul tasso legale (punti, da -3 a +3)"),
    ("interest_divisor", "choice", "Divisore dei giorni"),
    ("penalty_kind", "choice", "Sanzione"),
    ("penalty_percent_before", "decimal", "Sanzione per violazioni fino al cambio di regime (%)"),
    ("penalty_percent_after", "decimal", "Sanzione per violazioni dal cambio di regime (%)"),
    ("penalty_regime_change", "date", "Data del cambio di regime"),
    ("penalty_fixed_cents", "cents", "Sanzione in misura fissa"),
    ("notification_method", "choice", "Modalità di notifica dell'atto"),
    ("notification_cents", "cents", "Spese di notifica addebitate"),
    ("appeal_days", "int", "Giorni per pagare o ricorrere dalla notifica"),
    ("late_spread", "decimal", "Interessi di mora c.802: punti sul tasso legale"),
    ("charges_early_percent", "decimal", "Oneri di riscossione entro 60 giorni (%)"),
    ("charges_late_percent", "decimal", "Oneri di riscossione dopo 60 giorni (%)"),
    ("assessment_taxonomy_code", "text", "Codice tassonomico del tributo nell'atto"),
    ("penalty_taxonomy_code", "text", "Codice tassonomico di sanzione e interessi (versamento separato)"),
    ("costs_taxonomy_code", "text", "Codice tassonomico delle spese (versamento separato)"),
)

CHOICES = {
    "interest_divisor": (("365", "365 giorni"), ("leap", "366 negli anni bisestili")),
    "penalty_kind": (("percent", "in percentuale dell'imposta"), ("fixed", "in misura fissa"), ("none", "nessuna")),
}


def save_policy(session: Session, service: Service, values: dict) -> CollectionPolicy:
    """Store the service's policy from already parsed ``values`` (the form checks the types).

    :raise ValidationFailed: with the fields that break a rule (spread beyond ±3 points, taxonomy codes).
    """
    from portal.ledger.taxonomy import TaxonomyError, validate

    errors = []
    spread = values.get("interest_spread")
    if spread is not None and abs(Decimal(spread)) > charges.MAX_SPREAD:
        errors.append(FieldError("interest_spread", "La maggiorazione deve essere compresa fra -3 e +3 punti."))
    for name in ("assessment_taxonomy_code", "penalty_taxonomy_code", "costs_taxonomy_code"):
        code = (values.get(name) or "").strip()
        values[name] = None
        if code:
            try:
                values[name] = validate(code)
            except TaxonomyError as exc:
                errors.append(FieldError(name, str(exc)))
    if errors:
        raise ValidationFailed(errors)
    policy = session.get(CollectionPolicy, service.id)
    if policy is None:
        policy = default_policy(service)
        session.add(policy)
    for name, value in values.items():
        setattr(policy, name, value)
    session.flush()
    return policy
