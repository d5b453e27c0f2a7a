"""Benchmark of the receipts endpoint: paSendRTV2 calls at a steady rate against Pay Box under gunicorn.

Creates (drops and re-creates) its own PostgreSQL database, migrates it, inserts one Comune with its pagoPA
station and N published positions (set-based SQL), starts Pay Box under gunicorn (gthread) on a free loopback
port, then sends paSendRTV2 requests from a thread pool at a target rate for a bounded time. A fraction of the
calls re-send a receipt already sent (the node's retries), which must come back as PAA_RECEIPT_DUPLICATA.

    .venv/bin/python bench/receipts.py [--rate 200] [--duration 20] [--workers 4] [--threads 2]
                                       [--client-threads 32] [--duplicates 0.05] [--warmup 0]
                                       [--database-url postgresql://postgres@127.0.0.1:5432/paybox_bench_receipts]

Prints throughput, latency percentiles (service time, and time from the scheduled send, which includes any
queueing in the client) and errors, then what the database holds. Figures only, no assertions. The gunicorn log
(one line per call) is kept in a temporary file whose path is printed.
"""

import argparse
import itertools
import math
import os
import random
import re
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

from bench.common import log, recreate_database  # noqa: E402
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


def options(url: str) -> list[tuple[str, str, int]]:
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


def drive(url: str, payloads: list[bytes], *, rate: float, client_threads: int, grace: float) -> dict:
    """Send ``payloads`` in order, the i-th at ``start + i / rate``, from ``client_threads`` threads."""
    counter = itertools.count()
    start = time.perf_counter() + 0.5
    deadline = start + len(payloads) / rate + grace
    results: list[tuple[str, float, float]] = []
    skipped = [0]
    lock = threading.Lock()

    def worker():
        session = requests.Session()
        headers = {"SOAPAction": "paSendRTV2", "Content-Type": "text/xml; charset=utf-8"}
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
            try:
                response = session.post(url, data=payloads[index], headers=headers, timeout=15)
                kind = classify(response.status_code, response.content)
            except requests.RequestException as exc:
                kind = f"exception {type(exc).__name__}"
            done = time.perf_counter()
            with lock:
                results.append((kind, done - sent, done - scheduled))
        session.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(client_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = max(time.perf_counter() - start, 1e-9)
    return {"results": results, "skipped": skipped[0], "elapsed": elapsed}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


# --- gunicorn ------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_gunicorn(url: str, port: int, workers: int, threads: int, logfile) -> subprocess.Popen:
    env = {
        **os.environ,
        "PAYBOX_ENV": "development",
        "DATABASE_URL": url,
        "SECRET_KEY": "bench-receipts",
        "PAGOPA_BROKER_ID": BROKER,
        "PAGOPA_STATION_ID": STATION,
        # As in production: jobs go to Redis (none are enqueued by receipts), no in-process job threads.
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
    }
    command = [str(ROOT / ".venv" / "bin" / "gunicorn"), "--workers", str(workers), "--worker-class", "gthread",
               "--threads", str(threads), "--bind", f"{HOST}:{port}", "--graceful-timeout", "5", "wsgi:app"]
    # Our own venv binary and fixed arguments: no shell, nothing from outside.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT)  # noqa: S603
    probe = f"http://{HOST}:{port}/pagopa/paForNode"
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see {logfile.name}")
        try:
            requests.get(probe, timeout=1)  # 405: the app answers
            return process
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("gunicorn did not start in 30 s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- Main ----------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="target calls per second (default 200)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (default 4)")
    parser.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker (default 2)")
    parser.add_argument("--client-threads", type=int, default=32, help="sending threads (default 32)")
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of re-sent receipts (default 0.05)")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds allowed past the schedule (default 15)")
    parser.add_argument("--warmup", type=int, default=0,
                        help="receipts sent at the target rate before the measured run and not counted: the "
                             "workers' first calls (database connections, compiled statements) excluded "
                             "(default 0: the cold start is measured)")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.rate <= 0 or args.duration <= 0 or args.rate * args.duration > 1_000_000:
        parser.error("rate and duration must be positive, and at most 1,000,000 calls in all")

    calls = int(args.rate * args.duration)
    log(f"{calls} paSendRTV2 calls at {args.rate:g}/s for {args.duration:g} s, {args.duplicates:.0%} re-sent; "
        f"gunicorn {args.workers} workers x {args.threads} threads (gthread); {os.cpu_count()} CPUs")
    step = time.perf_counter()
    recreate_database(args.database_url)
    migrate_and_seed(args.database_url, calls + args.warmup)
    log(f"database {args.database_url.rsplit('/', 1)[1]}: migrated, {calls} published positions "
        f"({time.perf_counter() - step:.1f} s)")
    rows = options(args.database_url)
    payloads = build_payloads(rows[args.warmup:], calls, args.duplicates, args.seed)
    warmup = build_payloads(rows[:args.warmup], args.warmup, 0.0, args.seed + 1) if args.warmup else []
    log(f"{len(payloads)} requests built ({sum(map(len, payloads)) / len(payloads):.0f} bytes each on average)")

    with tempfile.NamedTemporaryFile("w", prefix="bench_receipts_gunicorn_", suffix=".log", delete=False) as logfile:
        process = start_gunicorn(args.database_url, free_port(), args.workers, args.threads, logfile)
        port = process.args[process.args.index("--bind") + 1].rsplit(":", 1)[1]
        try:
            if warmup:
                drive(f"http://{HOST}:{port}/pagopa/paForNode", warmup, rate=args.rate,
                      client_threads=args.client_threads, grace=args.grace)
                log(f"warm-up: {len(warmup)} receipts sent, not counted")
            run = drive(f"http://{HOST}:{port}/pagopa/paForNode", payloads, rate=args.rate,
                        client_threads=args.client_threads, grace=args.grace)
        finally:
            stop(process)

    results = run["results"]
    kinds: dict[str, int] = {}
    for kind, _, _ in results:
        kinds[kind] = kinds.get(kind, 0) + 1
    service = [r[1] * 1000 for r in results]
    lagged = [r[2] * 1000 for r in results]
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
    unique = len(set(payloads))
    log(f"database: {database_figures(args.database_url)}; distinct receipts sent: {unique}"
        + (f" (+ {len(warmup)} warm-up)" if warmup else ""))
    log(f"gunicorn log: {logfile.name}")


if __name__ == "__main__":
    main()
