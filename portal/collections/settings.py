"""The collection settings an administrator edits: the legal-rate table and each service's policy."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.collections import charges, history
from portal.collections.history import as_text
from portal.collections.models import NOTIFICATION_METHODS, CollectionPolicy, LegalRate, default_policy
from portal.i18n import N_, _
from portal.ledger.errors import FieldError, ValidationFailed
from portal.ledger.models import Service
from portal.money import format_euro

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


def parse_decimal(text: str | None) -> Decimal | None:
    """A number as a person types it (``1,6`` or ``1.6``); ``None`` when it is not one."""
    try:
        value = Decimal((text or "").strip().replace(",", "."))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _rate_values(row: LegalRate | None) -> dict:
    if row is None:
        return {}
    return {"effective_from": row.effective_from, "percent": Decimal(row.percent), "decree": row.decree}


def save_legal_rate(session: Session, *, effective_from: date | None, percent: str, decree: str, actor: str,
                    user_id: int | None = None, rate_id: int | None = None) -> LegalRate:
    """Add the rate in force from a date, or change the row of that date (a repeated request changes nothing);
    with ``rate_id``, correct that row (its date too). Every field changed goes to the history.

    :raise ValidationFailed: with the field and an Italian message; nothing is changed.
    :raise LookupError: ``rate_id`` names no row.
    """
    errors = []
    if effective_from is None:
        errors.append(FieldError("effective_from", _("Indicare la data da cui il tasso è in vigore (gg/mm/aaaa).")))
    value = parse_decimal(percent)
    if value is None or not (Decimal(0) <= value < Decimal(100)) or value.as_tuple().exponent < -3:
        errors.append(FieldError("percent", _("Tasso non valido: un numero fra 0 e 100, al più tre decimali "
                                              "(es. 1,6).")))
    row = None
    if rate_id is not None:
        row = session.get(LegalRate, rate_id)
        if row is None:
            raise LookupError(rate_id)
    if effective_from is not None:
        same_day = session.scalar(sa.select(LegalRate).where(LegalRate.effective_from == effective_from))
        if row is None:
            row = same_day
        elif same_day is not None and same_day.id != row.id:
            errors.append(FieldError("effective_from", _("Esiste già un tasso in vigore dal %(day)s: correggere "
                                                         "quella riga.", day=effective_from.strftime("%d/%m/%Y"))))
    if errors:
        raise ValidationFailed(errors)
    before = _rate_values(row)
    if row is None:
        row = LegalRate()
        session.add(row)
    row.effective_from, row.percent = effective_from, value
    row.decree = " ".join((decree or "").split())[:140]
    session.flush()
    history.record(session, actor=actor, user_id=user_id, subject="legal_rate", before=before,
                   after=_rate_values(row), rate_from=row.effective_from)
    return row


def delete_legal_rate(session: Session, rate_id: int, *, actor: str, user_id: int | None = None) -> bool:
    """Remove a row entered by mistake (its values stay in the history); whether there was one.

    :raise ValidationFailed: it is the table's last row (without one no interest can be computed).
    """
    row = session.get(LegalRate, rate_id)
    if row is None:
        return False
    if session.scalar(sa.select(sa.func.count()).select_from(LegalRate)) == 1:
        raise ValidationFailed([FieldError("effective_from", _("È l'ultimo tasso della tabella: aggiungere prima "
                                                               "quello giusto, poi eliminare questo."))])
    history.record(session, actor=actor, user_id=user_id, subject="legal_rate", before=_rate_values(row), after={},
                   rate_from=row.effective_from)
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
#: ``choice``), with the Italian label the settings page shows, in the page's order.
POLICY_FIELDS = (
    ("grace_days", "int", N_("Giorni di tolleranza dopo la scadenza")),
    ("reminder_days", "int", N_("Giorni per pagare dopo il sollecito")),
    ("reminder_cost_cents", "cents", N_("Spese del sollecito addebitate")),
    ("requires_reminder", "bool", N_("Contenzioso solo dopo il sollecito")),
    ("interest_spread", "decimal", N_("Maggiorazione sul tasso legale (punti, da -3 a +3)")),
    ("interest_divisor", "choice", N_("Divisore dei giorni")),
    ("penalty_kind", "choice", N_("Sanzione")),
    ("penalty_percent_before", "decimal", N_("Sanzione per violazioni fino al cambio di regime (%)")),
    ("penalty_percent_after", "decimal", N_("Sanzione per violazioni dal cambio di regime (%)")),
    ("penalty_regime_change", "date", N_("Data del cambio di regime")),
    ("penalty_fixed_cents", "cents", N_("Sanzione in misura fissa")),
    ("penalty_min_cents", "cents", N_("Sanzione minima")),
    ("penalty_max_cents", "cents", N_("Sanzione massima")),
    ("penalty_reduce_late", "bool", N_("Sanzione ridotta per i versamenti tardivi")),
    ("penalty_half_within_days", "int", N_("Sanzione ridotta alla metà fino a giorni di ritardo")),
    ("penalty_daily_within_days", "int",
     N_("Riduzione giornaliera fino a giorni di ritardo (1/N della metà al giorno)")),
    ("notification_method", "choice", N_("Modalità di notifica dell'atto")),
    ("notification_cents", "cents", N_("Spese di notifica addebitate")),
    ("appeal_days", "int", N_("Giorni per pagare o ricorrere dalla notifica")),
    ("late_spread", "decimal", N_("Interessi di mora c.802: punti sul tasso legale")),
    ("late_delay_days", "int", N_("Interessi di mora c.802: giorni dopo l'esecutività")),
    ("charges_early_percent", "decimal", N_("Oneri di riscossione entro la finestra (%)")),
    ("charges_early_cap_cents", "cents", N_("Oneri di riscossione entro la finestra: massimo")),
    ("charges_late_percent", "decimal", N_("Oneri di riscossione dopo la finestra (%)")),
    ("charges_late_cap_cents", "cents", N_("Oneri di riscossione dopo la finestra: massimo")),
    ("charges_window_days", "int", N_("Finestra degli oneri ridotti: giorni dall'esecutività")),
    ("assessment_taxonomy_code", "text", N_("Codice tassonomico del tributo nell'atto")),
    ("penalty_taxonomy_code", "text", N_("Codice tassonomico di sanzione e interessi (versamento separato)")),
    ("costs_taxonomy_code", "text", N_("Codice tassonomico delle spese (versamento separato)")),
)
FIELD_KINDS = {name: kind for name, kind, _label in POLICY_FIELDS}
FIELD_LABELS = {name: label for name, _kind, label in POLICY_FIELDS}
#: Fields left empty on purpose (no cap, the service's own taxonomy, no separate transfer).
OPTIONAL_FIELDS = frozenset({"penalty_min_cents", "penalty_max_cents", "assessment_taxonomy_code",
                             "penalty_taxonomy_code", "costs_taxonomy_code"})

#: The settings page's sections: a legend and the fields under it.
POLICY_GROUPS = (
    (N_("Scadenza e sollecito"), ("grace_days", "reminder_days", "reminder_cost_cents", "requires_reminder")),
    (N_("Interessi (c.165 L. 296/2006)"), ("interest_spread", "interest_divisor")),
    (N_("Sanzione (art. 13 D.Lgs. 471/1997)"), (
        "penalty_kind", "penalty_percent_before", "penalty_percent_after", "penalty_regime_change",
        "penalty_fixed_cents", "penalty_min_cents", "penalty_max_cents", "penalty_reduce_late",
        "penalty_half_within_days", "penalty_daily_within_days")),
    (N_("Atto e notifica"), ("notification_method", "notification_cents", "appeal_days")),
    (N_("Dopo l'esecutività (c.802 e c.803 L. 160/2019)"), (
        "late_spread", "late_delay_days", "charges_early_percent", "charges_early_cap_cents", "charges_late_percent",
        "charges_late_cap_cents", "charges_window_days")),
    (N_("Versamenti dell'atto"), ("assessment_taxonomy_code", "penalty_taxonomy_code", "costs_taxonomy_code")),
)

CHOICES = {
    "interest_divisor": (("365", N_("365 giorni")), ("leap", N_("366 negli anni bisestili"))),
    "penalty_kind": (("percent", N_("in percentuale dell'imposta")), ("fixed", N_("in misura fissa")),
                     ("none", N_("nessuna"))),
    "notification_method": tuple((code, label) for code, (label, _cents) in NOTIFICATION_METHODS.items()),
}

#: The legal-rate table's fields, for the history.
RATE_LABELS = {"effective_from": N_("In vigore dal"), "percent": N_("Tasso (%)"), "decree": N_("Decreto")}

#: Bounds of the whole-number settings (days): the least value, and a sanity maximum (ten years).
MAX_DAYS = 3650
MIN_DAYS = {"reminder_days": 1, "appeal_days": 1}
#: Bounds of the decimal settings: (least, greatest); the decimals allowed are the column's.
DECIMAL_RANGES = {
    "interest_spread": (-charges.MAX_SPREAD, charges.MAX_SPREAD), "late_spread": (Decimal(-10), Decimal(10)),
    "penalty_percent_before": (Decimal(0), Decimal(100)), "penalty_percent_after": (Decimal(0), Decimal(100)),
    "charges_early_percent": (Decimal(0), Decimal(100)), "charges_late_percent": (Decimal(0), Decimal(100)),
}


def policy_values(policy: CollectionPolicy) -> dict:
    """The policy's editable values, by field."""
    return {name: getattr(policy, name) for name in FIELD_KINDS}


