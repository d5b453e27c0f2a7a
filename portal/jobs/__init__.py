"""Background jobs: RQ queues on Redis in production, in-process execution when no Redis is configured.

- :mod:`portal.jobs.registry`: every task declared once (queue, time limits, retries, label, kind, period).
- :mod:`portal.jobs.tasks`: the job functions (they take ids, open their own session, commit themselves).
- :mod:`portal.jobs.queue`: the outbox's requests become job rows and queued jobs after the commit; the backends
  (RQ, in-process threads, manual for tests).
- :mod:`portal.jobs.periodic`: the schedulers that run the registry's periodic tasks.
"""

import threading

from portal.jobs.queue import enqueue_after_commit, get_backend

__all__ = ["enqueue_after_commit", "init_app"]

_scheduler_lock = threading.Lock()


def init_app(app) -> None:
    """Attach the job backend to ``app``; without Redis, start the in-process scheduler with the first request.

    The in-process scheduler (development only) starts in the process that serves requests, never in CLI
    commands such as ``flask db upgrade`` or ``flask demo load``. ``JOBS_SCHEDULER=False`` turns it off.
    """
    backend = get_backend(app)
    if backend.mode != "thread" or app.config.get("JOBS_SCHEDULER") is False:
        return

    @app.before_request
    def _start_inprocess_scheduler():
        start_inprocess_scheduler(app)


def start_inprocess_scheduler(app):
    """Start (once per app) the daemon thread that runs the periodic jobs in-process; returns it."""
    from portal.jobs.periodic import InProcessScheduler

    with _scheduler_lock:
        scheduler = app.extensions.get("paybox_scheduler")
        if scheduler is None:
            scheduler = InProcessScheduler(app)
            app.extensions["paybox_scheduler"] = scheduler
            scheduler.start()
        return scheduler
