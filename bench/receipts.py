"""Benchmark of the receipts endpoint: paSendRTV2 calls at a steady rate against Pay Box under gunicorn.

Creates (drops and re-creates) its own PostgreSQL database, migrates it, inserts one Comune with its pagoPA
station and N published positions (set-based SQL), starts Pay Box under gunicorn with the repository's
``gunicorn.conf.py`` (the production settings) on a free loopback port, waits until every worker has warmed up,
then sends paSendRTV2 requests from a thread pool at a target rate for a bounded time. A fraction of the calls
re-send a receipt already sent (the node's retries), which must come back as PAA_RECEIPT_DUPLICATA.

    .venv/bin/python bench/receipts.py [--rate 200] [--duration 20] [--workers N] [--threads N]
                                       [--worker-class gthread] [--gunicorn-arg=--keep-alive=2 ...] [--untuned]
                                       [--client-threads 32] [--duplicates 0.05] [--warmup 0]
                                       [--database-url postgresql://postgres@127.0.0.1:5432/paybox_bench_receipts]

``--untuned`` runs the settings the endpoint had before ``gunicorn.conf.py`` (gunicorn's defaults, gthread,
4 workers x 2 threads, keep-alive, no warm-up): the comparison.

Prints throughput, latency percentiles (service time, and time from the scheduled send, which includes any
queueing in the client) and errors; then the breakdown: the server's own timings of every call (the
``Server-Timing`` header, ``PAGOPA_SERVER_TIMING=1``: time queued before the view, parse and XSD, ledger and its
SQL, commit, encoding, logging, GC, the view's wall and CPU time), for all calls and for the slowest 1%; where the
machine's CPU went (client, gunicorn, PostgreSQL, everything else) and the load average; lock waits seen in
``pg_stat_activity``; then what the database holds. Figures only, no assertions. The gunicorn log is kept in a
temporary file whose path is printed.
"""

import argparse
import itertools
import os
import random
import re
import resource
import runpy
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    load_average,
    log,
    machine_cpu,
    percentile,
    proc_children,
    process_cpu,
    recreate_database,
)
from portal import timing  # noqa: E402
from portal.ledger.payments import ReceiptData, ReceiptTransfer  # noqa: E402
from portal.pagopa import soap  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/paybox_bench_receipts"
CF_COMUNE = "80015010723"
IBAN = "IT60X0542811101000000123456"
SEGREGATION = "01"
BROKER = "15376371009"
STATION = "15376371009_01"
CF_DEBTOR = "RSSMRA80A01H501U"
HOST = "127.0.0.1"


# --- Database ------------------------------------------------------------------------------------------------------


