"""Soak and fault test, run by hand and bounded in time: the whole installation on this machine under a steady load
while a worker is killed, Redis restarted and PostgreSQL restarted, then checks that nothing was lost or doubled.

It starts everything itself, private to the run (never the machine's shared servers, which it restarts):

- a PostgreSQL cluster of its own (``initdb`` in a temporary directory, run as the ``postgres`` user when started
  as root) and a Redis of its own (append-only file on, as a production Redis should be), on free ports;
- the pagoPA sandbox; Pay Box under gunicorn with ``gunicorn.conf.py`` (2 workers); ``--workers`` RQ workers
  (default 3); one ``flask rq scheduler``.

Load, for ``--duration`` seconds: paSendRTV2 receipts at ``--rate``/s (each for a distinct option; a call that
gets no answer or a 5xx is sent again two seconds later, as the node does), an officer listing positions every
half second, a new position every second through the REST API (``POST /api/v1/positions`` with an external id, sent
again when it fails; its sync job publishes it on the sandbox), and one bill run.
Faults at 30 %, 50 % and 70 % of the time: ``kill -9`` of an RQ worker and its work horse (restarted 2 s later, as
systemd would), a Redis restart, a PostgreSQL restart (``pg_ctl restart -m fast``).

Every 10 s it prints per kind of request: calls, errors and p95; at the end it drains (re-sends unanswered
receipts, waits for the sync backlog and the bill run) and checks: every acknowledged receipt stored exactly once
and no IUV paid twice, every created position on the sandbox, the bill run done. Exit status 1 when a check fails.

``--scaling`` then measures bill-run throughput (notices per second, no other load) with 1 and with 3 workers and
prints the ratio.

    .venv/bin/python bench/soak.py [--duration 600] [--rate 20] [--workers 3] [--positions N]
                                   [--chunk-size 200] [--scaling] [--keep]

Not covered: the soak does not vary the number of gunicorn workers.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import log  # noqa: E402
from bench.receipts import BROKER, CF_COMUNE, CF_DEBTOR, IBAN, STATION, migrate_and_seed  # noqa: E402
from portal.ledger.payments import ReceiptData, ReceiptTransfer  # noqa: E402
from portal.pagopa import soap  # noqa: E402

HOST = "127.0.0.1"
API_KEY = "soak-key"
PASSWORD = "soak-password-1"
PG_BIN = Path("/usr/lib/postgresql") / (sorted(os.listdir("/usr/lib/postgresql"))[-1]
                                        if os.path.isdir("/usr/lib/postgresql") else "15") / "bin"
VENV = ROOT / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for(what: str, probe, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(Exception):
            if probe():
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s")


# --- Private PostgreSQL and Redis -----------------------------------------------------------------------------------


class Postgres:
    """A throw-away PostgreSQL cluster (trust authentication on loopback)."""

    def __init__(self, base: Path):
        self.dir = base / "pg"
        self.port = free_port()
        self.url = f"postgresql://postgres@{HOST}:{self.port}/paybox_ops_soak"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self.as_postgres, *args], check=check, stdout=subprocess.DEVNULL)  # noqa: S603

    def start(self) -> None:
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
            if self.as_postgres:
                shutil.chown(self.dir, "postgres", "postgres")
                shutil.chown(self.dir.parent, "postgres", "postgres")
            self._run(str(PG_BIN / "initdb"), "-D", str(self.dir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.dir), "-l", str(self.dir / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses={HOST} -c max_connections=200", "start")
        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'paybox_ops_soak'").fetchone():
                conn.execute('CREATE DATABASE "paybox_ops_soak"')

    def restart(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.dir), "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.dir), "-m", "fast", "-w", "stop", check=False)


class Redis:
    """A private redis-server with its append-only file, so a restart keeps the queues."""

    def __init__(self, base: Path):
        self.dir = base / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--dir", str(self.dir), "--save", "",  # noqa: S607
             "--appendonly", "yes", "--appendfsync", "everysec"], stdout=subprocess.DEVNULL)
        wait_for("redis", lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"],  # noqa: S603,S607
                                                 capture_output=True, text=True).stdout.strip() == "PONG", 20)

    def restart(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True)  # noqa: S603,S607
        self.process.wait(20)
        self.start()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


# --- Pay Box processes ----------------------------------------------------------------------------------------------


class Installation:
    """The sandbox, gunicorn, the RQ workers and the scheduler, with the environment they share."""

    def __init__(self, base: Path, pg: Postgres, redis: Redis, *, workers: int, chunk_size: int):
        self.base = base
        self.sandbox_port = free_port()
        self.web_port = free_port()
        self.sandbox = f"http://{HOST}:{self.sandbox_port}"
        self.web = f"http://{HOST}:{self.web_port}"
        self.env = {
            **os.environ, "PAYBOX_ENV": "development", "SECRET_KEY": "soak-" + "x1y2z3" * 8,
            "DATABASE_URL": pg.url, "REDIS_URL": redis.url, "PAYBOX_JOBS_MODE": "rq",
            "PAGOPA_GPD_URL": f"{self.sandbox}/gpd/debt-positions-service", "PAGOPA_API_KEY": API_KEY,
            "PAGOPA_BROKER_ID": BROKER, "PAGOPA_STATION_ID": STATION,
            "NOTICES_DIR": str(base / "notices"), "NOTICES_CHUNK_SIZE": str(chunk_size),
            "PROMETHEUS_MULTIPROC_DIR": str(base / "metrics"), "WEB_CONCURRENCY": "2",
            "PAYBOX_PUBLIC_URL": self.web,
        }
        self.logs = open(base / "processes.log", "ab")  # noqa: SIM115 - kept open for the processes' lifetime
        self.workers: dict[int, subprocess.Popen] = {}
        self.worker_count = workers
        self.others: list[subprocess.Popen] = []

    def _spawn(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(list(args), cwd=ROOT, env=env or self.env, stdout=self.logs,  # noqa: S603
                                stderr=subprocess.STDOUT, start_new_session=True)

    def start(self) -> None:
        sandbox_env = {**os.environ, "SANDBOX_DATABASE": str(self.base / "sandbox.db"), "SANDBOX_API_KEY": API_KEY,
                       "SANDBOX_DELIVERY_WORKER": "0", "SANDBOX_PUBLIC_URL": self.sandbox}
        self.others.append(self._spawn(str(VENV / "flask"), "--app", "portal.pagopa.sandbox", "run", "--host", HOST,
                                       "--port", str(self.sandbox_port), env=sandbox_env))
        self.others.append(self._spawn(str(VENV / "gunicorn"), "-c", "gunicorn.conf.py", "-b",
                                       f"{HOST}:{self.web_port}"))
        self.others.append(self._spawn(str(VENV / "flask"), "--app", "wsgi", "rq", "scheduler"))
        for number in range(1, self.worker_count + 1):
            self.start_worker(number)
        wait_for("sandbox", lambda: requests.get(f"{self.sandbox}/sandbox/state", timeout=2).ok)
        wait_for("gunicorn", lambda: requests.get(f"{self.web}/healthz", timeout=2).ok)

    def start_worker(self, number: int) -> None:
        self.workers[number] = self._spawn(str(VENV / "flask"), "--app", "wsgi", "rq", "worker", "--name",
                                           f"soak-{number}-{time.monotonic_ns()}")

    def kill_worker(self, number: int) -> None:
        """``kill -9`` of the worker and of its work horse (its whole process group and session)."""
        process = self.workers[number]
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        for process in [*self.workers.values(), *self.others]:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.workers.values(), *self.others]:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        self.logs.close()


# --- Load -----------------------------------------------------------------------------------------------------------


class Stats:
    """Calls per kind: latencies and errors, per 10-second window and in total."""

    def __init__(self):
        self.lock = threading.Lock()
        self.window: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.total: dict[str, list[float]] = defaultdict(list)
        self.total_errors: dict[str, int] = defaultdict(int)

    def add(self, kind: str, seconds: float, ok: bool) -> None:
        with self.lock:
            self.window[kind].append(seconds)
            self.total[kind].append(seconds)
            if not ok:
                self.errors[kind] += 1
                self.total_errors[kind] += 1

    def flush(self, elapsed: float) -> str:
        with self.lock:
            parts = [f"{kind} {len(v)} ({self.errors[kind]} err) p95 {p95(v) * 1000:.0f} ms"
                     for kind, v in sorted(self.window.items())]
            self.window.clear()
            self.errors.clear()
        return f"[{elapsed:5.0f} s] " + "; ".join(parts)


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def receipt(row: tuple[str, str, int], number: int) -> tuple[str, bytes]:
    iuv, nav, amount = row
    receipt_id = f"soak{number:010d}{os.getpid():06d}"
    data = ReceiptData(
        receipt_id=receipt_id, notice_number=nav, iuv=iuv, org_fiscal_code=CF_COMUNE, outcome="OK",
        amount_cents=amount, description="TARI", company_name="Comune di Prova", fee_cents=100, psp_id="BCITITMM",
        psp_name="Banca di Prova", channel_id="00799960158_01", channel_description="app", payment_method="PO",
        payment_at=datetime.now(UTC).replace(microsecond=0), application_date=date.today(),
        debtor_fiscal_code=CF_DEBTOR, debtor_name="Mario Rossi",
        transfers=(ReceiptTransfer(index=1, amount_cents=amount, fiscal_code=CF_COMUNE, iban=IBAN, remittance="TARI",
                                   category="9/0101101IM/"),))
    return receipt_id, soap.build_send_rt_request(data, id_pa=CF_COMUNE, id_broker_pa=BROKER, id_station=STATION)


class Node:
    """Plays the pagoPA node: sends each receipt until it gets an answer (OK, or KO duplicate), retrying after 2 s."""

    def __init__(self, web: str, stats: Stats):
        self.url = f"{web}/pagopa/paForNode"
        self.stats = stats
        self.acked: dict[str, str] = {}  # receipt id -> "OK" | "PAA_RECEIPT_DUPLICATA"
        self.pending: list[tuple[float, str, bytes]] = []
        self.lock = threading.Lock()
        self.session = requests.Session()

    def send(self, receipt_id: str, payload: bytes) -> None:
        start = time.perf_counter()
        outcome = None
        try:
            response = self.session.post(self.url, data=payload, timeout=10, headers={
                "SOAPAction": "paSendRTV2", "Content-Type": "text/xml; charset=utf-8"})
            if response.status_code == 200 and b"<outcome>OK</outcome>" in response.content:
                outcome = "OK"
            elif response.status_code == 200 and soap.PAA_RECEIPT_DUPLICATA.encode() in response.content:
                outcome = soap.PAA_RECEIPT_DUPLICATA
        except requests.RequestException:
            pass
        self.stats.add("receipt", time.perf_counter() - start, outcome is not None)
        with self.lock:
            if outcome:
                self.acked[receipt_id] = outcome
            else:
                self.pending.append((time.monotonic() + 2, receipt_id, payload))

    def retry_due(self) -> None:
        now = time.monotonic()
        with self.lock:
            due = [item for item in self.pending if item[0] <= now]
            self.pending = [item for item in self.pending if item[0] > now]
        for _, receipt_id, payload in due:
            self.send(receipt_id, payload)


def officer_session(web: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{web}/officer/login", timeout=10).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = session.post(f"{web}/officer/login", data={"username": "soak", "password": PASSWORD,
                                                          "csrf_token": token}, timeout=10, allow_redirects=False)
    if response.status_code != 302:
        raise RuntimeError(f"officer login failed: HTTP {response.status_code}")
    return session


def make_app(pg: Postgres, redis: Redis, install: Installation):
    """A Pay Box app in this process (to create positions and start the bill run through the services)."""
    os.environ.update({key: install.env[key] for key in ("NOTICES_DIR", "NOTICES_CHUNK_SIZE", "PAGOPA_GPD_URL",
                                                         "PAGOPA_API_KEY")})
    from portal import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": pg.url.replace("postgresql://", "postgresql+psycopg://"),
                       "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True}, "REDIS_URL": redis.url,
                       "JOBS_MODE": "rq", "SECRET_KEY": "soak", "JOBS_SCHEDULER": False})


def api_token(app) -> str:
    """A write token for the soak's "municipal system" (as ``flask api token create`` makes one)."""
    from portal.accounts import api_tokens
    from portal.extensions import db
    from portal.ledger.models import Creditor

    with app.app_context():
        issued = api_tokens.create_token(db.session, db.session.scalar(db.select(Creditor)), name="soak",
                                         scope="write")
        db.session.commit()
        db.session.remove()
        return issued.secret