def check_policy(values: dict) -> list[FieldError]:
    """The rules of the values (ranges, choices, caps in order, taxonomy codes); normalises the codes in place.

    Rules between two fields apply when both are given (a field that could not be read is left out)."""
    from portal.ledger.taxonomy import TaxonomyError, validate

    errors = []
    for name, value in values.items():
        kind = FIELD_KINDS.get(name)
        if kind is None:
            errors.append(FieldError(name, _("Impostazione sconosciuta.")))
        elif value is None or value == "":
            if name not in OPTIONAL_FIELDS and kind != "bool":
                errors.append(FieldError(name, _("Indicare un valore.")))
        elif kind == "int" and not (MIN_DAYS.get(name, 0) <= value <= MAX_DAYS):
            errors.append(FieldError(name, _("Indicare un numero di giorni fra %(low)d e %(high)d.",
                                             low=MIN_DAYS.get(name, 0), high=MAX_DAYS)))
        elif kind == "cents" and not (0 <= value <= 99_999_999_999):
            errors.append(FieldError(name, _("Importo non valido.")))
        elif kind == "decimal":
            low, high = DECIMAL_RANGES[name]
            scale = CollectionPolicy.__table__.c[name].type.scale
            if not (low <= Decimal(value) <= high) or Decimal(value).as_tuple().exponent < -scale:
                errors.append(FieldError(name, _("Indicare un numero fra %(low)s e %(high)s, al più %(n)d decimali.",
                                                 low=_number(low), high=_number(high), n=scale)))
        elif kind == "choice" and value not in dict(CHOICES[name]):
            errors.append(FieldError(name, _("Scelta non prevista.")))
    low, high = values.get("penalty_min_cents"), values.get("penalty_max_cents")
    if low is not None and high is not None and low > high:
        errors.append(FieldError("penalty_max_cents", _("La sanzione massima non può essere minore della minima.")))
    half, daily = values.get("penalty_half_within_days"), values.get("penalty_daily_within_days")
    if isinstance(half, int) and isinstance(daily, int) and daily > half:
        errors.append(FieldError("penalty_daily_within_days", _("I giorni della riduzione giornaliera non possono "
                                                                "superare quelli della riduzione alla metà.")))
    for name in ("assessment_taxonomy_code", "penalty_taxonomy_code", "costs_taxonomy_code"):
        if name not in values:
            continue
        code = (values.get(name) or "").strip()
        values[name] = None
        if code:
            try:
                values[name] = validate(code)
            except TaxonomyError as exc:
                errors.append(FieldError(name, str(exc)))
    return errors