def migrate_and_seed(url: str, positions: int) -> None:
    """Run the migrations, create the Comune through the ledger services, then the positions in bulk."""
    from flask_migrate import upgrade

    from portal import create_app
    from portal.extensions import db
    from portal.ledger.models import Debtor, Service
    from portal.settings import services as settings_svc

    app = create_app({"SQLALCHEMY_DATABASE_URI": url.replace("postgresql://", "postgresql+psycopg://"),
                      "SQLALCHEMY_ENGINE_OPTIONS": {}, "SECRET_KEY": "bench"})
    with app.app_context():
        upgrade()
        creditor = settings_svc.create_creditor(db.session, fiscal_code=CF_COMUNE, name="Comune di Prova",
                                          segregation_code=SEGREGATION, broker_id=BROKER, station_id=STATION)
        account = settings_svc.add_account(db.session, creditor, iban=IBAN, label="Tesoreria")
        service = Service(creditor=creditor, code="TARI", name="TARI", taxonomy_code="9/0101101IM/",
                          account=account)
        debtor = Debtor(creditor_id=creditor.id, kind="F", fiscal_code=CF_DEBTOR, name="Mario Rossi")
        db.session.add_all([service, debtor])
        db.session.commit()
        ids = {"cid": creditor.id, "sid": service.id, "did": debtor.id}
        for engine in db.engines.values():
            engine.dispose()
    with psycopg.connect(url) as conn:
        params = {**ids, "n": positions, "cf": CF_COMUNE, "seg": SEGREGATION, "iban": IBAN}
        conn.execute("""
            INSERT INTO positions (id, creditor_id, service_id, debtor_id, iupd, source, external_id, subject,
                                   status, amount_cents, paid_cents, due_date, created_at, updated_at,
                                   published_at, pagopa_target)
            SELECT g, %(cid)s, %(sid)s, %(did)s, %(cf)s || '-bench-' || g, 'bench', g::text, 'TARI ' || g,
                   'published', 1000 + g %% 9000, 0, current_date + 30, now(), now(), now(), 'published'
            FROM generate_series(1, %(n)s) g""", params)
        conn.execute("""
            INSERT INTO payment_options (id, position_id, creditor_id, kind, iuv, notice_number, amount_cents,
                                         due_date, description, status)
            SELECT g, g, %(cid)s, 'single', substr(nav, 2), nav, 1000 + g %% 9000, current_date + 30,
                   'TARI ' || g, 'unpaid'
            FROM (SELECT g, f16 || lpad((f16::numeric %% 93)::text, 2, '0') AS nav
                  FROM (SELECT g, '3' || %(seg)s || lpad(g::text, 13, '0') AS f16
                        FROM generate_series(1, %(n)s) g) a) b""", params)
        conn.execute("""
            INSERT INTO transfers (option_id, index, amount_cents, beneficiary_fiscal_code, beneficiary_name, iban,
                                   taxonomy_code, remittance)
            SELECT g, 1, 1000 + g %% 9000, %(cf)s, 'Comune di Prova', %(iban)s, '9/0101101IM/', 'TARI ' || g
            FROM generate_series(1, %(n)s) g""", params)
        conn.execute("UPDATE number_counters SET next_value = %(n)s + 1", params)
        for table in ("positions", "payment_options"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def options_of(url: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT iuv, notice_number, amount_cents FROM payment_options ORDER BY id").fetchall()


def database_figures(url: str) -> dict:
    with psycopg.connect(url) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "receipts stored": one("SELECT count(*) FROM receipts"),
            "flagged receipts": one("SELECT count(*) FROM receipts WHERE flag IS NOT NULL"),
            "positions paid": one("SELECT count(*) FROM positions WHERE status = 'paid'"),
            "'paid' events": one("SELECT count(*) FROM events WHERE kind = 'paid'"),
        }


# --- Requests ------------------------------------------------------------------------------------------------------


def build_payloads(rows: list[tuple[str, str, int]], count: int, duplicates: float, seed: int) -> list[bytes]:
    """``count`` paSendRTV2 requests: receipts for distinct options, with a share re-sending an earlier one."""
    rng = random.Random(seed)
    paid_at = datetime.now(UTC).replace(microsecond=0)
    payloads: list[bytes] = []
    unique = 0
    for n in range(count):
        if payloads and rng.random() < duplicates:
            payloads.append(payloads[rng.randrange(len(payloads))])
            continue
        iuv, nav, amount = rows[unique]
        unique += 1
        data = ReceiptData(
            receipt_id=f"bench{n:010d}{rng.getrandbits(64):016x}", notice_number=nav, iuv=iuv,
            org_fiscal_code=CF_COMUNE, outcome="OK", amount_cents=amount, description="TARI",
            company_name="Comune di Prova", fee_cents=100, psp_id="BCITITMM", psp_name="Banca di Prova",
            channel_id="00799960158_01", channel_description="app", payment_method="PO", payment_at=paid_at,
            application_date=date.today(), debtor_fiscal_code=CF_DEBTOR, debtor_name="Mario Rossi",
            transfers=(ReceiptTransfer(index=1, amount_cents=amount, fiscal_code=CF_COMUNE, iban=IBAN,
                                       remittance="TARI", category="9/0101101IM/"),),
        )
        payloads.append(soap.build_send_rt_request(data, id_pa=CF_COMUNE, id_broker_pa=BROKER, id_station=STATION))
    return payloads


_OUTCOME = re.compile(rb"<outcome>(OK|KO)</outcome>")
_FAULT = re.compile(rb"<faultCode>([A-Z_]+)</faultCode>")


def classify(status: int, body: bytes) -> str:
    if status != 200:
        fault = _FAULT.search(body)
        return f"HTTP {status}" + (f" {fault.group(1).decode()}" if fault else "")
    outcome = _OUTCOME.search(body)
    if outcome is None:
        return "HTTP 200 unreadable"
    if outcome.group(1) == b"OK":
        return "OK"
    fault = _FAULT.search(body)
    return f"KO {fault.group(1).decode() if fault else '?'}"


class Call:
    """One call as the client saw it, with the server's own timings of it (``Server-Timing``, milliseconds)."""

    __slots__ = ("index", "kind", "service", "lagged", "server")

    def __init__(self, index: int, kind: str, service: float, lagged: float, server: dict[str, float]):
        self.index, self.kind, self.service, self.lagged = index, kind, service, lagged
        self.server = server


class Connection:
    """A minimal HTTP/1.1 client on one socket, kept open while the server keeps it (keep-alive), else re-opened.

    ``requests`` and ``http.client`` parse headers with the e-mail parser: a few hundred microseconds of CPU a
    call, on the same two cores as the server being measured. This sends a prepared request and reads the status,
    headers and ``Content-Length`` bytes of the answer.
    """

    def __init__(self, port: int, timeout: float):
        self.port, self.timeout, self.sock = port, timeout, None

    def post(self, head: bytes, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.sock is None:
            self.sock = socket.create_connection((HOST, self.port), self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock.sendall(head + body)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed before the answer")
                data += chunk
            blob, _, content = data.partition(b"\r\n\r\n")
            status_line, *lines = blob.decode("latin-1").split("\r\n")
            headers = {name.strip().lower(): value.strip()
                       for name, _, value in (line.partition(":") for line in lines)}
            length = int(headers.get("content-length", "0"))
            while len(content) < length:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed in the middle of the answer")
                content += chunk
        except BaseException:
            self.close()
            raise
        if headers.get("connection", "").lower() == "close" or status_line.startswith("HTTP/1.0"):
            self.close()
        return int(status_line.split()[1]), headers, content

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def request_head(port: int, length: int, sent_at: float) -> bytes:
    return (f"POST /pagopa/paForNode HTTP/1.1\r\nHost: {HOST}:{port}\r\nSOAPAction: paSendRTV2\r\n"
            f"Content-Type: text/xml; charset=utf-8\r\nContent-Length: {length}\r\n"
            f"X-Request-Start: t={sent_at:.6f}\r\n\r\n").encode()


def drive(port: int, payloads: list[bytes], *, rate: float, client_threads: int, grace: float) -> dict:
    """Send ``payloads`` in order, the i-th at ``start + i / rate``, from ``client_threads`` threads.

    Each thread has one :class:`Connection`, kept alive when the server allows it (as the node's connection pool
    would). Each call carries ``X-Request-Start`` (the wall clock at sending), so the server can say how long it
    waited before its view ran.
    """
    counter = itertools.count()
    start = time.perf_counter() + 0.5
    deadline = start + len(payloads) / rate + grace
    results: list[Call] = []
    skipped = [0]
    lock = threading.Lock()

    def worker():
        conn = Connection(port, timeout=15)
        while True:
            index = next(counter)
            if index >= len(payloads):
                break
            scheduled = start + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if time.perf_counter() > deadline:
                with lock:
                    skipped[0] += 1
                continue
            sent = time.perf_counter()
            server: dict[str, float] = {}
            body = payloads[index]
            try:
                status, headers, content = conn.post(request_head(port, len(body), time.time()), body)
                kind = classify(status, content)
                server = timing.parse_header(headers.get("server-timing", ""))
            except OSError as exc:
                kind = f"exception {type(exc).__name__}"
            done = time.perf_counter()
            with lock:
                results.append(Call(index, kind, (done - sent) * 1000, (done - scheduled) * 1000, server))
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(client_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = max(time.perf_counter() - start, 1e-9)
    return {"results": results, "skipped": skipped[0], "elapsed": elapsed}


# --- What the machine and the database did meanwhile ---------------------------------------------------------------


class Sampler:
    """CPU seconds of the client, gunicorn and the PostgreSQL backends, and lock waits, over the measured run.

    ``pg_stat_activity`` is polled every ``interval`` seconds from one connection: how often a backend of the
    benchmark database was waiting for a lock (``wait_event_type = 'Lock'``), and the most at once.
    """

    def __init__(self, url: str, gunicorn_pid: int, interval: float = 0.05):
        self.url, self.gunicorn_pid, self.interval = url, gunicorn_pid, interval
        self.samples = self.lock_samples = self.max_waiting = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _cpu(self, backends: list[int]) -> dict[str, float]:
        gunicorn = [self.gunicorn_pid, *proc_children(self.gunicorn_pid)]
        busy, _ = machine_cpu()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"client": usage.ru_utime + usage.ru_stime, "gunicorn": sum(map(process_cpu, gunicorn)),
                "postgres": sum(map(process_cpu, backends)), "machine": busy}

    def __enter__(self) -> "Sampler":
        self._conn = psycopg.connect(self.url, autocommit=True)
        self._backends = [row[0] for row in self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
        self.deadlocks = self._deadlocks()
        self.checkpoints = self._checkpoints()
        self.load_before = load_average()
        self._before = self._cpu(self._backends)
        self._thread.start()
        return self

    def _deadlocks(self) -> int:
        return self._conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]

    def _checkpoints(self) -> int:
        # CREATE/DROP DATABASE elsewhere on the server (test suites) force one: COMMITs wait while it syncs.
        return self._conn.execute("SELECT checkpoints_req + checkpoints_timed FROM pg_stat_bgwriter").fetchone()[0]

    def _poll(self) -> None:
        sql = ("SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') FROM pg_stat_activity "
               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        while not self._stop.wait(self.interval):
            waiting = self._conn.execute(sql).fetchone()[0]
            self.samples += 1
            self.lock_samples += waiting > 0
            self.max_waiting = max(self.max_waiting, waiting)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        # Backends opened during the run (a worker's pool growing) are counted from their start.
        backends = [row[0] for row in self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
        after = self._cpu(backends)
        self.cpu = {key: after[key] - self._before[key] for key in after}
        self.backends = len(backends)
        self.deadlocks = self._deadlocks() - self.deadlocks
        self.checkpoints = self._checkpoints() - self.checkpoints
        self.load_after = load_average()
        self._conn.close()


# --- gunicorn ------------------------------------------------------------------------------------------------------

#: The settings before gunicorn.conf.py existed: gthread, 4 workers x 2 threads, gunicorn's defaults otherwise.
UNTUNED = ["--worker-class", "gthread", "--workers", "4", "--threads", "2"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def configured_workers(config: Path, override: int | None) -> int:
    """How many workers gunicorn will start: ``--workers``, else what the config file computes."""
    if override is not None:
        return override
    return int(runpy.run_path(str(config)).get("workers", 1))


def start_gunicorn(url: str, port: int, *, config: Path, options: list[str], workers: int, warmed: bool,
                   logfile) -> subprocess.Popen:
    """gunicorn with ``config`` and ``options`` on ``port``; returns once every worker answers (or has warmed up)."""
    env = {
        **os.environ,
        "PAYBOX_ENV": "development",
        "DATABASE_URL": url,
        "SECRET_KEY": "bench-receipts",
        "PAGOPA_BROKER_ID": BROKER,
        "PAGOPA_STATION_ID": STATION,
        "PAGOPA_SERVER_TIMING": "1",
        # As in production: jobs go to Redis (none are enqueued by receipts), no in-process job threads.
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
    }
    if "--workers" in options:
        env.pop("WEB_CONCURRENCY", None)
    command = [str(ROOT / ".venv" / "bin" / "gunicorn"), "--config", str(config), *options,
               "--bind", f"{HOST}:{port}", "--graceful-timeout", "5", "wsgi:app"]
    # Our own venv binary and fixed arguments: no shell, nothing from outside.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT)  # noqa: S603
    probe = f"http://{HOST}:{port}/pagopa/paForNode"
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see {logfile.name}")
        try:
            requests.get(probe, timeout=1)  # 405: the app answers
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)
            continue
        if not warmed or Path(logfile.name).read_text().count(" warmed up: ") >= workers:
            return process
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError("gunicorn did not start (or its workers did not warm up) in 60 s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- Report --------------------------------------------------------------------------------------------------------

#: The Server-Timing metrics, in the order printed, with what each one covers.
PHASES = (
    ("queue", "sent -> view starts (connect, listen queue, gunicorn)"),
    ("read", "request body read"),
    ("parse", "XML parse + checks, incl. xsd"),
    ("xsd", "XSD validation"),
    ("ledger", "caller ids, receipt fields, record_receipt, incl. sql"),
    ("sql", "SQL statements (lock waits included)"),
    ("commit", "COMMIT (WAL flush)"),
    ("encode", "SOAP answer built"),
    ("log", "the call's log line"),
    ("gc", "garbage collection pauses"),
    ("app", "the view, wall time"),
    ("cpu", "the view, CPU time of its thread"),
)


def breakdown(calls: list[Call]) -> list[str]:
    """One line per phase: percentiles over every call, and the mean over the slowest 1% of calls."""
    measured = [c for c in calls if c.server]
    if not measured:
        return ["no Server-Timing header in the answers: breakdown unavailable"]
    threshold = percentile([c.service for c in measured], 99)
    slowest = [c for c in measured if c.service >= threshold]
    lines = [f"{'server-side, ms':<16}{'p50':>7}{'p95':>7}{'p99':>7}{'max':>8}{'mean':>7}"
             f"{'slowest 1%':>12}   ({len(measured)} calls; slowest 1%: {len(slowest)} calls >= {threshold:.1f} ms)"]

    def row(name: str, values: list[float], tail: list[float], note: str) -> str:
        return (f"  {name:<14}{percentile(values, 50):7.1f}{percentile(values, 95):7.1f}"
                f"{percentile(values, 99):7.1f}{max(values):8.1f}{statistics.fmean(values):7.2f}"
                f"{statistics.fmean(tail) if tail else float('nan'):12.1f}   {note}")

    for name, note in PHASES:
        if not any(name in c.server for c in measured):
            continue
        lines.append(row(name, [c.server.get(name, 0.0) for c in measured],
                         [c.server.get(name, 0.0) for c in slowest], note))
    outside = lambda c: c.service - c.server.get("queue", 0.0) - c.server.get("app", 0.0)  # noqa: E731
    lines.append(row("rest", [outside(c) for c in measured], [outside(c) for c in slowest],
                     "client total - queue - app (Flask around the view, answer sent, client)"))
    lines.append(row("client total", [c.service for c in measured], [c.service for c in slowest],
                     "what the client measured"))
    return lines


# --- Main ----------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="target calls per second (default 200)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes (default: gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, help="threads per gunicorn worker (default: gunicorn.conf.py's)")
    parser.add_argument("--worker-class", help="gunicorn worker class (default: gunicorn.conf.py's)")
    parser.add_argument("--gunicorn-arg", action="append", default=[], metavar="ARG",
                        help="one more gunicorn option, e.g. --gunicorn-arg=--keep-alive=2 (repeatable)")
    parser.add_argument("--untuned", action="store_true",
                        help="gunicorn's defaults with gthread 4x2, no config file, no warm-up: the comparison")
    parser.add_argument("--client-threads", type=int, default=32, help="sending threads (default 32)")
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of re-sent receipts (default 0.05)")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds allowed past the schedule (default 15)")
    parser.add_argument("--warmup", type=int, default=0,
                        help="receipts sent at the target rate before the measured run and not counted "
                             "(default 0: the workers' first real calls are measured; gunicorn.conf.py warms "
                             "each worker up before it takes a call)")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.rate <= 0 or args.duration <= 0 or args.rate * args.duration > 1_000_000:
        parser.error("rate and duration must be positive, and at most 1,000,000 calls in all")

    options = list(UNTUNED) if args.untuned else []
    for flag, value in (("--workers", args.workers), ("--threads", args.threads),
                        ("--worker-class", args.worker_class)):
        if value is not None:
            options += [flag, str(value)]
    options += args.gunicorn_arg
    calls = int(args.rate * args.duration)
    log(f"{calls} paSendRTV2 calls at {args.rate:g}/s for {args.duration:g} s, {args.duplicates:.0%} re-sent; "
        f"{os.cpu_count()} CPUs, load average {load_average()}")
    step = time.perf_counter()
    recreate_database(args.database_url)
    migrate_and_seed(args.database_url, calls + args.warmup)
    log(f"database {args.database_url.rsplit('/', 1)[1]}: migrated, {calls} published positions "
        f"({time.perf_counter() - step:.1f} s)")
    rows = options_of(args.database_url)
    payloads = build_payloads(rows[args.warmup:], calls, args.duplicates, args.seed)
    warmup = build_payloads(rows[:args.warmup], args.warmup, 0.0, args.seed + 1) if args.warmup else []
    log(f"{len(payloads)} requests built ({sum(map(len, payloads)) / len(payloads):.0f} bytes each on average)")

    with tempfile.TemporaryDirectory(prefix="bench_receipts_") as scratch:
        config = ROOT / "gunicorn.conf.py"
        if args.untuned:
            # An empty config file: gunicorn would otherwise read ./gunicorn.conf.py by itself.
            config = Path(scratch) / "untuned.conf.py"
            config.write_text("")
        workers = configured_workers(config, next((int(options[i + 1]) for i in range(len(options) - 1)
                                                   if options[i] == "--workers"), None))
        log(f"gunicorn --config {config.relative_to(ROOT) if config.is_relative_to(ROOT) else 'empty'} "
            f"{' '.join(options)} ({workers} workers)")
        with tempfile.NamedTemporaryFile("w", prefix="bench_receipts_gunicorn_", suffix=".log",
                                         delete=False) as logfile:
            port = free_port()
            process = start_gunicorn(args.database_url, port, config=config, options=options, workers=workers,
                                     warmed=not args.untuned, logfile=logfile)
            try:
                if warmup:
                    drive(port, warmup, rate=args.rate, client_threads=args.client_threads, grace=args.grace)
                    log(f"warm-up: {len(warmup)} receipts sent, not counted")
                with Sampler(args.database_url, process.pid) as sampler:
                    run = drive(port, payloads, rate=args.rate, client_threads=args.client_threads,
                                grace=args.grace)
            finally:
                stop(process)

    results: list[Call] = run["results"]
    results_in_order = sorted(results, key=lambda c: c.index)
    kinds: dict[str, int] = {}
    for call in results:
        kinds[call.kind] = kinds.get(call.kind, 0) + 1
    service = [c.service for c in results]
    lagged = [c.lagged for c in results]
    expected = {"OK", "KO PAA_RECEIPT_DUPLICATA"}
    errors = sum(count for kind, count in kinds.items() if kind not in expected)
    log("")
    log(f"sent {len(results)} in {run['elapsed']:.1f} s: {len(results) / run['elapsed']:.1f} calls/s "
        f"(target {args.rate:g}/s); not sent (past the deadline): {run['skipped']}")
    for kind, count in sorted(kinds.items(), key=lambda item: -item[1]):
        log(f"  {kind:<32} {count:>7}")
    log(f"errors (anything but OK or PAA_RECEIPT_DUPLICATA): {errors}")
    log(f"latency ms      p50 {percentile(service, 50):7.1f}   p95 {percentile(service, 95):7.1f}   "
        f"p99 {percentile(service, 99):7.1f}   max {max(service, default=float('nan')):7.1f}   "
        f"mean {statistics.fmean(service) if service else float('nan'):.1f}")
    log(f"from schedule   p50 {percentile(lagged, 50):7.1f}   p95 {percentile(lagged, 95):7.1f}   "
        f"p99 {percentile(lagged, 99):7.1f}   max {max(lagged, default=float('nan')):7.1f}")
    log(f"load average    {sampler.load_before} before, {sampler.load_after} after")
    log("")
    log("by time (calls in order of sending, in slices of 2 s): p50 / p99 / max ms")
    width = max(1, int(args.rate * 2))
    slices = [results_in_order[i:i + width] for i in range(0, len(results_in_order), width)]
    log("  " + "  ".join(f"{percentile(s_, 50):.0f}/{percentile(s_, 99):.0f}/{max(s_):.0f}"
                         for s_ in ([c.service for c in chunk] for chunk in slices) if s_))
    log("")
    for line in breakdown(results):
        log(line)
    log("")
    done = max(len(results), 1)
    cpu = sampler.cpu
    other = cpu["machine"] - cpu["client"] - cpu["gunicorn"] - cpu["postgres"]
    log(f"CPU ms per call  client {cpu['client'] * 1000 / done:.2f}   gunicorn {cpu['gunicorn'] * 1000 / done:.2f}   "
        f"postgres ({sampler.backends} backends) {cpu['postgres'] * 1000 / done:.2f}   "
        f"everything else {other * 1000 / done:.2f}   (machine busy {cpu['machine'] / run['elapsed']:.2f} "
        f"of {os.cpu_count()} cores)")
    log(f"lock waits      {sampler.lock_samples} of {sampler.samples} samples of pg_stat_activity saw a backend "
        f"waiting for a lock (at most {sampler.max_waiting} at once); deadlocks: {sampler.deadlocks}; "
        f"server checkpoints during the run: {sampler.checkpoints}")
    unique = len(set(payloads))
    log(f"database: {database_figures(args.database_url)}; distinct receipts sent: {unique}"
        + (f" (+ {len(warmup)} warm-up)" if warmup else ""))
    log(f"gunicorn log: {logfile.name}")


if __name__ == "__main__":
    main()