def create_position(web: str, token: str, number: int) -> str | None:
    """One position through the REST API (its sync job publishes it), as a municipal system makes it: a call that
    fails (the database restarting, a 5xx, no answer) is sent again, and the external id makes that safe. Its
    IUPD, or None if it could not be created within a few tries."""
    body = {"service": "TARI", "external_id": f"soak-{number}", "subject": f"Soak {number}",
            "debtor": {"fiscal_code": CF_DEBTOR, "name": "Mario Rossi", "street": "Via Roma", "civic_number": "1",
                       "postal_code": "00100", "city": "Roma", "province": "RM"},
            "single": {"amount_cents": 1000 + number, "due_date": (date.today() + timedelta(days=60)).isoformat()}}
    for attempt in range(4):
        try:
            answer = requests.post(f"{web}/api/v1/positions", json=body, timeout=15,
                                   headers={"Authorization": f"Bearer {token}"})
            if answer.status_code in (200, 201):
                return answer.json()["iupd"]
            log(f"  position {number}: {answer.status_code} (attempt {attempt + 1})")
        except requests.RequestException as exc:
            log(f"  position {number}: {type(exc).__name__} (attempt {attempt + 1})")
        time.sleep(2)
    return None


def start_bill_run(app) -> int:
    from portal.extensions import db
    from portal.ledger import queries
    from portal.ledger.models import Creditor, Service
    from portal.notices.billrun import BillRunSettings, start_bill_run

    with app.app_context():
        creditor = db.session.scalar(db.select(Creditor))
        service = db.session.scalar(db.select(Service))
        run = start_bill_run(db.session, creditor, queries.PositionFilter(service_id=service.id), title="Soak",
                             mode="merged", settings=BillRunSettings.from_config(app.config))
        db.session.commit()
        run_id = run.id
        db.session.remove()
    return run_id


