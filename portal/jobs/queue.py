"""Turn the outbox's requests into jobs after the commit, and run them on RQ (Redis) or inside this process.

A service asks for work with :func:`portal.outbox.schedule`; the request waits in ``session.info``, a
:class:`~portal.jobs.models.JobRecord` row is written *in the same transaction* just before it commits (the
durable part: the sweep and the job page see it), and the job reaches the queue only once the commit succeeded (a
rollback discards it). So a worker never looks for a row that was rolled back, and an admin sees every job from the
moment it exists.

Where the job runs depends on the backend attached to the app (``app.extensions["paybox_jobs"]``):

- ``rq``: production. ``REDIS_URL`` is set; ``flask rq worker`` runs the jobs.
- ``thread``: the laptop demo (no Redis). A small thread pool in the same process runs them after the commit.
- ``manual``: tests. Jobs are kept in a list until the test calls :meth:`ManualBackend.run_pending`.

The choice is ``JOBS_MODE`` when set, otherwise ``rq`` with a Redis URL, ``manual`` when testing, else ``thread``.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

from portal import metrics, outbox
from portal.jobs.lingering import LocalBell, Presence, RedisBell
from portal.jobs.models import JobRecord
from portal.jobs.registry import QUEUES, TaskSpec, get_spec
from portal.ledger.types import utcnow

log = logging.getLogger(__name__)

__all__ = ["QUEUES", "enqueue_after_commit", "enqueue_now", "get_backend", "presence", "run_task"]
#: Where the backend lives in ``app.extensions``.
EXTENSION_KEY = "paybox_jobs"
#: The JobRecord of the job running in this thread/process (for progress reports and log lines).
_current_record: contextvars.ContextVar[int | None] = contextvars.ContextVar("paybox_job_record", default=None)
_current_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("paybox_job_id", default=None)
#: The lingering job running here: its bell (its deterministic job id) and its task, see :func:`presence`.
_current_bell: contextvars.ContextVar[tuple[str, TaskSpec] | None] = contextvars.ContextVar("paybox_job_bell",
                                                                                           default=None)
#: Set by the in-process backends: whether a failure of this run will be retried.
_will_retry_inprocess: contextvars.ContextVar[bool] = contextvars.ContextVar("paybox_job_retry", default=False)


# --- Running one job ---------------------------------------------------------------------------------------------

#: The app ``flask rq worker`` hands over (:func:`use_worker_app`): its forked work horses run jobs in it.
_worker_app = None


def use_worker_app(app) -> None:
    """Make ``app`` the one jobs run in when no app context is active (the RQ worker process and its horses)."""
    global _worker_app
    _worker_app = app


def _app():
    """The app to run jobs in: the current one, or the one the worker command handed over.

    :raise RuntimeError: outside any app (a bare ``rq worker``): jobs need ``flask rq worker``.
    """
    from flask import current_app, has_app_context

    if has_app_context():
        return current_app._get_current_object()
    if _worker_app is None:
        raise RuntimeError("Pay Box jobs run in `flask --app wsgi rq worker`, which hands them its app")
    return _worker_app


def run_task(spec: TaskSpec, ids: Sequence, *, record_id: int | None = None, job_id: str | None = None,
             bell: str | None = None):
    """Run one job in a fresh app context (so a fresh session): call, commit, record the outcome; ``bell``: the
    lingering job's deterministic id (:func:`presence`).

    :raise Exception: whatever the job raised, after the rollback (RQ then retries or fails the job).
    """
    from portal.extensions import db

    app = _app()
    job_id = _rq_job_id() or job_id or (f"{spec.name}-{record_id}" if record_id else None)
    with app.app_context():
        tokens = (_current_record.set(record_id), _current_job_id.set(job_id),
                  _current_bell.set((bell, spec) if bell else None))
        _update_record(record_id, status="running", attempts=JobRecord.attempts + 1, started_at=utcnow(),
                       finished_at=None)
        log.info("job %s %s%s started", job_id or "-", spec.name, tuple(ids))
        started = time.perf_counter()
        try:
            with outbox.reporting_to(_record_progress):
                result = spec.func(db.session, *ids)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            metrics.JOB_SECONDS.labels(spec.name, spec.queue, "failed").observe(time.perf_counter() - started)
            retrying = _will_retry()
            message = f"{type(exc).__name__}: {exc}"[:2000]
            if retrying:
                message = f"Tentativo non riuscito, verrà ripetuto. {message}"
            _update_record(record_id, status="queued" if retrying else "failed", message=message,
                           finished_at=None if retrying else utcnow())
            log.exception("job %s %s%s failed%s", job_id or "-", spec.name, tuple(ids),
                          " (will retry)" if retrying else "")
            raise
        else:
            metrics.JOB_SECONDS.labels(spec.name, spec.queue, "done").observe(time.perf_counter() - started)
            summary = _summary(result)
            _update_record(record_id, status="done", message=summary, finished_at=utcnow(),
                           idle=bool(getattr(result, "idle", False)))
            log.info("job %s %s%s done: %s", job_id or "-", spec.name, tuple(ids), summary)
            return summary
        finally:
            _last_progress.pop(record_id, None)
            db.session.remove()
            for var, token in zip((_current_record, _current_job_id, _current_bell), tokens, strict=True):
                var.reset(token)
            if _in_forked_horse():
                # The horse exits after this job: close its connections cleanly instead of dropping the sockets.
                for engine in db.engines.values():
                    engine.dispose()


def _rq_job_id() -> str | None:
    try:
        from rq import get_current_job

        job = get_current_job()
    except Exception:  # noqa: BLE001 - no RQ context at all
        job = None
    return job.id if job is not None else None


def _in_forked_horse() -> bool:
    return bool(os.environ.get("RQ_JOB_ID")) and _rq_job_id() is not None


def _will_retry() -> bool:
    """Whether RQ (or the in-process backend) will run this job again after the current failure."""
    if _will_retry_inprocess.get():
        return True
    try:
        from rq import get_current_job

        job = get_current_job()
    except Exception:  # noqa: BLE001
        return False
    return bool(job is not None and job.retries_left)


def _summary(result) -> str | None:
    if result is None:
        return None
    text = str(result)
    return text[:2000]


def _record_run(request: outbox.Request) -> int | None:
    """The job row of a lingering job's run being enqueued now (after the commit: its own short transaction)."""
    from portal.extensions import db

    try:
        with db.engine.begin() as conn:
            return conn.execute(sa.insert(JobRecord).values(
                kind=request.task, queue=get_spec(request.task).queue, rq_id=request.job_id, status="queued",
                args={"ids": list(request.ids)}, total=request.total, created_by_id=request.created_by_id,
                creditor_id=request.creditor_id, attempts=0, progress=0, created_at=utcnow(),
            ).returning(JobRecord.id)).scalar_one()
    except sa.exc.SQLAlchemyError:
        log.exception("could not record a run of %s", request.job_id)
        return None


