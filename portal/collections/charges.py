"""Interest, penalties and costs of an unpaid municipal credit: the engine behind reminders and assessments.

Plain Python on integer cents, no database and no Flask: every figure comes from the arguments (the legal-rate
table and the service's policy are settings an administrator edits, see ``domain-digest.md`` §1), and every
amount carries its breakdown, so an officer reads how it was reached before confirming, and the act prints it.

Conventions (digest §1.2), each stated here once:

- simple interest, accruing day by day from the day after the due date up to and including the end date;
- the period is split at every change of rate (and at each 1 January when the divisor follows the year, 366 in
  leap years); each segment is kept at full precision and only the **total** is rounded half-up to the cent;
- the base is the tax only: interest is never charged on penalties or on interest;
- a spread (c.165: −3..+3 points) is added to the legal rate; a rate below zero counts as zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

ZERO = Decimal(0)
HUNDRED = Decimal(100)
#: Day-count divisors: ``365`` every year (tax practice, the default), or ``leap`` (366 in leap years).
DIVISORS = ("365", "leap")
#: c.165 L.296/2006: the Comune's rate differs from the legal one by at most three points.
MAX_SPREAD = Decimal(3)


class ChargeError(ValueError):
    """The figures cannot be computed from these settings (Italian message for the officer)."""


def to_cents(value: Decimal) -> int:
    """Round an exact amount in cents half-up to a whole cent."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _decimal(value) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


# --- Legal interest ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """One row of the legal-rate table (art. 1284 c.c.): the yearly rate in percent from ``effective_from``."""

    effective_from: date
    percent: Decimal
    decree: str = ""


@dataclass(frozen=True)
class Segment:
    """A stretch of days at one rate: ``start`` and ``end`` both included; ``cents`` at full precision."""

    start: date
    end: date
    days: int
    percent: Decimal
    divisor: int
    cents: Decimal


@dataclass(frozen=True)
class Interest:
    """Interest on ``capital_cents`` over (``since``, ``until``], with its segments; ``cents`` is the rounded total."""

    capital_cents: int
    since: date
    until: date
    spread: Decimal
    divisor: str
    segments: tuple[Segment, ...]
    cents: int

    @property
    def days(self) -> int:
        return sum(s.days for s in self.segments)

    @property
    def exact_cents(self) -> Decimal:
        return sum((s.cents for s in self.segments), ZERO)


def _sorted_rates(rates: Iterable[Rate]) -> list[Rate]:
    table = sorted(rates, key=lambda r: r.effective_from)
    if not table:
        raise ChargeError("La tabella dei tassi di interesse legale è vuota.")
    return table


def rate_on(rates: Sequence[Rate], day: date) -> Rate:
    """The legal rate in force on ``day`` (the latest row starting on or before it).

    :raise ChargeError: when the table starts after ``day``.
    """
    found = None
    for rate in _sorted_rates(rates):
        if rate.effective_from <= day:
            found = rate
    if found is None:
        raise ChargeError(f"Nessun tasso di interesse legale in vigore al {day:%d/%m/%Y}: completare la tabella.")
    return found


def interest(capital_cents: int, since: date, until: date, rates: Iterable[Rate], *, spread=ZERO,
             divisor: str = "365") -> Interest:
    """Simple interest on ``capital_cents`` accruing from the day after ``since`` to ``until`` included.

    ``since`` is the due date (interest runs from the next day), ``until`` the payment or issue date.

    :raise ChargeError: unknown divisor, spread beyond ±3 points, or no rate for part of the period.
    """
    if divisor not in DIVISORS:
        raise ChargeError(f"Divisore {divisor!r} non previsto: 365 oppure anno effettivo.")
    spread = _decimal(spread)
    if abs(spread) > MAX_SPREAD:
        raise ChargeError("La maggiorazione del tasso deve essere compresa fra -3 e +3 punti (art. 1 c.165 "
                          "L. 296/2006).")
    table = _sorted_rates(rates)
    segments: list[Segment] = []
    day = since + timedelta(days=1)
    while day <= until:
        rate = rate_on(table, day)
        stops = [r.effective_from for r in table if r.effective_from > day]
        stops.append(date(day.year + 1, 1, 1))  # a year boundary: harmless with 365, needed for the leap divisor
        stops.append(until + timedelta(days=1))
        stop = min(stops)
        days = (stop - day).days
        basis = 366 if divisor == "leap" and _leap(day.year) else 365
        percent = max(rate.percent + spread, ZERO)
        cents = Decimal(capital_cents) * percent / HUNDRED * days / basis
        segments.append(Segment(day, stop - timedelta(days=1), days, percent, basis, cents))
        day = stop
    merged = _merge(segments)
    total = to_cents(sum((s.cents for s in merged), ZERO))
    return Interest(capital_cents, since, until, spread, divisor, tuple(merged), total)


