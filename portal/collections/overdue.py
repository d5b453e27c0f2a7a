"""What is overdue: the daily scan that marks unpaid positions expired, the dashboard's aging buckets, the
officers' alert and daily digest.

The scan is set-based (one UPDATE and one multi-row INSERT of events per block), so a million positions cost one
index range per service, not one ORM round-trip each; the status change goes through the transition table
(only ``published`` and ``partially_paid`` may become ``expired``) and every position gets its ``expired`` event.
A position stays payable on pagoPA: GPD keeps it valid after the due date, so a late payment still arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.collections.models import CollectionPolicy
from portal.ledger.locks import take_write_lock
from portal.ledger.models import Event, Position, PositionTotal, Service
from portal.ledger.status import OPEN_STATUSES, TRANSITIONS, PositionStatus
from portal.ledger.types import utcnow

S = PositionStatus
#: Statuses the scan moves to ``expired`` (the transition table allows exactly these among the open ones).
EXPIRABLE = tuple(s for s in (S.PUBLISHED, S.PARTIALLY_PAID) if S.EXPIRED in TRANSITIONS[s])
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
    for service_id, grace in session.execute(services).all():
        cutoff = today - timedelta(days=int(grace))
        while True:
            rows = session.execute(
                sa.select(Position.id, Position.status, Position.due_date)
                .where(Position.service_id == service_id, Position.status.in_(EXPIRABLE), Position.due_date < cutoff)
                .order_by(Position.id).limit(BLOCK).with_for_update(skip_locked=True)
            ).all()
            if not rows:
                break
            ids = [r.id for r in rows]
            session.execute(sa.update(Position).where(Position.id.in_(ids))
                            .values(status=S.EXPIRED, updated_at=now).execution_options(synchronize_session=False))
            session.execute(sa.insert(Event), [
                {"position_id": r.id, "kind": S.EXPIRED.value, "at": now, "actor": ACTOR, "actor_user_id": None,
                 "details": {"previous": S(r.status).value, "due_date": r.due_date.isoformat(),
                             "grace_days": int(grace)}}
                for r in rows])
            result.by_service[service_id] = result.by_service.get(service_id, 0) + len(rows)
            if len(rows) < BLOCK:
                break
    session.expire_all()
    return result


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