def _update_record(record_id: int | None, **values) -> None:
    """Write the job's state in its own short transaction, so it is visible at once whatever the job does."""
    if record_id is None:
        return
    from portal.extensions import db

    try:
        with db.engine.begin() as conn:
            conn.execute(sa.update(JobRecord).where(JobRecord.id == record_id).values(**values))
    except sa.exc.SQLAlchemyError:
        log.exception("could not update job record %s", record_id)


#: Least seconds between two progress writes of one job (each is a small transaction of its own).
PROGRESS_INTERVAL = 0.5
_last_progress: dict[int, float] = {}


def _record_progress(done: int, total: int | None = None) -> None:
    """Record the running job's progress (the jobs page polls it), at most every :data:`PROGRESS_INTERVAL`
    seconds, and always the start and the end."""
    record_id = _current_record.get()
    if record_id is None:
        return
    now = time.monotonic()
    edge = done == 0 or (total is not None and done >= total)
    if not edge and now - _last_progress.get(record_id, 0.0) < PROGRESS_INTERVAL:
        return
    _last_progress[record_id] = now
    values: dict[str, Any] = {"progress": done}
    if total is not None:
        values["total"] = total
    _update_record(record_id, **values)


def presence() -> Presence:
    """The running lingering job inside its bell (entered now): ``may_stop()`` before it ends for lack of work,
    ``close()`` at its end. Outside such a job (tests calling the work directly, the manual backend) a presence
    without a bell, which may always stop."""
    current = _current_bell.get()
    backend = get_backend(_app()) if current else None
    bell = backend.bell(*current) if backend is not None and hasattr(backend, "bell") else None
    return Presence(bell)