def bill_run_status(url: str, run_id: int) -> tuple[str, int, int]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT status, rendered, total FROM bill_runs WHERE id = %s", (run_id,)).fetchone()


# --- The run --------------------------------------------------------------------------------------------------------


def soak(args, base: Path) -> bool:
    pg, redis = Postgres(base), Redis(base)
    pg.start()
    redis.start()
    log(f"PostgreSQL :{pg.port}, Redis :{redis.port}; seeding {args.positions} published positions")
    migrate_and_seed(pg.url, args.positions)
    with psycopg.connect(pg.url) as conn:
        rows = conn.execute("SELECT iuv, notice_number, amount_cents FROM payment_options ORDER BY id").fetchall()
    install = Installation(base, pg, redis, workers=args.workers, chunk_size=args.chunk_size)
    app = make_app(pg, redis, install)
    with app.app_context():
        from portal.accounts.services import create_user
        from portal.extensions import db
        from portal.ledger.models import Creditor

        create_user(db.session, db.session.scalar(db.select(Creditor)), username="soak", full_name="Soak",
                    password=PASSWORD, role="admin")
        db.session.commit()
        db.session.remove()
    token = api_token(app)
    install.start()
    log(f"Pay Box {install.web} (2 gunicorn workers), {args.workers} RQ workers, scheduler, sandbox "
        f"{install.sandbox}; logs in {base / 'processes.log'}")

    stats = Stats()
    node = Node(install.web, stats)
    officer = officer_session(install.web)
    created: list[str] = []
    stop = threading.Event()
    start = time.monotonic()
    faults = {0.3: "kill a worker", 0.5: "restart Redis", 0.7: "restart PostgreSQL"}
    done_faults: list[str] = []

    def receipts():
        number = 0
        next_at = time.monotonic()
        while not stop.is_set() and number < len(rows):
            receipt_id, payload = receipt(rows[number], number)
            number += 1
            threading.Thread(target=node.send, args=(receipt_id, payload), daemon=True).start()
            node.retry_due()
            next_at += 1 / args.rate
            time.sleep(max(0.0, next_at - time.monotonic()))

    def lists():
        while not stop.is_set():
            began = time.perf_counter()
            try:
                ok = officer.get(f"{install.web}/officer/positions", timeout=15).status_code == 200
            except requests.RequestException:
                ok = False
            stats.add("officer list", time.perf_counter() - began, ok)
            stop.wait(0.5)

    def creations():
        number = 0
        while not stop.is_set():
            began = time.perf_counter()
            iupd = create_position(install.web, token, number)
            stats.add("create", time.perf_counter() - began, iupd is not None)
            if iupd:
                created.append(iupd)
            number += 1
            stop.wait(1.0)

    threads = [threading.Thread(target=target, daemon=True) for target in (receipts, lists, creations)]
    for thread in threads:
        thread.start()
    run_id = start_bill_run(app)
    log(f"bill run {run_id} started")
    last_print = start
    while (elapsed := time.monotonic() - start) < args.duration:
        for share, fault in faults.items():
            if elapsed >= share * args.duration and fault not in done_faults:
                done_faults.append(fault)
                log(f"[{elapsed:5.0f} s] FAULT: {fault}")
                if fault == "kill a worker":
                    install.kill_worker(1)
                    time.sleep(2)
                    install.start_worker(1)
                elif fault == "restart Redis":
                    redis.restart()
                else:
                    pg.restart()
        if time.monotonic() - last_print >= 10:
            last_print = time.monotonic()
            log(stats.flush(elapsed))
        time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join(30)
    log(stats.flush(time.monotonic() - start))

    log("draining: unanswered receipts, the sync backlog, the bill run")
    deadline = time.monotonic() + args.drain
    while time.monotonic() < deadline:
        time.sleep(2)
        node.retry_due()
        with psycopg.connect(pg.url) as conn:
            pending = conn.execute("SELECT count(*) FROM positions WHERE sync_pending").fetchone()[0]
        status = bill_run_status(pg.url, run_id)
        if not node.pending and pending == 0 and status[0] == "done":
            break
    ok = check(pg, install, node, created, run_id, stats, args.duration)
    install.stop()
    redis.stop()
    pg.stop()
    return ok


