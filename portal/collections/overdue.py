"""What is overdue: the daily scan that marks unpaid positions expired, the dashboard's aging buckets, the
officers' alert and daily digest.

The scan is set-based (on PostgreSQL one statement per block of 5,000 locks, updates and writes the events; elsewhere
a SELECT, an UPDATE and a multi-row INSERT), and reads a range of a partial index of the expirable positions per
service, so a million positions cost what is due, not a scan of the table nor an ORM round-trip each; the status
change goes through the transition table
(only ``published`` and ``partially_paid`` may become ``expired``) and every position gets its ``expired`` event.
A position stays payable on pagoPA: GPD keeps it valid after the due date, so a late payment still arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.collections.models import CollectionPolicy
from portal.imports import bulk
from portal.ledger.locks import take_write_lock
from portal.ledger.models import Event, Position, PositionTotal, Service
from portal.ledger.status import OPEN_STATUSES, TRANSITIONS, PositionStatus
from portal.ledger.types import UTCDateTime, utcnow

S = PositionStatus
#: Statuses the scan moves to ``expired`` (the transition table allows exactly these among the open ones).
EXPIRABLE = tuple(s for s in (S.PUBLISHED, S.PARTIALLY_PAID) if S.EXPIRED in TRANSITIONS[s])
#: The statuses above as the literal predicate of the partial index ``ix_positions_expirable`` (a bound parameter
#: would keep a generic plan from using it).
_EXPIRABLE_SQL = sa.text("positions.status IN ({})".format(", ".join(f"'{s.value}'" for s in EXPIRABLE)))
#: Positions changed per statement.
BLOCK = 5000
ACTOR = "system"


@dataclass
class ScanResult:
    """How many positions the scan marked expired, per service id."""

    by_service: dict[int, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(self.by_service.values())

    def __str__(self) -> str:
        return f"{self.count} posizioni scadute non pagate segnate come scadute"


def scan(session: Session, *, today: date, now: datetime | None = None, creditor_id: int | None = None) -> ScanResult:
    """Mark expired every open, payable position whose earliest unpaid due date plus its service's grace days is
    before ``today``; one ``expired`` event each (with the due date and the grace). Running it again the same day
    changes nothing."""
    now = now or utcnow()
    result = ScanResult()
    take_write_lock(session)
    services = sa.select(Service.id, sa.func.coalesce(CollectionPolicy.grace_days, 0)).outerjoin(
        CollectionPolicy, CollectionPolicy.service_id == Service.id)
    if creditor_id is not None:
        services = services.where(Service.creditor_id == creditor_id)
    pg = session.get_bind().dialect.name == "postgresql"
    for service_id, grace in session.execute(services).all():
        cutoff = today - timedelta(days=int(grace))
        while True:
            moved = (_expire_block_pg(session, service_id, cutoff, int(grace), now) if pg
                     else _expire_block(session, service_id, cutoff, int(grace), now))
            if moved:
                result.by_service[service_id] = result.by_service.get(service_id, 0) + moved
            if moved < BLOCK:
                break
    session.expire_all()
    return result


def _candidates(service_id: int, cutoff: date) -> sa.Select:
    """A block of the service's expirable positions due before ``cutoff``, locked (those another transaction holds
    are skipped). A range of the partial index ``ix_positions_expirable``; no ORDER BY: each block leaves the
    index, so the next one starts on what is left."""
    return (sa.select(Position.id, Position.status, Position.due_date)
            .where(Position.service_id == service_id, _EXPIRABLE_SQL, Position.due_date < cutoff)
            .limit(BLOCK).with_for_update(skip_locked=True))


#: On PostgreSQL one statement per block: lock, move to ``expired`` and write the events, nothing sent back and
#: forth but the count. Only constants go into the text (the candidates' service id and date are rendered by
#: SQLAlchemy as literals: a data-modifying WITH must be the statement's top level, which its INSERT … SELECT is not).
_EXPIRE_BLOCK_PG = sa.text(f"""
WITH picked AS ({{candidates}}),
moved AS (
    UPDATE positions SET status = '{S.EXPIRED.value}', updated_at = :now FROM picked WHERE positions.id = picked.id
    RETURNING positions.id, picked.status AS previous, picked.due_date)
INSERT INTO events (position_id, kind, at, actor, actor_user_id, details)
SELECT id, '{S.EXPIRED.value}', :now, '{ACTOR}', NULL,
       json_build_object('previous', previous, 'due_date', to_char(due_date, 'YYYY-MM-DD'), 'grace_days', :grace)