def _number(value: Decimal) -> str:
    return as_text(value).replace(".", ",")


def save_policy(session: Session, service: Service, values: dict, *, actor: str,
                user_id: int | None = None) -> list[str]:
    """Store the service's policy from already parsed ``values`` (the form checks the types); every field
    changed goes to the history. Returns the fields changed (none: nothing written, not even the policy row).

    :raise ValidationFailed: with every field that breaks a rule; nothing is changed.
    """
    values = dict(values)
    errors = check_policy(values)
    if errors:
        raise ValidationFailed(errors)
    policy = session.get(CollectionPolicy, service.id)
    before = policy_values(policy or default_policy(service))
    after = {**before, **values}
    changed = [name for name in FIELD_KINDS if as_text(before[name]) != as_text(after[name])]
    if not changed:
        return []
    if policy is None:
        policy = default_policy(service)
        session.add(policy)
    for name in changed:
        setattr(policy, name, after[name])
    session.flush()
    history.record(session, actor=actor, user_id=user_id, subject="policy", service_id=service.id,
                   before={n: before[n] for n in changed}, after={n: after[n] for n in changed})
    return changed


def display_value(subject: str, field: str, text: str | None) -> str:
    """A value of the history as the page shows it (euro, decimal comma, gg/mm/aaaa, Sì/No, the choice's name)."""
    if text is None:
        return "–"
    kind = {"effective_from": "date", "percent": "decimal"}.get(field, "text") if subject == "legal_rate" \
        else FIELD_KINDS.get(field, "text")
    if kind == "cents":
        return format_euro(int(text))
    if kind == "decimal":
        return text.replace(".", ",")
    if kind == "date":
        return date.fromisoformat(text).strftime("%d/%m/%Y")
    if kind == "bool":
        return _("Sì") if text == "true" else _("No")
    if kind == "choice":
        return _(dict(CHOICES[field]).get(text, text))
    return text


def field_label(subject: str, field: str) -> str:
    """The Italian name of a field of the history."""
    return _((RATE_LABELS if subject == "legal_rate" else FIELD_LABELS).get(field, field))
