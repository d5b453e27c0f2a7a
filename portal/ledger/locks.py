"""Serialising the writers of one ledger, on PostgreSQL and on the embedded SQLite alike.

PostgreSQL locks the rows a transaction reads with ``SELECT … FOR UPDATE``; SQLite ignores that clause, and two
connections could read the same position, decide on the same stale state and both write (two payment modes paid,
``paid_cents`` half of what the options hold). SQLite has one writer at a time: a transaction that will decide on
what it reads takes the database's write lock *before* reading, with :func:`take_write_lock`, and every other
writer waits for it (the connection's busy timeout) instead of interleaving.
"""

import sqlalchemy as sa
from sqlalchemy.orm import Session

#: A write that changes nothing: on SQLite it starts the transaction as a writer (the RESERVED lock).
_NO_OP_WRITE = sa.text("UPDATE number_counters SET next_value = next_value WHERE 1 = 0")


def take_write_lock(session: Session) -> None:
    """On SQLite, hold the database's write lock from now until this transaction ends; elsewhere nothing.

    Call it before the reads a write depends on (the row locks of ``FOR UPDATE`` then hold on PostgreSQL too).
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(_NO_OP_WRITE)
