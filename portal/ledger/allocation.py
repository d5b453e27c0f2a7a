"""Allocation of IUV sequence values: concurrency-safe, in blocks, and never reused.

On PostgreSQL the counter row is moved forward in its own short transaction (a separate connection),
committed at once: concurrent allocators queue on the row lock for microseconds only, and a number handed
out is burnt even if the caller's transaction later rolls back, so it can never be given out twice. That commit
does not wait for its WAL flush (``synchronous_commit = off``): a number only leaves Pay Box after the caller's
own commit, which flushes the WAL up to itself and so the counter's earlier record with it; a crash before that
forgets numbers nobody has seen. A position created in a request thus pays one disk flush, not two.

SQLite has a single writer per database, so a second connection would wait for the caller's own write
lock; there the counter moves inside the caller's transaction. A rollback there also un-allocates the
numbers, which is safe because nothing leaves Pay Box before the commit (publication runs after it).
"""

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.ledger import notice_numbers
from portal.ledger.models import Creditor, NumberCounter

_COUNTERS = NumberCounter.__table__
_BUMP = (
    sa.update(_COUNTERS)
    .where(_COUNTERS.c.creditor_id == sa.bindparam("cid"))
    .values(next_value=_COUNTERS.c.next_value + sa.bindparam("count"))
    .returning(_COUNTERS.c.next_value)
)


def start_counter(session: Session, creditor: Creditor) -> None:
    """Create a new creditor's counter row: its notice numbers start at 1."""
    session.add(NumberCounter(creditor_id=creditor.id, next_value=1))
    session.flush()


def allocate_bases(session: Session, creditor_id: int, count: int = 1) -> range:
    """Reserve ``count`` consecutive IUV base values for a creditor and return them."""
    if count < 1:
        raise ValueError("count must be positive")
    engine = session.get_bind()
    after = None
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            after = _bump(conn, creditor_id, count)
    if after is None:
        # SQLite, or a creditor created in the caller's still-open transaction (its counter row is not visible
        # to other connections): a rollback then removes the creditor too, so no number can escape.
        after = _bump(session.connection(), creditor_id, count)
    if after is None:
        raise LookupError(f"no number counter for creditor {creditor_id}")
    first = after - count
    if after - 1 > notice_numbers.MAX_BASE:
        raise notice_numbers.NoticeNumberError("Sequenza IUV esaurita per questo ente.")
    return range(first, after)


def allocate(session: Session, creditor: Creditor, count: int = 1) -> list[notice_numbers.NoticeNumber]:
    """Reserve ``count`` new IUV/NAV pairs for ``creditor`` (block allocation for bulk work)."""
    return notice_numbers.build_many(creditor.segregation_code, allocate_bases(session, creditor.id, count))


def _bump(conn, creditor_id: int, count: int) -> int | None:
    return conn.execute(_BUMP, {"cid": creditor_id, "count": count}).scalar()
