"""Gauges read at scrape time: what waits (positions for pagoPA, jobs in the queues) and how old the scheduler's
heartbeat is. They describe shared state (the database, Redis), so any web node reports the same values.

Plain Python: :class:`StateCollector` takes an engine and (when jobs go to RQ) a Redis connection. A part that
cannot be read (database or Redis down) is reported by ``paybox_state_up{part=...} 0`` instead of failing the
whole scrape: the counters of the processes stay visible.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from portal.jobs import heartbeat
from portal.jobs.models import JobRecord
from portal.jobs.registry import QUEUES
from portal.ledger.sync_state import sync_summary
from portal.ledger.types import utcnow

log = logging.getLogger(__name__)


class StateCollector:
    """A Prometheus collector of the installation's backlog (register it on a per-scrape registry)."""

    def __init__(self, engine: Engine, redis=None):
        self.engine = engine
        self.redis = redis

    def collect(self):
        up = GaugeMetricFamily("paybox_state_up", "Whether a part of the shared state could be read for this "
                               "scrape (1) or not (0).", labels=["part"])
        for part, read in (("database", self._database), ("queues", self._queues)):
            try:
                families = list(read())
            except Exception:  # noqa: BLE001 - a scrape reports what it can
                log.warning("metrics: could not read %s", part, exc_info=True)
                up.add_metric([part], 0)
                continue
            up.add_metric([part], 1)
            yield from families
        yield up

    def _database(self):
        now = utcnow()
        with Session(self.engine) as session:
            summary = sync_summary(session, now=now)
        sync = GaugeMetricFamily("paybox_sync_positions", "Positions waiting for pagoPA: pending (not yet "
                                 "converged), due (to be tried now), failing (last attempt failed).",
                                 labels=["state"])
        for state in ("pending", "due", "failing"):
            sync.add_metric([state], getattr(summary, state))
        yield sync
        oldest = GaugeMetricFamily("paybox_sync_oldest_failure_age_seconds",
                                   "Age of the oldest unresolved pagoPA sync failure (0: none).")
        oldest.add_metric([], (now - summary.oldest_failure_at).total_seconds() if summary.oldest_failure_at else 0)
        yield oldest
        beat = heartbeat.age_seconds(heartbeat.last_beat(self.engine), now)
        if beat is not None:
            age = GaugeMetricFamily("paybox_scheduler_heartbeat_age_seconds",
                                    "Seconds since the active periodic scheduler last showed it was alive.")
            age.add_metric([], beat)
            yield age

    def _queues(self):
        jobs = GaugeMetricFamily("paybox_queue_jobs", "Background jobs by queue and state (queued, started, failed "
                                 "in RQ; from the job records when jobs run in-process).", labels=["queue", "state"])
        rows = self._records() if self.redis is None else self._rq()
        for queue, state, count in rows:
            jobs.add_metric([queue, state], count)
        yield jobs

    def _rq(self):
        from rq import Queue
        from rq.registry import FailedJobRegistry, StartedJobRegistry

        pipe = self.redis.pipeline(transaction=False)
        for name in QUEUES:
            queue = Queue(name, connection=self.redis)
            pipe.llen(queue.key)
            pipe.zcard(StartedJobRegistry(queue=queue).key)
            pipe.zcard(FailedJobRegistry(queue=queue).key)
        counts = iter(pipe.execute())
        for name in QUEUES:
            for state in ("queued", "started", "failed"):
                yield name, state, int(next(counts))

    def _records(self):
        with self.engine.connect() as conn:
            found = {(queue, status): count for queue, status, count in conn.execute(
                sa.select(JobRecord.queue, JobRecord.status, sa.func.count())
                .where(JobRecord.status.in_(("queued", "running")))
                .group_by(JobRecord.queue, JobRecord.status))}
        for name in QUEUES:
            yield name, "queued", found.get((name, "queued"), 0)
            yield name, "started", found.get((name, "running"), 0)
