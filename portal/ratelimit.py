"""Fixed-window request counters kept in the database, so every web node (and the SQLite demo) shares them.

A counter is a row per (key, window): :func:`hit_all` adds one in a transaction of its own, committed at once, so
refused and failed requests count too (the request's own transaction rolls back on errors). Keys name what is
limited and for whom (``notice-lookup:ip:203.0.113.7``); callers hash personal data (a fiscal code) first.
"""

from __future__ import annotations

import hashlib
import time

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db


class RateCounter(db.Model):
    """How many hits ``key`` had in the window starting at ``window_start`` (Unix seconds)."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    window_start: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


def hashed(value: str) -> str:
    """A short digest of personal data used in a key (the fiscal code is never stored in clear here)."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def hit_all(engine: sa.Engine, limits: list[tuple[str, int, int]], *, now: float | None = None) -> bool:
    """Count one hit of each ``(key, limit, window_seconds)``; ``True`` while every count is within its limit.

    One transaction of its own for all the keys, committed at once, before the caller writes anything (on SQLite
    a request that already holds the write lock would wait for itself), and one statement for all of them (an
    upsert of every counter row, in key order so that concurrent requests lock them in the same order). On
    PostgreSQL the commit does not wait for the WAL flush (``synchronous_commit = off``): a crash may forget the
    last few hits, which only lets a client a few more requests, and a request no longer pays a disk flush for
    being counted.
    """
    now = time.time() if now is None else now
    table = RateCounter.__table__
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    ceilings: dict[tuple[str, int], int] = {}
    for key, limit, window_seconds in limits:
        counter = (key[:120], int(now // window_seconds) * window_seconds)
        ceilings[counter] = min(limit, ceilings.get(counter, limit))
    if not ceilings:
        return True
    statement = insert(table).values([{"key": key, "window_start": window, "count": 1}
                                      for key, window in sorted(ceilings)])
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.key, table.c.window_start], set_={"count": table.c.count + 1},
    ).returning(table.c.key, table.c.window_start, table.c.count)
    with engine.begin() as conn:
        if postgres:
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        counts = {(key, window): count for key, window, count in conn.execute(statement)}
    return all(counts[counter] <= limit for counter, limit in ceilings.items())


def purge(engine: sa.Engine, *, older_than_seconds: int = 24 * 3600, now: float | None = None) -> int:
    """Delete the counters of windows that started more than ``older_than_seconds`` ago; returns how many."""
    now = time.time() if now is None else now
    with engine.begin() as conn:
        result = conn.execute(sa.delete(RateCounter).where(RateCounter.window_start < int(now - older_than_seconds)))
    return result.rowcount or 0
