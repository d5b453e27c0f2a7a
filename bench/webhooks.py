"""Benchmark of webhook delivery: payments through the ledger, delivered by real RQ workers to a local receiver.

End to end, as in production: its own PostgreSQL database (dropped and re-created, migrated, N published
positions), its own Redis DB (flushed), a **receiver** in a separate process (a threaded HTTP server that checks
every ``PayBox-Signature`` the way the README tells a Comune to, and records the arrival time of each
``PayBox-Event-Id``), ``--workers`` real ``flask rq worker`` processes and the ``flask rq scheduler`` (the periodic
run of the delivery job), all in ``PAYBOX_ENV=production`` with ``WEBHOOKS_ALLOW_PRIVATE=1`` (the receiver is on
loopback: the SSRF guard is opened explicitly, as an installation with an internal receiver must). One subscriber
for every event.

Then ``--producers`` processes pay the positions at a steady total ``--rate`` for ``--duration`` seconds through
the ledger's receipt path (``portal.ledger.payments.record_receipt`` + commit, what a paSendRTV2 call does), so each
commit writes the ``position.paid`` event and its delivery row and asks for the delivery job after the commit. The
delay of a delivery runs from that payment's commit (a session listener stamps it before the job layer enqueues
anything) to its first arrival at the receiver; both clocks are this machine's ``time.time()``.

    .venv/bin/python bench/webhooks.py [--rate 200] [--duration 20] [--workers 2] [--producers 2]
                                       [--backlog 0] [--drain 90] [--database-url URL] [--redis-url URL]
    .venv/bin/python bench/webhooks.py --profile 300 [--database-url URL] [--redis-url URL]

``--backlog N`` then measures capacity: the workers are suspended (``rq suspend``), N more positions are paid,
the workers are resumed, and the time from the resume to the last arrival gives deliveries/s with a full queue.
``--profile N`` only seeds and pays N positions in this process, as a producer does (no worker): statements and CPU
ms per payment, by statement, and the functions that cost most (cProfile).

Prints the payments actually made per second, deliveries/s, delay p50/p95/p99/max (overall and per 5 s slice),
duplicates (an event id received more than once), missing (a paid position whose event never arrived within
``--drain`` seconds after the last payment: must be 0), bad signatures, the delivery rows by status and attempts,
how many delivery jobs ran, CPU ms per delivery of the workers (with their work horses), the receiver, the
producers and the whole machine, and the load average. Last line:
``webhooks deliveries/s=N p50-ms=N p95-ms=N missing=N duplicates=N``. Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    drop_database,
    load_average,
    log,
    machine_cpu,
    percentile,
    proc_children,
    process_cpu,
    recreate_database,
)

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/paybox_bench_webhooks"
DEFAULT_REDIS = "redis://127.0.0.1:6379/8"
SECRET = "whsec_bench_0123456789abcdefghij"  # noqa: S105 - the bench's own receiver
CF_COMUNE = "80015010723"
IBAN = "IT60X0542811101000000123456"
BROKER = "15376371009"
STATION = "15376371009_01"
CF_DEBTOR = "RSSMRA80A01H501U"
HOST = "127.0.0.1"
SLICE = 5.0


# --- The receiver (a process of its own) -----------------------------------------------------------------------------


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """What a Comune's receiver does with ``PayBox-Signature`` (the README's ten lines)."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    timestamp = parts.get("t", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def serve_receiver(secret: str) -> None:
    """Answer 200 to every signed POST and record (arrival, event id, event, position id, signature ok); ``GET
    /count`` gives how many calls so far, ``GET /records`` all of them as JSON. Prints ``ready <port>``."""
    records: list[tuple[float, str, str, int | None, bool]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the workers' sessions reuse their connections
        # Headers and body leave in two writes: with Nagle on, the body waits for the client's delayed ACK (40 ms).
        disable_nagle_algorithm = True

        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrived = time.time()
            ok = verify(secret, self.headers.get("PayBox-Signature", ""), body)
            try:
                position = json.loads(body)["data"]["position"]["id"]
            except (ValueError, KeyError, TypeError):
                position = None
            with lock:
                records.append((arrived, self.headers.get("PayBox-Event-Id", ""), self.headers.get("PayBox-Event", ""),
                                position, ok))
            self._answer(200 if ok else 400, b"ok" if ok else b"bad signature")

        def do_GET(self):  # noqa: N802
            with lock:
                snapshot = list(records)
            if self.path == "/count":
                self._answer(200, str(len(snapshot)).encode())
            else:
                self._answer(200, json.dumps(snapshot).encode())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.5)


