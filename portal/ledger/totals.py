"""The dashboard's figures from ``position_totals``, never from the positions table itself.

Database triggers append a delta row for every change of a position (see :class:`~portal.ledger.models.PositionTotal`),
in the same transaction as the change, so the totals are always exact; reading them sums a few thousand rows
whatever the number of positions. :func:`compact` (a periodic job) folds the deltas into one row per key.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.ledger.locks import take_write_lock
from portal.ledger.models import Position, PositionTotal
from portal.ledger.status import OPEN_STATUSES, PositionStatus

KEY = ("creditor_id", "service_id", "status", "due_date")
SUMS = ("count", "amount_cents", "paid_cents")
_T = PositionTotal.__table__
# Our own column names only (no input reaches the text); the bound parameter is the last delta row folded.
_KEYS, _SUMS = ", ".join(KEY), ", ".join(SUMS)
_SUMMED = f"SELECT {_KEYS}, " + ", ".join(f"sum({n})" for n in SUMS)
_NONZERO = " OR ".join(f"sum({n}) <> 0" for n in SUMS)
_COMPACT_POSTGRESQL = sa.text(
    f"WITH moved AS (DELETE FROM position_totals WHERE id <= :last RETURNING {_KEYS}, {_SUMS}) "  # noqa: S608
    f"INSERT INTO position_totals ({_KEYS}, {_SUMS}) {_SUMMED} FROM moved GROUP BY {_KEYS} HAVING {_NONZERO}")
_COMPACT_SQLITE = sa.text(
    f"INSERT INTO position_totals ({_KEYS}, {_SUMS}) {_SUMMED} FROM position_totals "  # noqa: S608
    f"WHERE id <= :last GROUP BY {_KEYS} HAVING {_NONZERO}")


def _scoped(creditor_id: int, scope: set[int] | None) -> list:
    conditions = [PositionTotal.creditor_id == creditor_id]
    if scope is not None:
        conditions.append(PositionTotal.service_id.in_(scope or {-1}))
    return conditions


def by_service_and_status(session: Session, creditor_id: int, *, scope: set[int] | None = None
                          ) -> list[tuple[int, PositionStatus, int, int]]:
    """``(service_id, status, count, amount_cents)`` of every non-empty group."""
    rows = session.execute(
        sa.select(PositionTotal.service_id, PositionTotal.status, sa.func.sum(PositionTotal.count),
                  sa.func.sum(PositionTotal.amount_cents))
        .where(*_scoped(creditor_id, scope))
        .group_by(PositionTotal.service_id, PositionTotal.status)
        .having(sa.func.sum(PositionTotal.count) != 0)
    )
    return [(service_id, PositionStatus(status), int(count), int(amount)) for service_id, status, count, amount in rows]


def overdue(session: Session, creditor_id: int, *, today: date, scope: set[int] | None = None) -> tuple[int, int]:
    """Open positions due before ``today``: how many, and how much is left to pay on them."""
    count, left = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(PositionTotal.count), 0),
                  sa.func.coalesce(sa.func.sum(PositionTotal.amount_cents - PositionTotal.paid_cents), 0))
        .where(*_scoped(creditor_id, scope), PositionTotal.status.in_([s.value for s in OPEN_STATUSES]),
               PositionTotal.due_date < today)
    ).one()
    return int(count), int(left)


def compact(session: Session) -> int:
    """Fold every delta row into one row per key (keys summing to nothing go); returns how many rows fewer.

    One statement on PostgreSQL (its single snapshot never folds a row it does not delete, or the reverse, while
    writers keep appending); on SQLite the write lock keeps writers out between the two statements.
    """
    take_write_lock(session)
    last = session.scalar(sa.select(sa.func.max(PositionTotal.id)))
    if last is None:
        return 0
    before = session.scalar(sa.select(sa.func.count()).select_from(_T).where(_T.c.id <= last))
    if session.get_bind().dialect.name == "postgresql":
        inserted = session.execute(_COMPACT_POSTGRESQL, {"last": last}).rowcount
    else:
        inserted = session.execute(_COMPACT_SQLITE, {"last": last}).rowcount
        session.execute(sa.delete(_T).where(_T.c.id <= last))
    return max(before - inserted, 0)


def rebuild(session: Session) -> None:
    """Sum every position again (after a bulk load done with triggers off, or to check the triggers)."""
    take_write_lock(session)
    session.execute(sa.delete(_T))
    keys = [getattr(Position, name) for name in KEY]
    session.execute(sa.insert(_T).from_select(
        [*KEY, *SUMS],
        sa.select(*keys, sa.func.count(), sa.func.sum(Position.amount_cents), sa.func.sum(Position.paid_cents))
        .group_by(*keys)))


def matches_positions(session: Session) -> bool:
    """Whether the totals equal a GROUP BY over the positions (a check for tests and operators)."""
    keys = [getattr(Position, name) for name in KEY]
    actual = {tuple(r[:4]): tuple(int(v) for v in r[4:]) for r in session.execute(
        sa.select(*keys, sa.func.count(), sa.func.sum(Position.amount_cents), sa.func.sum(Position.paid_cents))
        .group_by(*keys))}
    tkeys = [getattr(PositionTotal, name) for name in KEY]
    kept = {tuple(r[:4]): tuple(int(v) for v in r[4:]) for r in session.execute(
        sa.select(*tkeys, *(sa.func.sum(getattr(PositionTotal, n)) for n in SUMS)).group_by(*tkeys)
        .having(sa.or_(*(sa.func.sum(getattr(PositionTotal, n)) != 0 for n in SUMS))))}
    normalise = {(c, s, getattr(st, "value", st), d): v for (c, s, st, d), v in actual.items()}
    return normalise == kept