def check(pg: Postgres, install: Installation, node: Node, created: list[str], run_id: int, stats: Stats,
          load_seconds: float) -> bool:
    failures = []
    with psycopg.connect(pg.url) as conn:
        stored = dict(conn.execute("SELECT receipt_id, count(*) FROM receipts GROUP BY receipt_id").fetchall())
        doubled_iuv = conn.execute("SELECT count(*) FROM (SELECT iuv FROM receipts GROUP BY creditor_id, iuv "
                                   "HAVING count(*) > 1) d").fetchone()[0]
        pending = conn.execute("SELECT count(*) FROM positions WHERE sync_pending").fetchone()[0]
    acked = node.acked
    missing = [r for r in acked if stored.get(r) != 1]
    unacked = len(node.pending)
    log(f"receipts: {len(acked)} acknowledged ({sum(1 for v in acked.values() if v != 'OK')} on a re-send as "
        f"duplicates), {len(stored)} stored, {unacked} never acknowledged")
    if missing:
        failures.append(f"{len(missing)} acknowledged receipts not stored exactly once")
    if doubled_iuv:
        failures.append(f"{doubled_iuv} IUVs paid twice")
    if unacked:
        failures.append(f"{unacked} receipts never acknowledged")
    on_sandbox = 0
    for iupd in created:
        response = requests.get(f"{install.sandbox}/gpd/debt-positions-service/v1/organizations/{CF_COMUNE}/"
                                f"debtpositions/{iupd}", headers={"Ocp-Apim-Subscription-Key": API_KEY}, timeout=10)
        on_sandbox += response.status_code == 200
    log(f"positions: {len(created)} created, {on_sandbox} on the sandbox, {pending} still waiting for pagoPA")
    if on_sandbox != len(created):
        failures.append(f"{len(created) - on_sandbox} created positions never reached the sandbox")
    status, rendered, total = bill_run_status(pg.url, run_id)
    log(f"bill run {run_id}: {status}, {rendered}/{total} notices")
    if status != "done":
        failures.append(f"bill run {status}")
    for kind, values in sorted(stats.total.items()):
        log(f"  {kind:<13} {len(values) / load_seconds:6.1f}/s  p95 {p95(values) * 1000:6.0f} ms  "
            f"errors {stats.total_errors[kind]}")
    for failure in failures:
        log(f"FAILED: {failure}")
    if not failures:
        log("OK: nothing lost, nothing doubled")
    return not failures


