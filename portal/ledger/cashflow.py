"""Collections at a glance: what fell due, what was paid and what the PSPs credited, per service and day, read from
``cashflow_totals``, never from the positions, options or receipts themselves.

Database triggers (migration ``2e38df6531af``) append delta rows in the transaction of every change, so the figures
are exact whatever writes (a receipt, a payment recorded at the counter, a bulk import, a flow, a cancellation, a
script); :func:`compact` (the dashboard totals' periodic job) folds them into one row per key. The three bases:

- ``due``: the amount of every payment option not cancelled, on its due date. An installment counts only while its
  position has no single payment still open: a position offering both counts its amount once, on the single
  payment's date, until an installment is paid (which cancels the single payment) — then on the installments'.
- ``paid``: the amount of every paid option, on the day (in Rome) the citizen paid it: a receipt arriving late
  counts in the week of the payment. A receipt pagoPA sends for nothing payable (a cancelled position, a second
  payment) pays no option: it is money to give back, not collected (the anomalies list it).
- ``regulation``: the amount of every flow line that reports one of our transfers (an *active* line), on its flow's
  regulation date, the day the PSP's bank credit reached the Comune's treasury. A later revision of a flow
  replaces the earlier one's lines; a beneficiary's share (TEFA) is reported to the beneficiary, not here.

A position never changes service (``changes.update_position`` refuses it) and a stored flow keeps its regulation
date, so the triggers watch only the options and the flow lines.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.ledger.flows import ReportedPayment, ReportingFlow
from portal.ledger.locks import take_write_lock
from portal.ledger.models import CashflowTotal, PaymentOption, Position
from portal.ledger.status import OptionStatus
from portal.ledger.totals import DeltaTable, scoped
from portal.ledger.types import ROME

DUE, PAID, REGULATION = "due", "paid", "regulation"
BASES = (DUE, PAID, REGULATION)
KEY = ("creditor_id", "service_id", "basis", "day")
SUMS = ("count", "amount_cents")
#: The dashboard's period: the 52 weeks (Monday to Sunday) up to the current one, about the last 12 months.
WEEKS = 52

_DELTAS = DeltaTable(CashflowTotal.__tablename__, KEY, SUMS)


def compact(session: Session) -> int:
    """Fold the delta rows into one row per key (keys summing to nothing go); how many rows fewer."""
    return _DELTAS.compact(session)


@dataclass
class Figures:
    """Cents and counts of the three bases over a period (one week, or the whole period of one service)."""

    due_cents: int = 0
    due_count: int = 0
    paid_cents: int = 0
    paid_count: int = 0
    regulation_cents: int = 0
    regulation_count: int = 0

    def add(self, basis: str, count: int, cents: int) -> None:
        setattr(self, f"{basis}_count", getattr(self, f"{basis}_count") + count)
        setattr(self, f"{basis}_cents", getattr(self, f"{basis}_cents") + cents)

    @property
    def paid_share(self) -> float | None:
        """What was paid as a share of what fell due (``None`` when nothing fell due)."""
        return self.paid_cents / self.due_cents if self.due_cents else None


@dataclass
class Week(Figures):
    """One week, Monday to Sunday."""

    start: date = date.min

    @property
    def end(self) -> date:
        return self.start + timedelta(days=6)


@dataclass
class Cashflow:
    """The weeks of the period, oldest first, for the services asked (or all those in scope), and the whole
    period's figures per service in scope."""

    weeks: list[Week]
    by_service: dict[int, Figures] = field(default_factory=dict)

    @property
    def start(self) -> date:
        return self.weeks[0].start

    @property
    def end(self) -> date:
        return self.weeks[-1].end

    @property
    def total(self) -> Figures:
        """The figures of the whole period over the weeks shown."""
        total = Figures()
        for week in self.weeks:
            for basis in BASES:
                total.add(basis, getattr(week, f"{basis}_count"), getattr(week, f"{basis}_cents"))
        return total


def first_week(today: date, weeks: int = WEEKS) -> date:
    """The Monday that starts the period of ``weeks`` weeks ending with the week of ``today``."""
    return today - timedelta(days=today.weekday(), weeks=weeks - 1)


