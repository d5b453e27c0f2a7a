"""The periodic scheduler's heartbeat: a row the active scheduler refreshes, so readiness can tell it is alive.

RQ keeps no trace of our scheduler (it is a loop of ours, :mod:`portal.jobs.periodic`), and the Redis keys it uses
vanish with a Redis restart. The active scheduler writes its heartbeat in its own short transaction at most every
:data:`BEAT_SECONDS`; ``/readyz`` fails when the last one is older than ``READYZ_SCHEDULER_SECONDS``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from portal.jobs.models import SchedulerHeartbeat
from portal.ledger.types import utcnow

#: The row of the RQ periodic scheduler.
SCHEDULER = "scheduler"
#: Least seconds between two writes of the heartbeat.
BEAT_SECONDS = 15


@dataclass(frozen=True)
class Heartbeat:
    """A recorded heartbeat: who (scheduler token, host, pid) and when."""

    name: str
    holder: str
    host: str
    pid: int
    beat_at: datetime


def beat(engine: Engine, holder: str, *, name: str = SCHEDULER, now: datetime | None = None) -> None:
    """Record that ``holder`` (the active scheduler's token) is alive now (its own transaction)."""
    now = now or utcnow()
    values = {"holder": holder[:64], "host": socket.gethostname()[:255], "pid": os.getpid(), "beat_at": now}
    table = SchedulerHeartbeat.__table__
    with engine.begin() as conn:
        updated = conn.execute(sa.update(table).where(table.c.name == name).values(**values)).rowcount
        if not updated:
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(table).values(name=name, **values))
            except sa.exc.IntegrityError:
                # Another scheduler inserted it meanwhile (a lock hand-over): its row is as good as ours.
                pass


def last_beat(engine: Engine, *, name: str = SCHEDULER) -> Heartbeat | None:
    """The last heartbeat recorded under ``name``, or ``None`` if there was never one."""
    table = SchedulerHeartbeat.__table__
    with engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.name == name)).first()
    if row is None:
        return None
    return Heartbeat(name=row.name, holder=row.holder, host=row.host, pid=row.pid, beat_at=row.beat_at)


def age_seconds(heartbeat: Heartbeat | None, now: datetime | None = None) -> float | None:
    """Seconds since ``heartbeat``, or ``None`` for none."""
    if heartbeat is None:
        return None
    return max(0.0, ((now or utcnow()) - heartbeat.beat_at) / timedelta(seconds=1))
