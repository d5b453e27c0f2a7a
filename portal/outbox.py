"""The outbox: "after this transaction commits, run task X for ids …", recorded by whoever changes data.

It sits at the bottom so that the domain can ask for follow-up work without knowing how it runs: a request names a
task and plain ids, nothing else, and lives in ``session.info`` until the session's transaction ends. The job
layer (:mod:`portal.jobs.queue`) listens to the session: just before the commit it writes each request's job row in
the same transaction (so the request is durable), and once the commit succeeded it hands the requests to a queue; a
rollback drops them. Nothing here imports the job system, Flask or any adapter.

Progress of long work goes the same way down: a job sets a reporter with :func:`reporting_to`, and the domain calls
:func:`report_progress`, which does nothing outside a job.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy.orm import Session, scoped_session

#: Key of the requests in ``Session.info``.
PENDING_KEY = "paybox.outbox.pending"


@dataclass
class Request:
    """Work asked for during a transaction; it becomes a job only if the transaction commits."""

    task: str
    ids: tuple
    #: A deterministic id (``sync-position-42``): while a job with this id is queued or running, asking again
    #: does nothing, so double clicks and repeated sweeps never run the same work twice at once.
    job_id: str | None = None
    #: The sweep may replace a "started" job with the same id: it holds the row lock, so that job is dead.
    replace_started: bool = False
    created_by_id: int | None = None
    creditor_id: int | None = None
    #: How many items the job will go through (its progress bar's end), when known.
    total: int | None = None
    #: The job row written for it just before the commit (set by the job layer).
    record_id: int | None = None


def _real(session: Session | scoped_session) -> Session:
    return session() if isinstance(session, scoped_session) else session


def schedule(session: Session | scoped_session, task: str, *ids, job_id: str | None = None,
             replace_started: bool = False, created_by_id: int | None = None, creditor_id: int | None = None,
             total: int | None = None) -> Request:
    """Ask for ``task(*ids)`` to run once the current transaction of ``session`` commits.

    Asking twice in one transaction for the same ``job_id`` keeps the first request.
    """
    request = Request(task=task, ids=tuple(ids), job_id=job_id, replace_started=replace_started,
                      created_by_id=created_by_id, creditor_id=creditor_id, total=total)
    session = _real(session)
    if not session.in_transaction():
        session.begin()  # the request belongs to a transaction: its rollback must be able to drop it
    pending: list[Request] = session.info.setdefault(PENDING_KEY, [])
    if job_id is not None:
        for existing in pending:
            if existing.job_id == job_id:
                return existing
    pending.append(request)
    return request


def pending(session: Session | scoped_session) -> list[Request]:
    """The requests the current transaction of ``session`` will release when it commits."""
    return list(_real(session).info.get(PENDING_KEY, ()))


def discard(session: Session | scoped_session, task: str | None = None) -> int:
    """Forget the requests of this transaction (all, or those of one task); returns how many went."""
    info = _real(session).info
    requests = info.get(PENDING_KEY, [])
    kept = [r for r in requests if task is not None and r.task != task]
    info[PENDING_KEY] = kept
    return len(requests) - len(kept)


def take(session: Session | scoped_session) -> list[Request]:
    """Remove and return the requests of this transaction (the job layer, once it committed)."""
    return _real(session).info.pop(PENDING_KEY, None) or []


# --- Progress ----------------------------------------------------------------------------------------------------

_reporter: contextvars.ContextVar[Callable[[int, int | None], None] | None] = contextvars.ContextVar(
    "paybox_progress_reporter", default=None)


def report_progress(done: int, total: int | None = None) -> None:
    """Tell whoever runs this work how far it got (``done`` of ``total`` items); a no-op outside a job."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(done, total)


@contextlib.contextmanager
def reporting_to(reporter: Callable[[int, int | None], None]) -> Iterator[None]:
    """Send the :func:`report_progress` calls made inside the block to ``reporter``."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)