def current_job_id() -> str | None:
    """The RQ id of the job running here, for log lines (``None`` outside a job)."""
    return _current_job_id.get()


class CurrentJobFilter(logging.Filter):
    """Adds the running job's id to every log record as ``job_id`` and in front of the message."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003
        job_id = _current_job_id.get()
        record.job_id = job_id or "-"
        if job_id and not getattr(record, "_paybox_job_prefixed", False):
            record.msg = f"[{job_id}] {record.msg}"
            record._paybox_job_prefixed = True
        return True


# --- Enqueue after commit ----------------------------------------------------------------------------------------


def enqueue_after_commit(task_name: str, *ids, session: Session | scoped_session | None = None,
                         **options) -> outbox.Request:
    """:func:`portal.outbox.schedule` for callers above the domain, checking the task name at once.

    :raise KeyError: when ``task_name`` is not a declared task.
    """
    get_spec(task_name)
    return outbox.schedule(_real_session(session), task_name, *ids, **options)


def enqueue_now(task_name: str, *ids, **options) -> outbox.Request:
    """Enqueue a job outside any business transaction (scheduler, CLI): its own short transaction."""
    from portal.extensions import db

    session = Session(bind=db.engine)
    try:
        request = enqueue_after_commit(task_name, *ids, session=session, **options)
        session.commit()
        return request
    finally:
        session.close()


def _real_session(session) -> Session:
    if session is None:
        from portal.extensions import db

        session = db.session
    if isinstance(session, scoped_session):
        session = session()
    return session


@event.listens_for(Session, "before_commit")
def _write_job_records(session: Session) -> None:
    """Create (or reuse) each requested job's JobRecord inside the committing transaction."""
    if session.in_nested_transaction():
        return
    # A lingering job's request gets its row only if a run is enqueued for it (:func:`_record_run`): most find a
    # run that will look, and the durable request is the work's own row (a webhook delivery), swept periodically.
    pending = [p for p in outbox.pending(session) if not (p.job_id and get_spec(p.task).lingers)]
    if not pending:
        return
    # A deterministic id that already has a live record (queued or running) reuses it: one row per real run.
    keyed = {p.job_id: p for p in pending if p.job_id}
    existing: dict[str, int] = {}
    if keyed:
        ids = list(keyed)
        for start in range(0, len(ids), 1000):
            rows = session.execute(
                sa.select(JobRecord.rq_id, sa.func.max(JobRecord.id))
                .where(JobRecord.rq_id.in_(ids[start:start + 1000]), JobRecord.status.in_(("queued", "running")))
                .group_by(JobRecord.rq_id)
            )
            existing.update({rq_id: record_id for rq_id, record_id in rows})
    records: list[tuple[outbox.Request, JobRecord]] = []
    for request in pending:
        if request.job_id in existing:
            request.record_id = existing[request.job_id]
            continue
        record = JobRecord(kind=request.task, queue=get_spec(request.task).queue, rq_id=request.job_id, status="queued",
                           args={"ids": list(request.ids)}, total=request.total, created_by_id=request.created_by_id,
                           creditor_id=request.creditor_id, attempts=0, progress=0)
        session.add(record)
        records.append((request, record))
    if records:
        session.flush([record for _, record in records])
        for request, record in records:
            request.record_id = record.id