FROM moved""")  # noqa: S608 - constants only


def _expire_block_pg(session: Session, service_id: int, cutoff: date, grace: int, now: datetime) -> int:
    candidates = _candidates(service_id, cutoff).compile(dialect=session.get_bind().dialect,
                                                          compile_kwargs={"literal_binds": True})
    statement = sa.text(_EXPIRE_BLOCK_PG.text.replace("{candidates}", str(candidates))).bindparams(
        sa.bindparam("now", type_=UTCDateTime()))
    return session.execute(statement, {"now": now, "grace": grace}).rowcount


def _expire_block(session: Session, service_id: int, cutoff: date, grace: int, now: datetime) -> int:
    """The same in three statements, for SQLite (its RETURNING cannot name the other tables of an UPDATE)."""
    rows = session.execute(_candidates(service_id, cutoff)).all()
    if not rows:
        return 0
    session.execute(sa.update(Position).where(Position.id.in_([r.id for r in rows]))
                    .values(status=S.EXPIRED, updated_at=now).execution_options(synchronize_session=False))
    bulk.insert_rows(session, Event.__table__, [
        {"position_id": r.id, "kind": S.EXPIRED.value, "at": now, "actor": ACTOR, "actor_user_id": None,
         "details": {"previous": S(r.status).value, "due_date": r.due_date.isoformat(), "grace_days": grace}}
        for r in rows])
    return len(rows)


# --- Aging ------------------------------------------------------------------------------------------------------

#: Buckets of days past the due date: (key, label, first day, last day or ``None``).
BUCKETS = (("0-30", "0–30 giorni", 1, 30), ("31-60", "31–60 giorni", 31, 60), ("61-90", "61–90 giorni", 61, 90),
           ("90+", "oltre 90 giorni", 91, None))


@dataclass(frozen=True)
class Bucket:
    """Open positions of one service whose due date is ``first``..``last`` days ago."""

    key: str
    label: str
    count: int
    owed_cents: int
    due_from: date | None
    due_to: date


@dataclass(frozen=True)
class ServiceAging:
    service_id: int
    buckets: tuple[Bucket, ...]

    @property
    def count(self) -> int:
        return sum(b.count for b in self.buckets)

    @property
    def owed_cents(self) -> int:
        return sum(b.owed_cents for b in self.buckets)


def bucket_dates(today: date) -> dict[str, tuple[date | None, date]]:
    """The due-date range of each bucket (what the positions list filters on)."""
    return {key: (today - timedelta(days=last) if last else None, today - timedelta(days=first))
            for key, _, first, last in BUCKETS}


def aging(session: Session, creditor_id: int, *, today: date, scope: set[int] | None = None) -> list[ServiceAging]:
    """Per service: count and amount still owed of open positions in each aging bucket (from the dashboard
    totals, so it costs the same for a thousand positions or a million)."""
    t = PositionTotal
    ranges = bucket_dates(today)
    open_ = t.status.in_([s.value for s in OPEN_STATUSES])
    columns = []
    for key, _, _, _ in BUCKETS:
        start, end = ranges[key]
        condition = sa.and_(open_, t.due_date <= end, *([t.due_date >= start] if start else []))
        columns += [sa.func.coalesce(sa.func.sum(t.count).filter(condition), 0),
                    sa.func.coalesce(sa.func.sum(t.amount_cents - t.paid_cents).filter(condition), 0)]
    query = sa.select(t.service_id, *columns).where(t.creditor_id == creditor_id, open_, t.due_date < today)
    if scope is not None:
        query = query.where(t.service_id.in_(scope or {-1}))
    rows = session.execute(query.group_by(t.service_id)).all()
    result = []
    for service_id, *sums in rows:
        buckets = tuple(Bucket(key, label, int(sums[2 * i]), int(sums[2 * i + 1]), *ranges[key])
                        for i, (key, label, _, _) in enumerate(BUCKETS))
        if any(b.count for b in buckets):
            result.append(ServiceAging(service_id, buckets))
    return sorted(result, key=lambda a: a.service_id)


@dataclass(frozen=True)
class Alert:
    """What the officers of a service should act on: expired positions not yet reminded, reminders run out."""

    service_id: int
    expired_count: int
    expired_cents: int
    reminded_count: int


def alerts(session: Session, creditor_id: int, *, scope: set[int] | None = None) -> list[Alert]:
    """One alert per service with expired (not yet reminded) or reminded positions."""
    t = PositionTotal
    expired, reminded = t.status == S.EXPIRED.value, t.status == S.REMINDED.value
    query = (sa.select(t.service_id, sa.func.coalesce(sa.func.sum(t.count).filter(expired), 0),
                       sa.func.coalesce(sa.func.sum(t.amount_cents - t.paid_cents).filter(expired), 0),
                       sa.func.coalesce(sa.func.sum(t.count).filter(reminded), 0))
             .where(t.creditor_id == creditor_id, t.status.in_([S.EXPIRED.value, S.REMINDED.value]))
             .group_by(t.service_id))
    if scope is not None:
        query = query.where(t.service_id.in_(scope or {-1}))
    return [Alert(sid, int(e), int(c), int(r)) for sid, e, c, r in session.execute(query) if e or r]
