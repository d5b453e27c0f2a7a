"""Periodic work, declared in one list, and the two things that run it.

- ``flask rq scheduler`` (production): a loop that enqueues each periodic job on RQ when it is due. Any number of
  schedulers may run (one per machine, for failover): a lock in Redis lets only one of them act, and the time of
  each job's last run lives in Redis too, so a fail-over keeps the cadence.
- :class:`InProcessScheduler` (laptop demo without Redis): a daemon thread of the web process doing the same with
  the in-process job backend. Development only.

Each periodic job has a deterministic job id (``periodic-<task>``): a run still queued or running is not doubled.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from portal.jobs.heartbeat import BEAT_SECONDS, beat
from portal.jobs.registry import all_tasks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    """A task to enqueue every ``every`` seconds."""

    task: str
    every: int
    description: str

    @property
    def job_id(self) -> str:
        """The deterministic RQ job id of its runs."""
        return f"periodic-{self.task}"


#: Everything Pay Box does on its own, and how often: the registry's tasks declared with ``every``.
PERIODIC_JOBS: tuple[PeriodicJob, ...] = tuple(
    PeriodicJob(spec.name, spec.every, spec.label) for spec in all_tasks() if spec.every)


def due(last_runs: dict[str, float], now: float, jobs=PERIODIC_JOBS) -> list[PeriodicJob]:
    """The jobs whose last run (epoch seconds, missing = never) is at least their period ago."""
    return [job for job in jobs if job.task not in last_runs or now - last_runs[job.task] >= job.every]


def enqueue_periodic(job: PeriodicJob) -> None:
    """Enqueue one run of a periodic job (its own small transaction writes its JobRecord)."""
    from portal.jobs.queue import enqueue_now

    enqueue_now(job.task, job_id=job.job_id)


class RedisScheduler:
    """``flask rq scheduler``: enqueue due periodic jobs; only the holder of the Redis lock acts.

    :param redis: a Redis connection; ``lock_seconds`` is how long a silent scheduler keeps the lock.
    """

    LOCK_KEY = "paybox:scheduler:lock"
    LAST_RUN_KEY = "paybox:scheduler:last-run"

    def __init__(self, redis, *, jobs=PERIODIC_JOBS, lock_seconds: int = 30, interval: float = 1.0):
        self.redis = redis
        self.jobs = jobs
        self.lock_seconds = lock_seconds
        self.interval = interval
        self.token = uuid.uuid4().hex
        self.stop = threading.Event()
        self.last_beat = 0.0

    def acquire(self) -> bool:
        """Take or extend the lock; whether this scheduler is the active one."""
        if self.redis.set(self.LOCK_KEY, self.token, nx=True, ex=self.lock_seconds):
            log.info("scheduler %s: now the active scheduler", self.token[:8])
            return True
        # Extend only our own lock (atomic compare-and-expire).
        return bool(self.redis.eval(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) "
            "else return 0 end", 1, self.LOCK_KEY, self.token, self.lock_seconds,
        ))

    def release(self) -> None:
        """Give the lock up (on a clean stop), so another scheduler takes over at once."""
        self.redis.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
                        "else return 0 end", 1, self.LOCK_KEY, self.token)

    def tick(self, now: float | None = None) -> list[str]:
        """One round: if active, record the heartbeat (when due) and enqueue what is due; returns the tasks
        enqueued."""
        if not self.acquire():
            return []
        now = time.time() if now is None else now
        self.heartbeat(now)
        raw = self.redis.hgetall(self.LAST_RUN_KEY)
        last_runs = {k.decode(): float(v) for k, v in raw.items()}
        enqueued = []
        for job in due(last_runs, now, self.jobs):
            try:
                enqueue_periodic(job)
            except Exception:  # noqa: BLE001 - one failing job must not stop the others
                log.exception("scheduler: could not enqueue %s", job.task)
                continue
            self.redis.hset(self.LAST_RUN_KEY, job.task, now)
            enqueued.append(job.task)
        return enqueued

    def heartbeat(self, now: float) -> None:
        """Write the heartbeat row every :data:`~portal.jobs.heartbeat.BEAT_SECONDS` (a database hiccup is logged,
        the scheduling goes on: ``/readyz`` will tell)."""
        if now - self.last_beat < BEAT_SECONDS:
            return
        try:
            from portal.extensions import db

            beat(db.engine, self.token, now=datetime.fromtimestamp(now, UTC))
            self.last_beat = now
        except Exception:  # noqa: BLE001
            log.exception("scheduler: could not record the heartbeat")

    def run(self) -> None:
        """Loop until :attr:`stop` is set."""
        log.info("scheduler %s started: %s", self.token[:8], ", ".join(f"{j.task}/{j.every}s" for j in self.jobs))
        try:
            while not self.stop.is_set():
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - Redis or database hiccup: try again next round
                    log.exception("scheduler tick failed")
                self.stop.wait(self.interval)
        finally:
            try:
                self.release()
            except Exception:  # noqa: BLE001
                log.warning("scheduler: could not release the lock")


class InProcessScheduler(threading.Thread):
    """The demo's scheduler: a daemon thread enqueuing due jobs on the in-process backend (development only)."""

    def __init__(self, app, *, jobs=PERIODIC_JOBS, interval: float = 1.0):
        super().__init__(name="paybox-scheduler", daemon=True)
        self.app = app
        self.jobs = jobs
        self.interval = interval
        self.last_runs: dict[str, float] = {}
        self.stop = threading.Event()

    def tick(self, now: float | None = None) -> list[str]:
        """Enqueue what is due; returns the tasks enqueued."""
        now = time.time() if now is None else now
        enqueued = []
        with self.app.app_context():
            for job in due(self.last_runs, now, self.jobs):
                try:
                    enqueue_periodic(job)
                except Exception:  # noqa: BLE001
                    log.exception("scheduler: could not enqueue %s", job.task)
                    continue
                self.last_runs[job.task] = now
                enqueued.append(job.task)
        return enqueued

    def run(self) -> None:  # noqa: D102
        while not self.stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001
                log.exception("in-process scheduler tick failed")
            self.stop.wait(self.interval)