@event.listens_for(Session, "after_commit")
def _release_jobs(session: Session) -> None:
    """The transaction is durable: hand its jobs to the backend (never raise: the commit already happened)."""
    if session.in_nested_transaction():
        return
    pending = outbox.take(session)
    if not pending:
        return
    backend = current_backend(session)
    if backend is None:
        log.warning("no job backend (no app context): %d job(s) not enqueued; the periodic sweep recovers sync work",
                    len(pending))
        return
    try:
        backend.dispatch(pending)
    except Exception:  # noqa: BLE001 - the data is committed; jobs are recovered by the sweep or retried by hand
        log.exception("could not enqueue %d job(s)", len(pending))


@event.listens_for(Session, "after_transaction_end")
def _discard_jobs(session: Session, transaction) -> None:
    """A transaction that ended without committing (rollback, close) takes its job requests with it."""
    if transaction.parent is None and not transaction.nested:
        outbox.take(session)


# --- Backends ----------------------------------------------------------------------------------------------------


def current_backend(session: Session | None = None):
    """The backend of the session (tests may pin one in ``session.info``) or of the current app."""
    if session is not None and "paybox.jobs.backend" in session.info:
        return session.info["paybox.jobs.backend"]
    from flask import current_app, has_app_context

    if not has_app_context():
        return None
    return get_backend(current_app._get_current_object())


_backend_lock = threading.Lock()


def get_backend(app):
    """The app's job backend, created on first use from its configuration."""
    backend = app.extensions.get(EXTENSION_KEY)
    if backend is None:
        with _backend_lock:
            backend = app.extensions.get(EXTENSION_KEY)
            if backend is None:
                backend = make_backend(app)
                app.extensions[EXTENSION_KEY] = backend
    return backend


def jobs_mode(config) -> str:
    """``rq``, ``thread`` or ``manual`` for this configuration (see the module docstring)."""
    mode = config.get("JOBS_MODE")
    if mode:
        if mode not in ("rq", "thread", "manual"):
            raise ValueError(f"JOBS_MODE must be rq, thread or manual, got {mode!r}")
        return mode
    if config.get("REDIS_URL"):
        return "rq"
    if config.get("TESTING") or config.get("PAYBOX_ENV") == "testing":
        return "manual"
    return "thread"


def make_backend(app):
    """Build the backend for ``app``'s configuration."""
    mode = jobs_mode(app.config)
    if mode == "rq":
        return RQBackend(app.config["REDIS_URL"], app=app)
    if mode == "manual":
        return ManualBackend(app)
    return ThreadBackend(app, workers=int(app.config.get("JOBS_THREADS") or 4))


