"""The task registry: every background task declared once, with how it runs and how people see it.

A task is a function ``func(session, *ids)`` decorated with :func:`task` in :mod:`portal.jobs.tasks`. The
declaration carries the queue, the time limits and retries RQ applies, the Italian label and kind the jobs page
shows, whether the task reports progress, and (for periodic work) how often the scheduler runs it. Domain code
names tasks through :mod:`portal.outbox`; this registry is where the name is resolved.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

#: Every queue; a worker started without ``--queues`` listens to all of them, in this order of priority.
QUEUES = ("sync", "notices", "imports", "mail", "default")

#: What a kind of task is about, for people (the jobs page groups and filters on it).
KINDS = {
    "pagopa": "pagoPA",
    "notices": "Avvisi e bollettazioni",
    "imports": "Importazioni",
    "mail": "E-mail",
    "collections": "Solleciti e contenzioso",
    "webhooks": "Webhook",
    "maintenance": "Manutenzione",
    "test": "Prova",
}


@dataclass(frozen=True)
class TaskSpec:
    """What a job is and how it runs: queue, time limits and retries, label and kind, declared once."""

    name: str
    #: ``func(session, *ids)``: the work itself; it flushes, the wrapper commits.
    func: Callable[..., Any]
    #: What it does, in Italian, for the jobs page.
    label: str
    #: One of :data:`KINDS`.
    kind: str
    queue: str = "default"
    #: Seconds the job may run before the worker kills it.
    timeout: int = 300
    #: Seconds the job may wait in the queue before RQ drops it (``None``: forever).
    ttl: int | None = 24 * 3600
    #: Seconds a failed job stays in RQ's failed registry.
    failure_ttl: int = 7 * 24 * 3600
    #: Seconds RQ keeps a finished job's result.
    result_ttl: int = 600
    #: Retries on an exception, and the waits before each (transient trouble: database restart, network).
    retry_max: int = 3
    retry_intervals: tuple[int, ...] = (10, 60, 300)
    #: Whether the job reports how far it got (its row shows a progress bar).
    reports_progress: bool = False
    #: Seconds between two runs, for periodic work (``None``: run when asked).
    every: int | None = None
    #: The job keeps looking for new work before it ends: its requests go through a bell
    #: (:mod:`portal.jobs.lingering`) instead of "a job with this id is queued or started".
    lingers: bool = False

    @property
    def path(self) -> str:
        """The dotted path RQ imports to run the job."""
        return f"{self.func.__module__}.{self.name}"

    @property
    def kind_label(self) -> str:
        """The kind, for people."""
        return KINDS[self.kind]

    def retry(self):
        """RQ's ``Retry`` for this task, or ``None`` without retries."""
        from rq import Retry

        return Retry(max=self.retry_max, interval=list(self.retry_intervals)) if self.retry_max else None


class Outcome(str):
    """A job's summary for people, which may say the run found nothing to do (``idle``: hidden by default)."""

    idle: bool

    def __new__(cls, text: str, *, idle: bool = False):
        outcome = super().__new__(cls, text)
        outcome.idle = idle
        return outcome


#: Every declared task, by name.
TASKS: dict[str, TaskSpec] = {}


def task(queue: str = "default", *, label: str, kind: str, **options) -> Callable:
    """Declare a job function ``func(session, *ids)`` (see :class:`TaskSpec` for the options).

    The module attribute becomes the *runner* RQ calls with the ids: it opens an app context, calls the function
    with the context's session, commits, and keeps the job's row up to date (:func:`portal.jobs.queue.run_task`).
    """
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}")

    def decorator(func: Callable) -> Callable:
        spec = TaskSpec(name=func.__name__, func=func, queue=queue, label=label, kind=kind, **options)
        TASKS[spec.name] = spec

        @wraps(func)
        def runner(*ids, _record_id: int | None = None, _bell: str | None = None):
            from portal.jobs.queue import run_task

            return run_task(spec, ids, record_id=_record_id, bell=_bell)

        runner.spec = spec
        return runner

    return decorator


def _load() -> None:
    importlib.import_module("portal.jobs.tasks")


def get_spec(name: str) -> TaskSpec:
    """The declared task called ``name``.

    :raise KeyError: when no task has that name.
    """
    if name not in TASKS:
        _load()
    return TASKS[name]


def all_tasks() -> list[TaskSpec]:
    """Every declared task, in declaration order."""
    _load()
    return list(TASKS.values())


def label_of(name: str) -> str:
    """The Italian label of the task called ``name`` (the name itself for a task no longer declared)."""
    try:
        return get_spec(name).label
    except KeyError:
        return name