def _merge(segments: list[Segment]) -> list[Segment]:
    """Join consecutive segments at the same rate and divisor (a year boundary that changed nothing)."""
    merged: list[Segment] = []
    for seg in segments:
        last = merged[-1] if merged else None
        if last and last.percent == seg.percent and last.divisor == seg.divisor:
            merged[-1] = Segment(last.start, seg.end, last.days + seg.days, seg.percent, seg.divisor,
                                 last.cents + seg.cents)
        else:
            merged.append(seg)
    return merged


# --- Penalties ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PenaltyRule:
    """A service's penalty for omitted or late payment (art. 13 D.Lgs. 471/1997), every figure a setting.

    ``kind``: ``percent`` of the unpaid tax, ``fixed`` amount, or ``none``. The percentage changes for violations
    (due dates) from ``regime_change`` (D.Lgs. 87/2024: 30% → 25% from 1 September 2024). When the tax was paid
    late, ``reduce_late`` halves it up to ``half_within_days`` days late and, up to ``daily_within_days`` days
    (15 by law), takes 1/``daily_within_days`` of the half per day late, so the reduction reaches the half on
    the last of those days and never exceeds it. ``min_cents``/``max_cents`` cap the result.
    """

    kind: str = "percent"
    percent_before: Decimal = Decimal(30)
    percent_after: Decimal = Decimal(25)
    regime_change: date = date(2024, 9, 1)
    fixed_cents: int = 0
    reduce_late: bool = True
    half_within_days: int = 90
    daily_within_days: int = 15
    min_cents: int | None = None
    max_cents: int | None = None

    def base_percent(self, due: date) -> Decimal:
        """The full percentage for a violation committed on ``due``."""
        return _decimal(self.percent_after if due >= self.regime_change else self.percent_before)


@dataclass(frozen=True)
class Penalty:
    """A penalty with how it was reached (``percent`` is the effective rate applied to the tax)."""

    cents: int
    percent: Decimal | None
    explanation: str


def _fmt_pct(value: Decimal) -> str:
    text = f"{value.quantize(Decimal('0.0001')):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(".", ",") + "%"


def _capped(cents: int, rule: PenaltyRule) -> int:
    if rule.min_cents is not None:
        cents = max(cents, rule.min_cents)
    if rule.max_cents is not None:
        cents = min(cents, rule.max_cents)
    return cents


def penalty(tax_cents: int, due: date, rule: PenaltyRule, *, paid_on: date | None = None) -> Penalty:
    """The penalty on ``tax_cents`` due on ``due``: omitted (``paid_on`` empty) or paid late on ``paid_on``."""
    if rule.kind == "none" or tax_cents <= 0:
        return Penalty(0, None, "Nessuna sanzione prevista dal servizio.")
    if rule.kind == "fixed":
        return Penalty(_capped(rule.fixed_cents, rule), None, "Sanzione in misura fissa.")
    if rule.kind != "percent":
        raise ChargeError(f"Tipo di sanzione {rule.kind!r} non previsto.")
    base = rule.base_percent(due)
    regime = "dal" if due >= rule.regime_change else "fino al"
    cutoff = rule.regime_change if due >= rule.regime_change else rule.regime_change - timedelta(days=1)
    why = f"{_fmt_pct(base)} per violazioni {regime} {cutoff:%d/%m/%Y}"
    percent = base
    late = (paid_on - due).days if paid_on else None
    if late is not None and late <= 0:
        return Penalty(0, ZERO, "Pagato entro la scadenza: nessuna sanzione.")
    if rule.reduce_late and late is not None and late <= rule.half_within_days:
        if late <= rule.daily_within_days:
            percent = base / 2 / rule.daily_within_days * late
            why += f", ridotta a 1/{rule.daily_within_days} della metà per ciascuno dei {late} giorni di ritardo"
        else:
            percent = base / 2
            why += f", ridotta alla metà (ritardo di {late} giorni, entro {rule.half_within_days})"
    cents = _capped(to_cents(Decimal(tax_cents) * percent / HUNDRED), rule)
    return Penalty(cents, percent, f"{why}: {_fmt_pct(percent)} dell'imposta non versata.")