class RQBackend:
    """Jobs go to RQ queues on Redis; ``flask rq worker`` runs them."""

    mode = "rq"

    def __init__(self, redis_url: str, app=None):
        from redis import Redis

        self.redis_url = redis_url
        self.redis = Redis.from_url(redis_url)
        self.app = app

    def bell(self, name: str, spec: TaskSpec) -> RedisBell:
        """The bell of the lingering job ``name`` of task ``spec`` (see :mod:`portal.jobs.lingering`)."""
        return RedisBell(self.redis, name, queued_seconds=spec.ttl or spec.timeout)

    def queue(self, name: str):
        """The RQ queue called ``name``."""
        from rq import Queue

        return Queue(name, connection=self.redis)

    def dispatch(self, requests: Sequence[outbox.Request]) -> int:
        """Enqueue the requests in one Redis round trip per queue; returns how many were enqueued."""
        from redis.exceptions import RedisError

        try:
            return self._enqueue(requests)
        except RedisError as exc:
            log.error("Redis unavailable, %d job(s) not enqueued: %s", len(requests), exc)
            for request in requests:
                _update_record(request.record_id, status="failed", finished_at=utcnow(),
                               message=f"Coda non raggiungibile (Redis): {exc}")
            raise

    def _enqueue(self, requests: Sequence[outbox.Request]) -> int:
        from rq import Callback, Queue
        from rq.exceptions import InvalidJobOperation
        from rq.job import Job, JobStatus

        keyed = [r.job_id for r in requests if r.job_id and not get_spec(r.task).lingers]
        existing = dict(zip(keyed, Job.fetch_many(keyed, connection=self.redis), strict=True)) if keyed else {}
        live = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
        by_queue: dict[str, list] = {}
        for request in requests:
            spec = get_spec(request.task)
            job_id, kwargs = request.job_id, {"_record_id": request.record_id}
            if spec.lingers and request.job_id:
                job_id = self.bell(request.job_id, spec).ring()
                if job_id is None:
                    log.debug("lingering job %s rung: a run inside or queued will look", request.job_id)
                    continue
                kwargs.update(_bell=request.job_id, _record_id=_record_run(request))
            job = existing.get(request.job_id)
            if job is not None:
                try:
                    status = job.get_status(refresh=False)
                except InvalidJobOperation:
                    # A remnant without a status: a horse wrote a field of a job another process had just deleted.
                    status = None
                if status in live or (status == JobStatus.STARTED and not request.replace_started):
                    log.debug("job %s already %s: not enqueued again", request.job_id, status)
                    continue
                # Finished, failed, stopped, or a "started" job whose worker died: start over under the same id.
                job.delete(remove_from_queue=True)
            by_queue.setdefault(spec.queue, []).append(Queue.prepare_data(
                spec.path, args=request.ids, kwargs=kwargs, timeout=spec.timeout,
                ttl=spec.ttl, failure_ttl=spec.failure_ttl, result_ttl=spec.result_ttl, job_id=job_id,
                retry=spec.retry(), description=f"{spec.name}{tuple(request.ids)}",
                on_failure=Callback(f"{__name__}.record_abandoned"),
            ))
        count = 0
        for name, datas in by_queue.items():
            self.queue(name).enqueue_many(datas)
            count += len(datas)
        return count

    def close(self) -> None:
        """Release the Redis connection pool."""
        self.redis.close()


def record_abandoned(job, connection, exc_type=None, exc_value=None, tb=None) -> None:
    """RQ failure callback: a job whose worker died (``AbandonedJobError``) gets its JobRecord closed.

    Failures raised inside a job are recorded by :func:`run_task` itself; this only covers the run that never
    reached its end (machine lost, worker killed), which RQ notices later while cleaning its registries.
    """
    from rq.exceptions import AbandonedJobError

    if exc_type is None or not issubclass(exc_type, AbandonedJobError):
        return
    record_id = (job.kwargs or {}).get("_record_id")
    retrying = bool(job.retries_left)
    message = "Attività interrotta: il worker si è fermato durante l'esecuzione."
    try:
        with _app().app_context():
            _update_record(record_id, status="queued" if retrying else "failed",
                           message=message + (" Verrà ripetuta." if retrying else ""),
                           finished_at=None if retrying else utcnow())
    except Exception:  # noqa: BLE001 - never break RQ's own cleanup
        log.exception("could not record abandoned job %s", job.id)


