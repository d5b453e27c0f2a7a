"""Benchmark of publishing positions on pagoPA: GPD v2 bulk calls (≤100 positions each) against one call per position.

Starts the pagoPA sandbox on a free local port (real HTTP, requests validated against the official OpenAPI files,
its own SQLite file in a temporary directory), creates positions in a PostgreSQL database of its own with
``ledger.create_position`` (as an officer or the API would), then publishes them with the very code the sync jobs
run: :func:`portal.ledger.sync_state.sweep` + :func:`portal.pagopa.sync.publish_batch` (bulk), and
:func:`portal.pagopa.sync.sync_position` (one by one), through the real :class:`~portal.pagopa.gpd.GPDClient`.

    .venv/bin/python bench/publish.py [--positions 5000] [--single 1000] [--threads 1]
                                      [--database-url postgresql://postgres@127.0.0.1:5432/paybox_bench_publish]

``--threads N`` runs N jobs at a time (each with its own session and connection), as N RQ workers would.
The database is dropped and re-created at each run. Figures are printed, never asserted.
"""

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import psycopg
import requests
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # noqa: E402

from portal import create_app, demo  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.ledger import services as ledger  # noqa: E402
from portal.ledger import sync_state  # noqa: E402
from portal.ledger.inputs import DebtorInput, OptionInput, PositionInput  # noqa: E402
from portal.ledger.models import Position, Service  # noqa: E402
from portal.ledger.status import PositionStatus  # noqa: E402
from portal.pagopa import sync  # noqa: E402
from portal.pagopa.gpd import GPDClient  # noqa: E402
from portal.settings import services as settings_svc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/paybox_bench_publish"
API_KEY = "bench-key"
CF_COMUNE = "80015010723"
IBAN = "IT60X0542811101000000123456"
#: Valid codici fiscali to spread the positions over (debtor rows are shared, as for a real Comune).
DEBTORS = tuple(demo.person_fiscal_code(surname, name, date(1960 + n, n % 12 + 1, n % 28 + 1), n % 2 == 1, "H501")
                for n, (surname, name) in enumerate([("Rossi", "Mario"), ("Bianchi", "Giulia"), ("Verdi", "Luca"),
                                                     ("Ferrari", "Anna"), ("Russo", "Paolo"), ("Costa", "Sara")]))


def log(message: str) -> None:
    print(message, flush=True)


def ensure_database(url: str) -> None:
    server, name = url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def start_sandbox(directory: Path) -> tuple[str, subprocess.Popen]:
    """The sandbox in its own process (its request validation must not share our interpreter lock)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, SANDBOX_DATABASE=str(directory / "sandbox.sqlite3"), SANDBOX_API_KEY=API_KEY,
               SANDBOX_DELIVERY_WORKER="false", PAYBOX_ENV="development")
    process = subprocess.Popen(  # noqa: S603 - our own venv's flask, fixed arguments
        [str(ROOT / ".venv" / "bin" / "flask"), "--app", "portal.pagopa.sandbox", "run", "--port", str(port),
         "--no-reload", "--no-debugger"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/sandbox/state", timeout=1).raise_for_status()
            return url, process
        except requests.RequestException:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the sandbox did not start")


class HttpClock:
    """Adds up the time spent waiting for pagoPA, to tell our own cost from the sandbox's."""

    def __init__(self):
        self.seconds = 0.0
        self.lock = threading.Lock()

    def wrap(self, client: GPDClient) -> GPDClient:
        request = client.http.request

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return request(*args, **kwargs)
            finally:
                with self.lock:
                    self.seconds += time.perf_counter() - started

        client.http.request = timed
        return client


def make_app(url: str, gpd_url: str, threads: int):
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": url.replace("postgresql://", "postgresql+psycopg://"),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": max(threads, 5) + 2},
        "SECRET_KEY": "bench",
        "PAGOPA_GPD_URL": gpd_url,
        "PAGOPA_API_KEY": API_KEY,
        "PAGOPA_TIMEOUT_SECONDS": 60,
        "JOBS_MODE": "manual",  # nothing runs behind our back: the bench calls the sync functions itself
    })
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return app


def setup(app) -> None:
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()
        creditor = settings_svc.create_creditor(db.session, fiscal_code=CF_COMUNE, name="Comune di Prova",
                                          segregation_code="01")
        account = settings_svc.add_account(db.session, creditor, iban=IBAN, label="Tesoreria")
        db.session.add(Service(creditor=creditor, code="TARI", name="TARI", taxonomy_code="9/0101101IM/",
                               account=account))
        db.session.commit()


def create_positions(app, count: int, tag: str) -> list[int]:
    """Create ``count`` positions (single payment + 2 installments, as a TARI bill) without enqueuing jobs."""
    ids = []
    with app.app_context():
        creditor_service = db.session.scalars(sa.select(Service)).one()
        creditor = creditor_service.creditor
        due = date.today() + timedelta(days=60)
        with db.session.no_autoflush:
            for n in range(count):
                data = PositionInput(
                    service_id=creditor_service.id,
                    debtor=DebtorInput(fiscal_code=DEBTORS[n % len(DEBTORS)], name="Contribuente di prova",
                                       street="Via Roma", civic_number=str(n % 200 + 1), postal_code="00100",
                                       city="Roma", province="RM"),
                    subject=f"TARI {due.year} - {tag} {n}",
                    single=OptionInput(amount_cents=30000 + n, due_date=due),
                    installments=[OptionInput(amount_cents=15000 + n, due_date=due),
                                  OptionInput(amount_cents=15000, due_date=due + timedelta(days=90))],
                )
                position, _ = ledger.create_position(db.session, creditor, data, actor="bench", enqueue_sync=False)
                ids.append(position.id)
                if n % 500 == 499:
                    db.session.commit()
        db.session.commit()
    return ids