class Receiver:
    """The receiver process, seen from the bench."""

    def __init__(self, secret: str):
        self.process = subprocess.Popen(  # noqa: S603 - this very script, fixed arguments
            [sys.executable, __file__, "--serve-receiver", secret], stdout=subprocess.PIPE, text=True,
            start_new_session=True)
        line = self.process.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError("the receiver did not start")
        self.port = int(line[1])
        self.url = f"http://{HOST}:{self.port}/hooks/paybox"

    def _get(self, path: str) -> bytes:
        import urllib.request

        with urllib.request.urlopen(f"http://{HOST}:{self.port}{path}", timeout=30) as response:  # noqa: S310
            return response.read()

    def count(self) -> int:
        return int(self._get("/count"))

    def records(self) -> list[tuple]:
        return [tuple(r) for r in json.loads(self._get("/records"))]

    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen, wait: float = 20.0) -> None:
    """SIGTERM (a warm shutdown for RQ), then SIGKILL to its process group after ``wait`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(wait)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # started with start_new_session: its group is its pid
        process.wait()


# --- Database --------------------------------------------------------------------------------------------------------


def app_config(url: str, redis_url: str) -> dict:
    """The producers' app: what a web worker runs, with jobs going to RQ on the bench's Redis DB."""
    return {"SQLALCHEMY_DATABASE_URI": url.replace("postgresql://", "postgresql+psycopg://"),
            "SQLALCHEMY_ENGINE_OPTIONS": {}, "SECRET_KEY": "bench-webhooks", "REDIS_URL": redis_url,
            "JOBS_MODE": "rq", "WEBHOOKS_ALLOW_PRIVATE": True}


def seed(url: str, redis_url: str, positions: int, receiver_url: str) -> None:
    """Migrate, the Comune and its pagoPA ids, ``positions`` published positions (set-based SQL, as
    ``bench/receipts.py``), and one subscriber for every event at the receiver (loopback explicitly allowed)."""
    from bench.receipts import migrate_and_seed
    from portal import create_app
    from portal.extensions import db
    from portal.ledger.models import Creditor
    from portal.webhooks import services

    migrate_and_seed(url, positions)
    app = create_app(app_config(url, redis_url))
    with app.app_context():
        creditor = db.session.scalar(db.select(Creditor))
        services.add_subscriber(db.session, creditor, url=receiver_url, secret=SECRET, allow_private=True)
        db.session.commit()
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


def options_of(url: str) -> list[tuple[int, str, str, int]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT position_id, iuv, notice_number, amount_cents FROM payment_options "
                            "ORDER BY id").fetchall()


def database_figures(url: str) -> dict:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status, attempts, count(*) FROM webhook_deliveries GROUP BY 1, 2 ORDER BY 1, 2")
        by_status = {f"{status} after {attempts} attempt(s)": n for status, attempts, n in rows}
        jobs = conn.execute("SELECT count(*), count(*) FILTER (WHERE status = 'done'), sum(attempts) "
                            "FROM jobs WHERE kind = 'deliver_webhooks'").fetchone()
        return {"deliveries": by_status,
                "paid positions": conn.execute("SELECT count(*) FROM positions WHERE status = 'paid'").fetchone()[0],
                "delivery job rows": jobs[0], "done": jobs[1], "runs": jobs[2]}


# --- Producers: payments through the ledger --------------------------------------------------------------------------


def receipt(n: int, position_id: int, iuv: str, nav: str, amount: int):
    from portal.ledger.payments import ReceiptData, ReceiptTransfer

    return ReceiptData(
        receipt_id=f"benchwh{n:010d}{position_id:010d}", notice_number=nav, iuv=iuv, org_fiscal_code=CF_COMUNE,
        outcome="OK", amount_cents=amount, description="TARI", company_name="Comune di Prova", fee_cents=100,
        psp_id="BCITITMM", psp_name="Banca di Prova", channel_id="00799960158_01", channel_description="app",
        payment_method="PO", payment_at=datetime.now(UTC).replace(microsecond=0), application_date=date.today(),
        debtor_fiscal_code=CF_DEBTOR, debtor_name="Mario Rossi",
        transfers=(ReceiptTransfer(index=1, amount_cents=amount, fiscal_code=CF_COMUNE, iban=IBAN, remittance="TARI",
                                   category="9/0101101IM/"),))


def produce(url: str, redis_url: str, work: list[tuple[int, tuple]], start: float, rate: float, out: str) -> None:
    """Pay each ``(k, option)`` at ``start + k / rate`` (as fast as possible when ``rate`` is 0), one transaction
    each; write ``(position id, scheduled, committed)`` per payment to ``out``."""
    import logging

    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from portal import create_app
    from portal.extensions import db
    from portal.ledger.models import Creditor
    from portal.ledger.payments import CreditorRef

    committed = [0.0]
    # First in line: the commit is durable here, before the job layer enqueues the delivery job.
    sa.event.listen(Session, "after_commit", lambda session: committed.__setitem__(0, time.time()), insert=True)
    app = create_app(app_config(url, redis_url))
    logging.getLogger().setLevel(logging.WARNING)
    rows = []
    with app.app_context():
        creditor = CreditorRef.of(db.session.scalar(sa.select(Creditor)))
        db.session.remove()
        while time.time() < start:
            time.sleep(min(0.05, max(start - time.time(), 0)))
        for k, option in work:
            due = start + k / rate if rate else time.time()
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            pay(db.session, creditor, k, option)
            rows.append((option[0], due, committed[0]))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(out).write_text(json.dumps({"rows": rows, "cpu": usage.ru_utime + usage.ru_stime}))


def pay(session, creditor, k: int, option: tuple) -> None:
    """One payment as the node's paSendRTV2 makes it: the receipt's XML, record_receipt, commit."""
    from portal.ledger.payments import record_receipt
    from portal.pagopa import soap

    position_id, iuv, nav, amount = option
    data = receipt(k, position_id, iuv, nav, amount)
    raw = soap.build_send_rt_request(data, id_pa=CF_COMUNE, id_broker_pa=BROKER, id_station=STATION)
    record_receipt(session, creditor, data, source="paSendRTV2", raw_xml=raw.decode())
    session.commit()
    session.remove()


def profile_payments(args, options: list[tuple]) -> None:
    """``--profile``: pay ``options`` here (the first 20 to warm up), counting statements and CPU, then cProfile."""
    import collections
    import cProfile
    import logging
    import pstats

    import sqlalchemy as sa

    from portal import create_app
    from portal.extensions import db
    from portal.ledger.models import Creditor
    from portal.ledger.payments import CreditorRef

    app = create_app(app_config(args.database_url, args.redis_url))
    logging.getLogger().setLevel(logging.WARNING)
    statements: collections.Counter = collections.Counter()
    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute",
                        lambda _c, _cur, sql, *_: statements.update([" ".join(sql.split()[:3])]))
        creditor = CreditorRef.of(db.session.scalar(sa.select(Creditor)))
        db.session.remove()
        warm, measured = options[:20], options[20:]
        for k, option in enumerate(warm):
            pay(db.session, creditor, k, option)
        half = len(measured) // 2
        statements.clear()
        cpu = time.process_time()
        for k, option in enumerate(measured[:half], start=len(warm)):
            pay(db.session, creditor, k, option)
        cpu = time.process_time() - cpu
        log(f"{half} payments: CPU {cpu * 1000 / half:.2f} ms per payment (not profiled), "
            f"{sum(statements.values()) / half:.1f} statements per payment; load {load_average()}")
        for sql, n in statements.most_common():
            log(f"  {n / half:5.2f}  {sql}")
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for k, option in enumerate(measured[half:], start=len(warm) + half):
            pay(db.session, creditor, k, option)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        db.session.remove()


def run_producers(args, options: list[tuple], first: int, count: int, rate: float, tmp: Path, tag: str
                  ) -> tuple[list[tuple], float]:
    """Pay ``options[first:first + count]`` from ``--producers`` processes; the payments and their CPU seconds."""
    context = multiprocessing.get_context("spawn")
    start = time.time() + 3.0  # every producer has imported the app by then
    processes, outs = [], []
    for p in range(args.producers):
        work = [(k, options[first + k]) for k in range(p, count, args.producers)]
        out = str(tmp / f"producer-{tag}-{p}.json")
        process = context.Process(target=produce, args=(args.database_url, args.redis_url, work, start, rate, out))
        process.start()
        processes.append(process)
        outs.append(out)
    for process in processes:
        process.join()
        if process.exitcode:
            raise RuntimeError(f"a producer exited with {process.exitcode}")
    rows, cpu = [], 0.0
    for out in outs:
        data = json.loads(Path(out).read_text())
        rows.extend(tuple(r) for r in data["rows"])
        cpu += data["cpu"]
    return sorted(rows, key=lambda r: r[2]), cpu


# --- Workers and scheduler -------------------------------------------------------------------------------------------


def worker_env(args) -> dict:
    return {
        **os.environ,
        "PAYBOX_ENV": "production",
        "SECRET_KEY": "bench-webhooks-" + "abcdefghijklmnopqrstuvwxyz0123456789",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        # Nothing of pagoPA runs here: the periodic pagoPA jobs fail fast on a closed port, as during an outage.
        "PAGOPA_GPD_URL": "http://127.0.0.1:9/gpd", "PAGOPA_RECEIPTS_URL": "http://127.0.0.1:9/receipts",
        "PAGOPA_CHECKOUT_URL": "http://127.0.0.1:9/checkout", "PAGOPA_FDR_URL": "http://127.0.0.1:9/fdr",
        "PAGOPA_API_KEY": "bench", "PAGOPA_BROKER_ID": BROKER, "PAGOPA_STATION_ID": STATION,
        # The receiver listens on loopback: allowed explicitly (production refuses it by default).
        "WEBHOOKS_ALLOW_PRIVATE": "1",
        "NOTICES_DIR": str(Path(tempfile.gettempdir()) / "bench_webhooks_notices"),
    }


def start_workers(args, env: dict, log_dir: Path, redis) -> list[tuple[str, subprocess.Popen]]:
    """``flask rq worker`` (every queue, RQ's scheduler on: the production command) × ``--workers``, registered."""
    workers = []
    for n in range(args.workers):
        name = f"bench-webhooks-{n}-{os.getpid()}"
        with open(log_dir / f"{name}.log", "wb") as out:
            process = subprocess.Popen(  # noqa: S603 - our own venv's flask, fixed arguments
                [str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi", "rq", "worker", "--name", name],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        workers.append((name, process))
    deadline = time.monotonic() + 60
    while not all(redis.exists(f"rq:worker:{name}") for name, _ in workers):
        for name, process in workers:
            if process.poll() is not None:
                raise RuntimeError(f"worker {name} exited: {(log_dir / f'{name}.log').read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not register in Redis within 60 s")
        time.sleep(0.1)
    return workers


def start_scheduler(env: dict, log_dir: Path) -> subprocess.Popen:
    with open(log_dir / "scheduler.log", "wb") as out:
        return subprocess.Popen(  # noqa: S603
            [str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi", "rq", "scheduler"], cwd=ROOT, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_idle(redis, workers, limit: float = 120.0) -> float:
    """Until every queue is empty and every worker idle (the scheduler's first round of periodic jobs)."""
    from rq import Queue, Worker

    from portal.jobs.registry import QUEUES

    started = time.monotonic()
    quiet_since = None
    while time.monotonic() - started < limit:
        busy = any(len(Queue(q, connection=redis)) for q in QUEUES) or any(
            w.get_state() != "idle" for w in Worker.all(connection=redis))
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.0:
            break
        time.sleep(0.1)
    return time.monotonic() - started


def workers_cpu(workers) -> float:
    """CPU seconds of the workers and of the work horses they waited for (and of any horse running now)."""
    total = 0.0
    for _, process in workers:
        total += process_cpu(process.pid, children=True)
        total += sum(process_cpu(child) for child in proc_children(process.pid))
    return total


# --- Figures ---------------------------------------------------------------------------------------------------------


def wait_for(receiver: Receiver, expected: int, drain: float, since: float) -> None:
    """Until the receiver has at least ``expected`` calls or ``drain`` seconds passed since ``since``."""
    while time.time() - since < drain:
        if receiver.count() >= expected:
            return
        time.sleep(0.2)


def delays(payments: list[tuple], records: list[tuple]) -> dict:
    """Per paid position: the delay to its event's first arrival; duplicates, missing, bad signatures."""
    first: dict[int, float] = {}
    seen: dict[str, int] = {}
    bad = 0
    wanted = {position_id for position_id, _, _ in payments}
    for arrived, event_id, name, position_id, ok in records:
        if position_id not in wanted or name != "position.paid":
            continue
        bad += not ok
        seen[event_id] = seen.get(event_id, 0) + 1
        if position_id not in first or arrived < first[position_id]:
            first[position_id] = arrived
    per = [(committed, first[p] - committed) for p, _, committed in payments if p in first]
    return {"delays": per, "missing": len(wanted) - len(first), "duplicates": sum(n - 1 for n in seen.values()),
            "bad": bad, "last": max(first.values(), default=float("nan"))}


def describe(label: str, payments: list[tuple], result: dict, began: float) -> tuple[float, dict]:
    """Print a phase's figures; its deliveries/s (from ``began``, the first commit: a producer that starts late
    must not count as slow deliveries) and delay percentiles (ms)."""
    values = [d * 1000 for _, d in result["delays"]]
    span = result["last"] - began
    rate = len(values) / span if span > 0 else float("nan")
    figures = {p: percentile(values, p) for p in (50, 95, 99, 100)}
    log(f"{label}: {len(values):,} delivered of {len(payments):,} payments in {span:.2f} s: {rate:.1f} deliveries/s")
    log(f"  delay payment commit → receiver, ms: p50 {figures[50]:.0f}  p95 {figures[95]:.0f}  "
        f"p99 {figures[99]:.0f}  max {figures[100]:.0f}")
    log(f"  missing {result['missing']}  duplicates {result['duplicates']}  bad signatures {result['bad']}")
    if len(payments) > 1:
        slices: dict[int, list[float]] = {}
        for committed, delay in result["delays"]:
            slices.setdefault(int((committed - began) // SLICE), []).append(delay * 1000)
        log(f"  per {SLICE:g} s of payments (commits in the slice, delay p50 / p95 / max ms):")
        for index in sorted(slices):
            part = slices[index]
            log(f"    {index * SLICE:5.0f}-{(index + 1) * SLICE:<4.0f}s {len(part):6d}  {percentile(part, 50):7.0f} "
                f"{percentile(part, 95):7.0f} {max(part):7.0f}")
    return rate, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="payments per second, all producers (default 200)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of payments (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="RQ workers (default 2)")
    parser.add_argument("--producers", type=int, default=2, help="processes making the payments (default 2)")
    parser.add_argument("--warmup", type=int, default=20, help="payments before the measure, not counted")
    parser.add_argument("--backlog", type=int, default=0,
                        help="then pay N more with the workers suspended and time the drain (default 0: skip)")
    parser.add_argument("--drain", type=float, default=90.0,
                        help="seconds to wait for the last deliveries after the last payment (default 90: more "
                             "than the delivery job's period, so a lost wake-up shows as a delay, not as missing)")
    parser.add_argument("--no-scheduler", action="store_true", help="do not run `flask rq scheduler`")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS),
                        help=f"a Redis DB of its own, flushed (default {DEFAULT_REDIS})")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="only profile N payments in this process (statements, CPU, cProfile), no workers")
    args = parser.parse_args()
    if min(args.rate, args.duration) <= 0 or min(args.workers, args.producers) < 1:
        parser.error("--rate, --duration, --workers and --producers must be positive")

    from redis import Redis

    redis = Redis.from_url(args.redis_url)
    if int(redis.connection_pool.connection_kwargs.get("db") or 0) == 0:
        parser.error("use a Redis DB of its own, not 0: it is flushed")
    redis.ping()
    redis.flushdb()
    if args.profile:
        recreate_database(args.database_url)
        seed(args.database_url, args.redis_url, args.profile, "http://127.0.0.1:9/hooks/paybox")
        try:
            profile_payments(args, options_of(args.database_url))
        finally:
            redis.flushdb()
            if not args.keep:
                drop_database(args.database_url)
        return
    measured = int(args.rate * args.duration)
    total = args.warmup + measured + args.backlog
    tmp = Path(tempfile.mkdtemp(prefix="bench_webhooks_"))
    log(f"webhooks bench: {measured:,} payments at {args.rate:g}/s from {args.producers} producer(s), "
        f"{args.workers} worker(s), backlog {args.backlog:,}; {os.cpu_count()} CPUs, load {load_average()}")
    receiver = Receiver(SECRET)
    workers: list = []
    scheduler = None
    try:
        step = time.perf_counter()
        recreate_database(args.database_url)
        seed(args.database_url, args.redis_url, total, receiver.url)
        options = options_of(args.database_url)
        log(f"seeded (not measured, {time.perf_counter() - step:.1f} s): {total:,} published positions, "
            f"subscriber {receiver.url}; logs in {tmp}")
        env = worker_env(args)
        workers = start_workers(args, env, tmp, redis)
        if not args.no_scheduler:
            scheduler = start_scheduler(env, tmp)
        time.sleep(1.5)
        log(f"workers registered; first round of periodic jobs done after {wait_idle(redis, workers):.1f} s")
        if args.warmup:
            warm, _ = run_producers(args, options, 0, args.warmup, 0, tmp, "warmup")
            wait_for(receiver, args.warmup, 30, time.time())
            log(f"warm-up: {args.warmup} payments, {receiver.count()} received")
        wait_idle(redis, workers, limit=30)

        cpu_before = {"workers": workers_cpu(workers), "receiver": receiver.cpu(), "machine": machine_cpu()[0]}
        load_before = load_average()
        received_before = receiver.count()
        payments, producers_cpu = run_producers(args, options, args.warmup, measured, args.rate, tmp, "steady")
        ended = time.time()
        wait_for(receiver, received_before + measured, args.drain, ended)
        cpu_after = {"workers": workers_cpu(workers), "receiver": receiver.cpu(), "machine": machine_cpu()[0]}
        load_after = load_average()
        began = min(c for _, _, c in payments)  # the first commit, not the scheduled start
        span = max(c for _, _, c in payments) - min(c for _, _, c in payments)
        log(f"payments: {len(payments):,} in {span:.2f} s = {len(payments) / span:.1f}/s (asked {args.rate:g}/s); "
            f"commit later than scheduled: p50 {percentile([(c - d) * 1000 for _, d, c in payments], 50):.0f} ms, "
            f"p95 {percentile([(c - d) * 1000 for _, d, c in payments], 95):.0f} ms")
        result = delays(payments, receiver.records())
        rate, figures = describe("steady", payments, result, began)
        delivered = max(len(result["delays"]), 1)
        log(f"  CPU ms per delivery: workers + horses "
            f"{(cpu_after['workers'] - cpu_before['workers']) * 1000 / delivered:.2f}, receiver "
            f"{(cpu_after['receiver'] - cpu_before['receiver']) * 1000 / delivered:.2f}, producers (payments) "
            f"{producers_cpu * 1000 / delivered:.2f}, whole machine "
            f"{(cpu_after['machine'] - cpu_before['machine']) * 1000 / delivered:.2f}; "
            f"load {load_before} → {load_after}")

        if args.backlog:
            from rq.command import send_shutdown_command  # noqa: F401 - rq is there
            from rq.suspension import resume, suspend

            suspend(redis)
            wait_idle(redis, workers, limit=60)  # a running delivery job finishes its batch
            received_before = receiver.count()
            backlog, _ = run_producers(args, options, args.warmup + measured, args.backlog, 0, tmp, "backlog")
            log(f"backlog: {len(backlog):,} payments with the workers suspended, {receiver.count() - received_before} "
                "delivered meanwhile")
            resumed = time.time()
            resume(redis)
            wait_for(receiver, received_before + args.backlog, args.drain, resumed)
            drained = delays(backlog, receiver.records())
            span = drained["last"] - resumed
            log(f"backlog drained: {len(drained['delays']):,} in {span:.2f} s after the resume = "
                f"{len(drained['delays']) / span:.1f} deliveries/s; missing {drained['missing']}, duplicates "
                f"{drained['duplicates']}, bad signatures {drained['bad']}")

        figures_db = database_figures(args.database_url)
        log(f"database: {figures_db}")
        log(f"webhooks deliveries/s={rate:.0f} p50-ms={figures[50]:.0f} p95-ms={figures[95]:.0f} "
            f"missing={result['missing']} duplicates={result['duplicates']}")
    finally:
        for _, process in workers:
            with contextlib.suppress(Exception):
                stop_process(process)
        if scheduler is not None:
            stop_process(scheduler)
        receiver.stop()
        with contextlib.suppress(Exception):
            redis.flushdb()
        if args.keep:
            log(f"kept: database {args.database_url}, logs under {tmp}")
        else:
            drop_database(args.database_url)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-receiver":
        serve_receiver(sys.argv[2])
    else:
        main()