def scaling(args, base: Path) -> None:
    """Bill-run throughput with 1 and with 3 workers, nothing else running."""
    figures = {}
    for workers in (1, 3):
        run_base = base / f"scaling-{workers}"
        run_base.mkdir()
        pg, redis = Postgres(run_base), Redis(run_base)
        pg.start()
        redis.start()
        migrate_and_seed(pg.url, args.positions)
        install = Installation(run_base, pg, redis, workers=workers, chunk_size=args.chunk_size)
        app = make_app(pg, redis, install)
        install.start()
        began = time.monotonic()
        run_id = start_bill_run(app)
        status = ("", 0, 0)
        while time.monotonic() - began < args.drain:
            status = bill_run_status(pg.url, run_id)
            if status[0] in ("done", "failed"):
                break
            time.sleep(0.5)
        took = time.monotonic() - began
        figures[workers] = status[1] / took
        log(f"{workers} worker(s): bill run {status[0]}, {status[1]} notices in {took:.1f} s = "
            f"{figures[workers]:.1f} notices/s")
        install.stop()
        redis.stop()
        pg.stop()
        from portal.extensions import db

        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()
    log(f"scaling 1 → 3 workers: x{figures[3] / figures[1]:.2f} (on {os.cpu_count()} cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--rate", type=float, default=20, help="receipts per second")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--positions", type=int, default=None,
                        help="published positions (receipts pay them); default: enough for the whole run")
    parser.add_argument("--chunk-size", type=int, default=200, help="notices per bill-run chunk")
    parser.add_argument("--drain", type=float, default=180, help="seconds to wait for the backlog at the end")
    parser.add_argument("--scaling", action="store_true", help="then bill-run throughput with 1 and 3 workers")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    args = parser.parse_args()
    if args.positions is None:
        # One distinct option per receipt for the whole run (receipts stop when they run out), plus a margin.
        args.positions = int(args.rate * args.duration * 1.1) + 100
    base = Path(tempfile.mkdtemp(prefix="paybox-soak-"))
    os.chmod(base, 0o755)  # noqa: S103 - the postgres user runs its cluster below it
    # A soak stopped with SIGTERM (Ctrl-C is SIGINT already) still stops its servers and removes its directory.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    ok = True
    try:
        ok = soak(args, base)
        if args.scaling:
            scaling(args, base)
    finally:
        if args.keep:
            log(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