def weekly(session: Session, creditor_id: int, *, today: date, scope: set[int] | None = None,
           service_id: int | None = None, weeks: int = WEEKS) -> Cashflow:
    """The collections of the ``weeks`` weeks up to ``today``'s, in two grouped reads of the totals (per basis and
    week, per service and basis: a few hundred rows, whatever the number of positions).

    :param scope: the services the officer sees (``None``: all); the figures of other services are never read.
    :param service_id: the one service the weeks are about (``None``: every service in scope); the per-service
        figures cover every service in scope either way.
    """
    start = first_week(today, weeks)
    end = start + timedelta(weeks=weeks, days=-1)
    t = CashflowTotal
    if session.get_bind().dialect.name == "postgresql":
        bucket = (t.day - start) // 7
    else:
        bucket = sa.cast(sa.func.julianday(t.day) - sa.func.julianday(start.isoformat()), sa.Integer) // 7
    bucket = bucket.label("week")
    sums = (sa.func.sum(t.count), sa.func.sum(t.amount_cents))
    period = (*scoped(t, creditor_id, scope), t.day >= start, t.day <= end)
    result = Cashflow([Week(start=start + timedelta(weeks=n)) for n in range(weeks)])
    chosen = () if service_id is None else (t.service_id == service_id,)
    for basis, week, count, cents in session.execute(
            sa.select(t.basis, bucket, *sums).where(*period, *chosen).group_by(t.basis, bucket)):
        result.weeks[int(week)].add(basis, int(count), int(cents))
    for service, basis, count, cents in session.execute(
            sa.select(t.service_id, t.basis, *sums).where(*period).group_by(t.service_id, t.basis)):
        result.by_service.setdefault(service, Figures()).add(basis, int(count), int(cents))
    return result


# --- Checks: the figures computed from the ledger itself (a scan, for tests and operators) ------------------------


def from_ledger(session: Session) -> dict[tuple, tuple[int, int]]:
    """``(creditor, service, basis, day) → (count, cents)`` computed from the options and flow lines, in Python,
    by the rules of the module docstring (streamed position by position: memory stays flat)."""
    figures: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])

    def count(key: tuple, cents: int) -> None:
        figures[key][0] += 1
        figures[key][1] += cents

    o = PaymentOption
    rows = session.execute(
        sa.select(o.creditor_id, Position.service_id, o.position_id, o.kind, o.status, o.amount_cents, o.due_date,
                  o.paid_at)
        .join(Position, Position.id == o.position_id).order_by(o.position_id, o.id)
        .execution_options(yield_per=10_000))
    for options in _by_position(rows):
        single_open = any(r.kind == "single" and r.status != OptionStatus.CANCELLED for r in options)
        for r in options:
            if r.status != OptionStatus.CANCELLED and (r.kind == "single" or not single_open):
                count((r.creditor_id, r.service_id, DUE, r.due_date), r.amount_cents)
            if r.status == OptionStatus.PAID and r.paid_at is not None:
                count((r.creditor_id, r.service_id, PAID, r.paid_at.astimezone(ROME).date()), r.amount_cents)
    line = ReportedPayment
    for creditor_id, service_id, day, cents in session.execute(
            sa.select(line.creditor_id, Position.service_id, ReportingFlow.regulation_date, line.amount_cents)
            .join(ReportingFlow, ReportingFlow.id == line.flow_id).join(Position, Position.id == line.position_id)
            .where(line.active, ReportingFlow.regulation_date.is_not(None))):
        count((creditor_id, service_id, REGULATION, day), cents)
    return {key: (n, cents) for key, (n, cents) in figures.items()}


def _by_position(rows):
    options, current = [], None
    for row in rows:
        if row.position_id != current and options:
            yield options
            options = []
        current = row.position_id
        options.append(row)
    if options:
        yield options


def kept(session: Session) -> dict[tuple, tuple[int, int]]:
    """What the totals hold: ``(creditor, service, basis, day) → (count, cents)``, keys netting to nothing left out."""
    t = CashflowTotal
    keys = [getattr(t, name) for name in KEY]
    return {tuple(r[:4]): (int(r[4]), int(r[5])) for r in session.execute(
        sa.select(*keys, sa.func.sum(t.count), sa.func.sum(t.amount_cents)).group_by(*keys)
        .having(sa.or_(sa.func.sum(t.count) != 0, sa.func.sum(t.amount_cents) != 0)))}


def rebuild(session: Session) -> None:
    """Sum the ledger again (after a bulk load done with triggers off, or to repair the totals)."""
    take_write_lock(session)
    session.execute(sa.delete(CashflowTotal))
    rows = [dict(zip(KEY + SUMS, (*key, *sums), strict=True)) for key, sums in from_ledger(session).items()]
    if rows:
        session.execute(sa.insert(CashflowTotal), rows)