class ThreadBackend:
    """The laptop demo without Redis: jobs run after the commit in small pools of threads of this process."""

    mode = "thread"

    def __init__(self, app, workers: int = 4):
        self.app = app
        self.workers = workers
        #: One pool per queue, as RQ workers listen per queue: a bill run does not wait behind a thousand syncs.
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._active: set[str] = set()
        self._bells: dict[str, LocalBell] = {}
        self._lock = threading.Lock()

    def bell(self, name: str, spec: TaskSpec | None = None) -> LocalBell:
        """The bell of the lingering job ``name`` in this process."""
        with self._lock:
            return self._bells.setdefault(name, LocalBell(name))

    def _executor(self, queue: str) -> ThreadPoolExecutor:
        with self._lock:
            if queue not in self._executors:
                self._executors[queue] = ThreadPoolExecutor(max_workers=self.workers,
                                                            thread_name_prefix=f"paybox-{queue}")
            return self._executors[queue]

    def dispatch(self, requests: Sequence[outbox.Request]) -> int:
        """Submit each request unless a job with the same id is already waiting or running."""
        count = 0
        for request in requests:
            if get_spec(request.task).lingers and request.job_id:
                if self.bell(request.job_id, None).ring() is None:
                    continue
                request.record_id = _record_run(request)
            elif request.job_id:
                with self._lock:
                    if request.job_id in self._active:
                        continue
                    self._active.add(request.job_id)
            self._executor(get_spec(request.task).queue).submit(self._run, request, 1)
            count += 1
        return count

    def _run(self, request: outbox.Request, attempt: int) -> None:
        spec = get_spec(request.task)
        retry = attempt <= spec.retry_max
        token = _will_retry_inprocess.set(retry)
        try:
            with self.app.app_context():
                run_task(spec, request.ids, record_id=request.record_id, job_id=request.job_id,
                         bell=request.job_id if spec.lingers else None)
        except Exception:  # noqa: BLE001 - already logged and recorded by run_task
            if retry:
                intervals = spec.retry_intervals or (0,)
                delay = intervals[min(attempt - 1, len(intervals) - 1)]
                timer = threading.Timer(
                    delay, lambda: self._executor(spec.queue).submit(self._run, request, attempt + 1))
                timer.daemon = True
                timer.start()
                return
        finally:
            _will_retry_inprocess.reset(token)
            if spec.lingers and request.job_id:
                self.bell(request.job_id).forget_queued()  # a run that failed before entering must not block
        self._finished(request)

    def _finished(self, request: outbox.Request) -> None:
        if request.job_id:
            with self._lock:
                self._active.discard(request.job_id)

    def close(self) -> None:
        """Wait for the running jobs and stop the pools."""
        for executor in list(self._executors.values()):
            executor.shutdown(wait=True)


@dataclass
class ManualBackend:
    """Tests: jobs wait in :attr:`pending` until :meth:`run_pending` runs them here, one after the other."""

    app: Any
    pending: list[outbox.Request] = field(default_factory=list)
    mode: str = "manual"

    def dispatch(self, requests: Sequence[outbox.Request]) -> int:
        """Keep the requests (deduplicated on their job id)."""
        waiting = {p.job_id for p in self.pending if p.job_id}
        count = 0
        for request in requests:
            if request.job_id and request.job_id in waiting:
                continue
            if get_spec(request.task).lingers:
                request.record_id = _record_run(request)
            self.pending.append(request)
            waiting.add(request.job_id)
            count += 1
        return count

    def run_pending(self, *, raise_errors: bool = True, limit: int = 10_000) -> int:
        """Run the waiting jobs (and those they enqueue) in this thread; returns how many ran."""
        ran = 0
        while self.pending and ran < limit:
            request = self.pending.pop(0)
            with self.app.app_context():
                try:
                    run_task(get_spec(request.task), request.ids, record_id=request.record_id, job_id=request.job_id)
                except Exception:
                    if raise_errors:
                        raise
            ran += 1
        return ran

    def clear(self) -> None:
        """Forget the waiting jobs."""
        self.pending.clear()

    def close(self) -> None:
        """Nothing to release."""


def purge_records(session: Session, *, done_days: int = 7, failed_days: int = 30, periodic_kinds: Sequence[str] = (),
                  periodic_hours: int = 24) -> int:
    """Delete old finished job rows (periodic jobs' ``done`` rows sooner); returns how many went."""
    now = utcnow()
    conditions = [
        sa.and_(JobRecord.status.in_(("done", "cancelled")), JobRecord.finished_at < now - timedelta(days=done_days)),
        sa.and_(JobRecord.status == "failed", JobRecord.finished_at < now - timedelta(days=failed_days)),
    ]
    if periodic_kinds:
        conditions.append(sa.and_(JobRecord.status == "done", JobRecord.kind.in_(list(periodic_kinds)),
                                  JobRecord.finished_at < now - timedelta(hours=periodic_hours)))
    result = session.execute(sa.delete(JobRecord).where(sa.or_(*conditions)))
    return result.rowcount or 0