def run_jobs(app, jobs: list, threads: int, clock: HttpClock) -> list[float]:
    """Run ``job(session, client)`` callables, each in its own app context, session and commit; their durations."""
    durations: list[float] = []
    lock = threading.Lock()

    def run(job):
        with app.app_context():
            client = clock.wrap(GPDClient.from_config(app.config))
            started = time.perf_counter()
            job(db.session, client)
            db.session.commit()
            elapsed = time.perf_counter() - started
            db.session.remove()
        with lock:
            durations.append(elapsed)

    if threads <= 1:
        for job in jobs:
            run(job)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(run, jobs))
    return durations


def published(app, ids: list[int]) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Position).where(
            Position.id.in_(ids), Position.status == PositionStatus.PUBLISHED, Position.sync_pending.is_(False)))


def bench_bulk(app, ids: list[int], threads: int) -> dict:
    with app.app_context():
        started = time.perf_counter()
        result = sync_state.sweep(db.session, limit=len(ids) + 10, schedule=False)
        db.session.commit()
        sweep_seconds = time.perf_counter() - started
    jobs = [lambda session, client, batch=batch: sync.publish_batch(session, batch, client) for batch in result.batches]
    clock = HttpClock()
    started = time.perf_counter()
    durations = run_jobs(app, jobs, threads, clock)
    elapsed = time.perf_counter() - started
    return {"mode": f"bulk v2 (100 per call), {threads} worker(s)", "positions": published(app, ids),
            "seconds": elapsed + sweep_seconds, "calls": len(result.batches), "per_call": durations,
            "http": clock.seconds, "note": f"sweep {sweep_seconds * 1000:.0f} ms"}


def bench_single(app, ids: list[int], threads: int) -> dict:
    jobs = [lambda session, client, position_id=position_id: sync.sync_position(session, position_id, client)
            for position_id in ids]
    clock = HttpClock()
    started = time.perf_counter()
    durations = run_jobs(app, jobs, threads, clock)
    elapsed = time.perf_counter() - started
    return {"mode": f"one by one (v1), {threads} worker(s)", "positions": published(app, ids), "seconds": elapsed,
            "calls": len(ids), "per_call": durations, "http": clock.seconds, "note": ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=5000, help="positions published in bulk")
    parser.add_argument("--single", type=int, default=1000, help="positions published one by one")
    parser.add_argument("--threads", type=int, default=1, help="jobs running at the same time")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()

    ensure_database(args.database_url)
    with tempfile.TemporaryDirectory() as tmp:
        sandbox, server = start_sandbox(Path(tmp))
        app = make_app(args.database_url, f"{sandbox}/gpd/debt-positions-service", args.threads)
        setup(app)
        log(f"sandbox at {sandbox}; database {args.database_url.rsplit('/', 1)[1]}")

        started = time.perf_counter()
        bulk_ids = create_positions(app, args.positions, "bulk")
        log(f"created {len(bulk_ids)} positions (3 options each) in {time.perf_counter() - started:.1f} s")
        rows = [bench_bulk(app, bulk_ids, args.threads)]
        log(f"bulk: {rows[-1]['positions']} published")
        if args.single:
            # Created only now, so that the bulk sweep above could not take them.
            single_ids = create_positions(app, args.single, "single")
            rows.append(bench_single(app, single_ids, args.threads))
            log(f"one by one: {rows[-1]['positions']} published")
        state = requests.get(f"{sandbox}/sandbox/state", timeout=30).json()
        server.terminate()
        server.wait(timeout=10)

    log("")
    log(f"{'mode':<38} {'published':>9} {'seconds':>8} {'pos/s':>8} {'calls':>6} {'median job ms':>14} "
        f"{'Pay Box ms/pos':>15}  note")
    for row in rows:
        median = statistics.median(row["per_call"]) * 1000 if row["per_call"] else 0.0
        rate = row["positions"] / row["seconds"] if row["seconds"] else 0.0
        # Time in the jobs minus time waiting for the sandbox: what our side costs per position.
        own = (sum(row["per_call"]) - row["http"]) * 1000 / max(row["positions"], 1)
        log(f"{row['mode']:<38} {row['positions']:>9} {row['seconds']:>8.1f} {rate:>8.1f} {row['calls']:>6} "
            f"{median:>14.1f} {own:>15.2f}  {row['note']}")
    if len(rows) == 2 and rows[1]["positions"] and rows[0]["seconds"]:
        speedup = (rows[0]["positions"] / rows[0]["seconds"]) / (rows[1]["positions"] / rows[1]["seconds"])
        log(f"bulk is {speedup:.1f}x faster per position")
    log(f"sandbox holds {state['positions']} positions: {state['positions_by_status']}")


if __name__ == "__main__":
    main()
