"""Prometheus metrics of Pay Box: every counter and histogram declared once, counted where the thing happens.

Processes count into :mod:`prometheus_client`'s *multiprocess mode* when ``PROMETHEUS_MULTIPROC_DIR`` is set (the
deploy kit and ``gunicorn.conf.py`` set it): each process writes its values to small memory-mapped files in that
directory, and the ``/metrics`` view adds up the files of every process of the machine (gunicorn workers, RQ
workers and their work horses). Without it (the laptop demo, the tests) values live in this process.

Every metric has labels, so a process that never counts something (``flask db upgrade``) writes no file for it.

The ledger never imports this module: receipts are counted by the SOAP endpoint and the receipts poller
(:mod:`portal.pagopa`), jobs by the job runner, notices by the bill run.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client import multiprocess as _multiprocess

#: The environment variable of prometheus-client's multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory of the multiprocess files, or ``None`` when this process keeps its values in memory."""
    return os.environ.get(MULTIPROC_ENV) or None


#: Set by ``flask rq worker`` to its own pid: a process that sees another pid here is one of its work horses.
RQ_WORKER_PID_ENV = "PAYBOX_RQ_WORKER_PID"


def process_identifier() -> str:
    """The name of this process's value files.

    An RQ work horse (one forked child per job, one at a time per worker) writes into its worker's files
    (``horse-<worker pid>``) instead of files of its own: otherwise every job would leave a new set of files
    behind and a scrape would read thousands of them. The horses of one worker never run at the same time, and
    each one re-reads the files when it starts (prometheus-client reopens them when this name changes after fork).
    """
    pid = str(os.getpid())
    worker = os.environ.get(RQ_WORKER_PID_ENV)
    if worker and worker != pid:
        return f"horse-{worker}"
    return pid


if multiprocess_dir():
    os.makedirs(multiprocess_dir(), exist_ok=True)
    values.ValueClass = values.MultiProcessValue(process_identifier)

#: Seconds: from a few ms (a receipt) to a long CSV export.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Seconds: from a sync call to a bill-run chunk of a thousand notices.
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

REQUEST_SECONDS = Histogram(
    "paybox_http_request_duration_seconds", "Time to answer an HTTP request, by route (the URL rule, not the path).",
    ["method", "route", "status"], buckets=LATENCY_BUCKETS)

RECEIPTS_RECEIVED = Counter(
    "paybox_receipts_received_total", "Receipts that reached Pay Box (paSendRT/paSendRTV2 calls, receipts polled "
    "from GPD), before any check.", ["source"])
RECEIPTS_STORED = Counter(
    "paybox_receipts_stored_total", "Receipts stored and acknowledged; flag is why an officer must look at one "
    "(none: it simply paid an open option).", ["source", "flag"])
RECEIPTS_REFUSED = Counter(
    "paybox_receipts_refused_total", "Receipts answered KO or not acknowledged, by reason (the pagoPA fault code, "
    "forbidden for a caller outside the allow-list, PAA_SYSTEM_ERROR for our own failure).", ["source", "reason"])

SYNC_ATTEMPTS = Counter(
    "paybox_sync_attempts_total", "Attempts to converge a position with GPD, by result (synced, noop, busy, "
    "missing, retry: pagoPA unavailable, rejected: pagoPA refused).", ["result"])
SYNC_BULK_POSITIONS = Counter(
    "paybox_sync_bulk_positions_total", "Positions handled by GPD bulk publication, by result (published, retry, "
    "rejected, fallback: published one by one after a bulk refusal).", ["result"])

JOB_SECONDS = Histogram(
    "paybox_job_duration_seconds", "Run time of a background job, by task, queue and outcome (done, failed).",
    ["task", "queue", "outcome"], buckets=JOB_BUCKETS)

NOTICES_RENDERED = Counter(
    "paybox_billrun_notices_rendered_total", "Payment notices rendered by bill-run chunks (the bill runs' "
    "throughput: rate() of this).", ["mode"])
BILLRUN_PAGES = Counter(
    "paybox_billrun_pages_rendered_total", "PDF pages rendered by bill-run chunks.", ["mode"])
BILLRUNS_FINISHED = Counter(
    "paybox_billruns_finished_total", "Bill runs whose package was written.", ["mode"])


def scrape_registry() -> CollectorRegistry:
    """The registry a scrape reads: every process's files in multiprocess mode, else this process's metrics."""
    from prometheus_client import REGISTRY

    path = multiprocess_dir()
    if not path:
        return REGISTRY
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry, path=path)
    return registry


def mark_process_dead(pid: int) -> None:
    """Forget a finished process's live gauges (gunicorn's ``child_exit``); its counters stay counted."""
    if multiprocess_dir():
        _multiprocess.mark_process_dead(pid, multiprocess_dir())