#: Ravvedimento operoso (art. 13 D.Lgs. 472/1997): up to how many days late, and which fraction of which penalty.
#: ``half``: the fraction applies to the halved penalty (the minimum for payments within 90 days), else to the
#: full one; ``daily``: a further 1/15 per day late. The old regime (violations before the change) keeps 1/6.
@dataclass(frozen=True)
class RavvedimentoTier:
    """One tier of the ravvedimento schedule: up to ``max_days`` late (``None``: no limit)."""

    max_days: int | None
    fraction: int
    half: bool
    daily: bool = False
    old_regime_only: bool = False


RAVVEDIMENTO_TIERS: tuple[RavvedimentoTier, ...] = (
    RavvedimentoTier(14, 10, half=True, daily=True),
    RavvedimentoTier(30, 10, half=True),
    RavvedimentoTier(90, 9, half=True),
    RavvedimentoTier(365, 8, half=False),
    RavvedimentoTier(730, 7, half=False),
    RavvedimentoTier(None, 6, half=False, old_regime_only=True),
)


def ravvedimento_penalty(tax_cents: int, due: date, paid_on: date, rule: PenaltyRule, *,
                         tiers: Sequence[RavvedimentoTier] = RAVVEDIMENTO_TIERS) -> Penalty:
    """The reduced penalty of a voluntary correction paid on ``paid_on`` (no assessment notified yet).

    The new regime (violations from ``rule.regime_change``) has no 1/6 tier: beyond the 1/7 tier's days it stays
    at 1/7 with no time limit.
    """
    late = (paid_on - due).days
    if late <= 0:
        return Penalty(0, ZERO, "Pagato entro la scadenza: nessuna sanzione.")
    base = rule.base_percent(due)
    new_regime = due >= rule.regime_change
    usable = [t for t in tiers if not (new_regime and t.old_regime_only)]
    tier = next((t for t in usable if t.max_days is None or late <= t.max_days), usable[-1])
    percent = (base / 2 if tier.half else base) / tier.fraction
    why = f"ravvedimento a {late} giorni: 1/{tier.fraction} della sanzione"
    if tier.half:
        why += " ridotta alla metà"
    if tier.daily:
        percent = percent / 15 * late
        why += ", 1/15 per ciascun giorno di ritardo"
    cents = to_cents(Decimal(tax_cents) * percent / HUNDRED)
    return Penalty(cents, percent, f"{why} ({_fmt_pct(base)}): {_fmt_pct(percent)} dell'imposta.")


def semester_surcharge(sanction_cents: int, due: date, until: date, *, percent=Decimal(10),
                       convention: str = "full") -> tuple[int, int]:
    """Art. 27 L. 689/1981 (traffic fines): +``percent`` of the sanction per semester from ``due`` to ``until``.

    ``convention``: ``full`` semesters elapsed, or every semester ``started``. Returns (semesters, cents).
    """
    if convention not in ("full", "started"):
        raise ChargeError("Convenzione dei semestri non prevista: semestri compiuti o iniziati.")
    if until < due:
        return 0, 0
    months = (until.year - due.year) * 12 + until.month - due.month
    if until.day < due.day:
        months -= 1
    full = months // 6
    boundary = _add_months(due, full * 6)
    semesters = full + (1 if convention == "started" and until >= boundary else 0)
    return semesters, to_cents(Decimal(sanction_cents) * _decimal(percent) / HUNDRED * semesters)


def _add_months(day: date, months: int) -> date:
    year, month = divmod(day.month - 1 + months, 12)
    year += day.year
    month += 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


# --- An assessment: what the new act asks, line by line ------------------------------------------------------------


@dataclass(frozen=True)
class AssessmentPolicy:
    """A service's figures for an *accertamento esecutivo* (L. 160/2019 c.792–803), every one a setting."""

    spread: Decimal = ZERO
    divisor: str = "365"
    penalty: PenaltyRule = field(default_factory=PenaltyRule)
    #: Notification cost charged to the debtor (DM 14/04/2023: raccomandata A/R 7,83 €).
    notification_cents: int = 783
    #: Days to pay (and to appeal) from notification: the act is enforceable the day after.
    appeal_days: int = 60
    #: c.802: late-payment interest at the legal rate plus these points, from this many days after enforceability.
    late_spread: Decimal = Decimal(2)
    late_delay_days: int = 30
    #: c.803: collection charges within ``charges_window_days`` of enforceability, and after.
    charges_early_percent: Decimal = Decimal(3)
    charges_early_cap_cents: int = 30000
    charges_late_percent: Decimal = Decimal(6)
    charges_late_cap_cents: int = 60000
    charges_window_days: int = 60


