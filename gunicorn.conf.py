"""gunicorn settings of Pay Box: production (``gunicorn wsgi:app`` reads this file from the working directory; or
``gunicorn -c gunicorn.conf.py``) and ``bench/receipts.py``.

The values come from ``bench/receipts.py`` (paSendRTV2 at 200/s on 2 cores; figures in bench/README.md). What
kept the receipt endpoint's tail long, and the setting that answers it:

- a worker that accepts connections while its threads are busy queues calls behind each other while another
  worker is idle (gthread with keep-alive: each client connection stays with the worker that accepted it). Each
  worker here accepts a connection only when it can serve it at once (``worker_connections`` = ``threads``, no
  keep-alive), so a call waits in the one listen queue for the first free worker;
- a fresh worker's first calls open the database connection, load the XSD schema, and run code paths for the
  first time: :func:`post_worker_init` does that before the worker takes any call;
- the garbage collector walking the whole loaded application: what is loaded before the first call is frozen
  out of its reach (``gc.freeze``).

Every value can be overridden on the command line or in ``GUNICORN_CMD_ARGS`` (``--workers 8``,
``--access-logfile -``); ``WEB_CONCURRENCY`` sets the number of workers.

Metrics: the workers count into prometheus-client's multiprocess directory ``PROMETHEUS_MULTIPROC_DIR`` (see
``portal/metrics.py``), so ``/metrics`` on any worker adds up all of them. The deploy kit sets it to a directory
the RQ workers of the machine share (``/run/paybox/metrics``, emptied at boot); without it, this file makes a
fresh one for this gunicorn (removed when it stops). :func:`child_exit` forgets a dead worker's live gauges.
"""

import gc
import os
import shutil
import tempfile

wsgi_app = "wsgi:app"

#: Worker processes: one per core (at least two), each with ``threads`` threads to cover its waits for PostgreSQL.
#: On 2 cores, 4 workers cost 10-20% more CPU per receipt than 2 (more processes competing for the same caches)
#: for no better tail. ``WEB_CONCURRENCY`` overrides.
workers = int(os.environ.get("WEB_CONCURRENCY") or max(2, os.cpu_count() or 1))
worker_class = "gthread"
#: Threads per worker: a slow client (an upload, a long CSV export) holds one, not the whole process.
threads = 2
#: Accept a connection only with a thread free to serve it: calls wait in the shared listen queue, not behind a
#: busy worker's other calls.
worker_connections = threads
#: No keep-alive: an idle kept-alive connection would hold a thread's slot (and pin its next call to this worker).
#: A reverse proxy in front speaks HTTP/1.0 to gunicorn by default anyway.
keepalive = 0
#: The application is imported once in the master and shared by the forked workers.
preload_app = True
timeout = 60
graceful_timeout = 30
#: No access log by default: the application logs each receipt itself (``--access-logfile -`` turns it on).
accesslog = None
errorlog = "-"
loglevel = "info"


#: Set before the application is imported (``preload_app``): prometheus-client reads it when values are created.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="paybox-metrics-")
    _OWN_METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"]
else:
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    _OWN_METRICS_DIR = None


def on_starting(server):
    """Answer ``Server: Pay Box``: gunicorn's own header names the server software to every client."""
    import gunicorn.http.wsgi

    gunicorn.http.wsgi.SERVER = "Pay Box"


def post_fork(server, worker):
    """Connections are never shared across ``fork``: forget any the master's pool holds (without closing them)."""
    if not server.cfg.preload_app:
        return
    from portal.extensions import db

    app = server.app.wsgi()
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose(close=False)


def post_worker_init(worker):
    """Warm the worker before its first call (see :func:`portal.pagopa.node.warm_up`), then freeze the heap."""
    from portal.pagopa.node import warm_up

    took = warm_up(worker.wsgi, connections=worker.cfg.threads)
    pool = getattr(worker, "tpool", None)
    if pool is not None:
        # Schemas are per thread: load one in each of the worker's threads too.
        warm_threads(pool, worker.cfg.threads)
    gc.collect()
    gc.freeze()
    worker.log.info("worker %s warmed up: %s", worker.pid,
                    ", ".join(f"{step} {ms:.1f} ms" for step, ms in took.items()))


def warm_threads(pool, count: int, timeout: float = 10.0) -> None:
    """Load the XSD schema in each of ``count`` threads of ``pool`` (a barrier makes them distinct threads)."""
    import threading

    from portal.pagopa import soap

    barrier = threading.Barrier(count)

    def load():
        soap.schema()
        barrier.wait(timeout)

    for future in [pool.submit(load) for _ in range(count)]:
        future.result(timeout)


def child_exit(server, worker):
    """A worker is gone (restart, ``max_requests``, crash): its live gauges no longer count; its counters stay."""
    from portal.metrics import mark_process_dead

    mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory this file made for a gunicorn started without one."""
    if _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)
