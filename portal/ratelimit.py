"""Fixed-window request counters kept in the database, so every web node (and the SQLite demo) shares them.

A counter is a row per (key, window): :func:`hit` adds one in a transaction of its own, committed at once, so
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


def hit(engine: sa.Engine, key: str, *, limit: int, window_seconds: int, now: float | None = None) -> bool:
    """Count one hit of ``key``; ``True`` while the window's count is within ``limit``.

    Runs and commits on its own connection, before the caller writes anything (on SQLite a request that already
    holds the write lock would wait for itself).
    """
    now = time.time() if now is None else now
    window = int(now // window_seconds) * window_seconds
    table = RateCounter.__table__
    key = key[:120]
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).values(key=key, window_start=window, count=1)
    statement = statement.on_conflict_do_update(index_elements=[table.c.key, table.c.window_start],
                                                set_={"count": table.c.count + 1}).returning(table.c.count)
    with engine.begin() as conn:
        count = conn.execute(statement).scalar_one()
    return count <= limit


def purge(engine: sa.Engine, *, older_than_seconds: int = 24 * 3600, now: float | None = None) -> int:
    """Delete the counters of windows that started more than ``older_than_seconds`` ago; returns how many."""
    now = time.time() if now is None else now
    with engine.begin() as conn:
        result = conn.execute(sa.delete(RateCounter).where(RateCounter.window_start < int(now - older_than_seconds)))
    return result.rowcount or 0
