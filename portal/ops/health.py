"""Readiness: can this installation do its work right now? One check per thing it depends on.

``/readyz`` (:mod:`portal.ops.views`) runs :func:`readiness` for the load balancer and the monitoring; ``flask
doctor`` (:mod:`portal.ops.doctor`) reuses the same checks. Plain Python: each check takes what it looks at (an
engine, a Redis connection, numbers) and returns a :class:`Check`; none raises.

- ``database``: a ``SELECT 1``;
- ``migrations``: the database's Alembic revision is the head of ``migrations/`` (a deploy that forgot ``flask db
  upgrade``, or code older than the database after a rollback, is not ready);
- ``redis``: a ``PING``, when jobs go to RQ;
- ``scheduler``: the active periodic scheduler's heartbeat is recent (:mod:`portal.jobs.heartbeat`), when jobs go
  to RQ (the laptop demo's scheduler is a thread of the web process itself);
- ``queues``: the jobs waiting in the RQ queues altogether stay under a threshold.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from portal.jobs import heartbeat
from portal.jobs.registry import QUEUES

#: Every check, in the order they are reported.
CHECKS = ("database", "migrations", "redis", "scheduler", "queues")
#: An error text is cut to this many characters (the answer may reach a load balancer's log).
DETAIL_MAX = 300


@dataclass(frozen=True)
class Check:
    """The outcome of one check: ``ok``, a short ``detail`` for people, what it measured, and its time in ms."""

    name: str
    ok: bool
    detail: str
    value: float | int | None = None
    ms: float = 0.0

    def as_dict(self) -> dict:
        data = {"ok": self.ok, "detail": self.detail, "ms": round(self.ms, 1)}
        if self.value is not None:
            data["value"] = self.value
        return data


@dataclass(frozen=True)
class Report:
    """Every check that ran; ready when all passed."""

    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_dict(self) -> dict:
        return {"status": "ready" if self.ok else "not ready",
                "checks": {check.name: check.as_dict() for check in self.checks}}


def _failure(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return " ".join(text.split())[:DETAIL_MAX]


def timed(name: str, probe: Callable[[], Check]) -> Check:
    """Run ``probe``; any exception becomes a failed check named ``name``, and the time is recorded."""
    start = time.perf_counter()
    try:
        check = probe()
    except Exception as exc:  # noqa: BLE001 - a check reports, it never raises
        check = Check(name, False, _failure(exc))
    return Check(check.name, check.ok, check.detail, check.value, (time.perf_counter() - start) * 1000)


def check_database(engine: Engine) -> Check:
    """The database answers a ``SELECT 1``."""
    def probe() -> Check:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return Check("database", True, f"{engine.dialect.name} raggiungibile")
    return timed("database", probe)


@cache
def migration_heads(directory: str) -> frozenset[str]:
    """The head revisions of the Alembic scripts in ``directory`` (read once per process: code does not change
    under a running process)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", directory)
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def database_revisions(engine: Engine) -> frozenset[str]:
    """The revisions recorded in the database's ``alembic_version`` (empty if it was never migrated)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return frozenset()
        return frozenset(conn.scalars(sa.text("SELECT version_num FROM alembic_version")))


def check_migrations(engine: Engine, directory: str | Path) -> Check:
    """The database is at the head of the migrations this code ships."""
    def probe() -> Check:
        heads = migration_heads(str(directory))
        current = database_revisions(engine)
        if current == heads:
            return Check("migrations", True, f"alla revisione {', '.join(sorted(heads))}")
        if not current:
            return Check("migrations", False, "database senza migrazioni: eseguire `flask db upgrade`")
        return Check("migrations", False, f"database alla revisione {', '.join(sorted(current)) or '-'}, "
                                          f"il codice alla {', '.join(sorted(heads))}: eseguire `flask db upgrade` "
                                          "(o il codice è più vecchio del database)")
    return timed("migrations", probe)


def check_redis(redis) -> Check:
    """Redis answers a ``PING``."""
    def probe() -> Check:
        redis.ping()
        return Check("redis", True, "raggiungibile")
    return timed("redis", probe)


def check_scheduler(engine: Engine, max_age_seconds: int, *, now: datetime | None = None) -> Check:
    """The active scheduler's last heartbeat is at most ``max_age_seconds`` old."""
    def probe() -> Check:
        last = heartbeat.last_beat(engine)
        age = heartbeat.age_seconds(last, now)
        if last is None:
            return Check("scheduler", False, "nessuno scheduler attivo finora: avviare `flask rq scheduler`")
        where = f"{last.host} pid {last.pid}"
        if age > max_age_seconds:
            return Check("scheduler", False, f"ultimo segnale {age:.0f} s fa ({where}), oltre {max_age_seconds} s",
                         round(age, 1))
        return Check("scheduler", True, f"attivo {age:.0f} s fa ({where})", round(age, 1))
    return timed("scheduler", probe)


def queue_lengths(redis, queues: Iterable[str] = QUEUES) -> dict[str, int]:
    """Jobs waiting in each RQ queue (one round trip)."""
    from rq import Queue

    names = list(queues)
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.llen(Queue(name, connection=redis).key)
    return dict(zip(names, (int(n) for n in pipe.execute()), strict=True))


def check_queues(lengths: Callable[[], Mapping[str, int]], limit: int) -> Check:
    """At most ``limit`` jobs wait in the queues altogether."""
    def probe() -> Check:
        counts = lengths()
        total = sum(counts.values())
        busiest = ", ".join(f"{name} {count}" for name, count in sorted(counts.items(), key=lambda i: -i[1]) if count)
        detail = f"{total} lavori in coda" + (f" ({busiest})" if busiest else "")
        if total > limit:
            return Check("queues", False, f"{detail}: oltre la soglia di {limit}", total)
        return Check("queues", True, detail, total)
    return timed("queues", probe)


def skipped(name: str, why: str) -> Check:
    """A check that does not apply to this configuration (it passes, saying why)."""
    return Check(name, True, why)


def readiness(engine: Engine, *, migrations_dir: str | Path, redis=None, scheduler_max_age: int = 180,
              max_queued: int = 10000, only: Iterable[str] | None = None, now: datetime | None = None) -> Report:
    """Run the checks (``only`` those named, if given).

    :param redis: the Redis connection of the RQ job queues; ``None`` when jobs run in-process (then Redis, the
        scheduler and the queues are not checked).
    :param scheduler_max_age: seconds; 0 skips the scheduler check. ``max_queued``: 0 skips the queues check.
    """
    wanted = set(only) if only else set(CHECKS)
    no_redis = "nessun Redis: lavori nel processo (sviluppo)"
    probes: dict[str, Callable[[], Check]] = {
        "database": lambda: check_database(engine),
        "migrations": lambda: check_migrations(engine, migrations_dir),
        "redis": lambda: check_redis(redis) if redis is not None else skipped("redis", no_redis),
        "scheduler": lambda: (skipped("scheduler", no_redis) if redis is None
                              else skipped("scheduler", "non controllato (READYZ_SCHEDULER_SECONDS=0)")
                              if not scheduler_max_age else check_scheduler(engine, scheduler_max_age, now=now)),
        "queues": lambda: (skipped("queues", no_redis) if redis is None
                           else skipped("queues", "non controllato (READYZ_MAX_QUEUED=0)") if not max_queued
                           else check_queues(lambda: queue_lengths(redis), max_queued)),
    }
    return Report(tuple(probes[name]() for name in CHECKS if name in wanted))