@dataclass(frozen=True)
class Line:
    """One line of the breakdown: a code (``tax``, ``penalty``, ``interest``, ``notification``, ``late_interest``,
    ``collection``), its Italian label, the amount and how it was computed."""

    code: str
    label: str
    cents: int
    explanation: str


@dataclass(frozen=True)
class Breakdown:
    """Every line of what is owed, and the total."""

    lines: tuple[Line, ...]

    @property
    def cents(self) -> int:
        return sum(line.cents for line in self.lines)

    def amount(self, code: str) -> int:
        return sum(line.cents for line in self.lines if line.code == code)

    def as_dicts(self) -> list[dict]:
        """The lines as plain values (stored on the timeline, printed on the act)."""
        return [{"code": line.code, "label": line.label, "cents": line.cents, "explanation": line.explanation}
                for line in self.lines]


def _interest_explanation(result: Interest) -> str:
    parts = [f"{s.start:%d/%m/%Y}–{s.end:%d/%m/%Y}: {s.days} gg al {_fmt_pct(s.percent)}" for s in result.segments]
    divisor = "365" if result.divisor == "365" else "365/366"
    return f"{'; '.join(parts) or 'nessun giorno'} (divisore {divisor}, arrotondato sul totale)"


def assessment(tax_cents: int, due: date, issued_on: date, rates: Sequence[Rate],
               policy: AssessmentPolicy) -> Breakdown:
    """What the act asks if paid within the appeal deadline: tax, penalty, interest to the issue date, notification.

    No collection charges (c.803) nor late-payment interest (c.802) are due before the act is enforceable.
    """
    pen = penalty(tax_cents, due, policy.penalty)
    accrued = interest(tax_cents, due, issued_on, rates, spread=policy.spread, divisor=policy.divisor)
    lines = [Line("tax", "Imposta non versata", tax_cents, f"scaduta il {due:%d/%m/%Y}")]
    if pen.cents:
        lines.append(Line("penalty", "Sanzione", pen.cents, pen.explanation))
    if accrued.cents:
        lines.append(Line("interest", "Interessi", accrued.cents, _interest_explanation(accrued)))
    if policy.notification_cents:
        lines.append(Line("notification", "Spese di notifica", policy.notification_cents, "DM MEF 14/04/2023"))
    return Breakdown(tuple(lines))


def enforceable_from(notified_on: date, policy: AssessmentPolicy) -> date:
    """The day the act becomes an enforcement title: after the ``appeal_days`` from notification."""
    return notified_on + timedelta(days=policy.appeal_days + 1)


def due_on(base: Breakdown, tax_cents: int, notified_on: date, paid_on: date, rates: Sequence[Rate],
           policy: AssessmentPolicy) -> Breakdown:
    """What the act asks if paid on ``paid_on``: ``base`` plus, once enforceable, c.802 interest and c.803 charges.

    The c.803 base is tax + penalty + interest, without notification costs (digest §1.8).
    """
    enforceable = enforceable_from(notified_on, policy)
    lines = list(base.lines)
    if paid_on < enforceable:
        return Breakdown(tuple(lines))
    start = enforceable + timedelta(days=policy.late_delay_days)
    if paid_on >= start:
        late = interest(tax_cents, start - timedelta(days=1), paid_on, rates, spread=policy.late_spread,
                        divisor=policy.divisor)
        if late.cents:
            lines.append(Line("late_interest", "Interessi di mora (c.802)", late.cents, _interest_explanation(late)))
    charge_base = base.amount("tax") + base.amount("penalty") + base.amount("interest")
    window_end = enforceable + timedelta(days=policy.charges_window_days)
    if paid_on <= window_end:
        percent, cap = _decimal(policy.charges_early_percent), policy.charges_early_cap_cents
    else:
        percent, cap = _decimal(policy.charges_late_percent), policy.charges_late_cap_cents
    charges = min(to_cents(Decimal(charge_base) * percent / HUNDRED), cap)
    if charges:
        lines.append(Line("collection", "Oneri di riscossione (c.803)", charges,
                          f"{_fmt_pct(percent)} di {charge_base / 100:.2f} €".replace(".", ",")
                          + f", massimo {cap / 100:.2f} €".replace(".", ",")))
    return Breakdown(tuple(lines))


def split_by_shares(cents: int, shares: Sequence[int]) -> list[int]:
    """Split ``cents`` in proportion to ``shares`` (largest remainder; the parts add up exactly)."""
    total = sum(shares)
    if total <= 0:
        return [0 for _ in shares]
    exact = [Decimal(cents) * s / total for s in shares]
    parts = [int(e) for e in exact]
    order = sorted(range(len(shares)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in order[: cents - sum(parts)]:
        parts[i] += 1
    return parts
