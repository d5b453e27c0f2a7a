"""Benchmark of bill runs (bollettazione): notices/s and peak memory with real RQ workers, merged and envelopes.

Creates (drops and re-creates) its own PostgreSQL database, migrates it, and loads N published TARI positions with
set-based COPY (not measured): one Comune, ~0.9 debtor per position with Italian addresses and CAPs (about two thirds
in the Comune, the rest all over Italy, 0.5% abroad, 2% without a complete postal address), 90% single payments and
10% single payment + 3 installments, valid IUVs/NAVs. ``--postal`` gives the Comune a postal account, so every notice
also carries the Poste slip with its Data Matrix (one more block per payable option: more pages).

Then, for each configuration (workers x output mode), it starts the workers as production does -- real
``flask --app wsgi rq worker notices`` subprocesses on their own Redis DB -- waits until they listen, and times one
bill run as an officer starts it: :func:`portal.notices.billrun.start_bill_run` + commit (which enqueues the
``prepare`` job), then polls the ``bill_runs`` row until it is ``done``. Everything the workers do is inside the
time: reading the positions, rendering, the chunk files, the vendor ZIP with its index and data CSVs, and marking
the positions "notice issued". Worker start-up is not: workers run all the time in production (``--burst`` is not
used: with two workers the idle one would exit while the other runs ``prepare``, before the chunk jobs exist).
Between configurations the positions' ``notice_issued_at`` is reset so the next run selects them again.

    .venv/bin/python bench/notices.py [--notices 10000] [--workers 1 2] [--modes merged envelopes]
                                      [--postal] [--compare-sizes [2000]] [--chunk-size 1000] [--keep]
                                      [--quiet-cores 0.25] [--wait-quiet 300]
                                      [--database-url postgresql://postgres@127.0.0.1:5432/paybox_bench_notices]
                                      [--redis-url redis://127.0.0.1:6379/7]

Prints, per run: wall time, notices/s, where the time went (the jobs' own start/finish times: prepare, the span of
the chunk jobs and their summed busy time, finish), pages and package size, and the time projected for 100,000
notices (linear in N: with few chunks per worker the last chunk's tail makes it pessimistic) next to the targets
(3 min merged, 7 min envelopes), and a warning when fewer notices were rendered or skipped than ``start_bill_run``
counted. CPU: the workers' CPU seconds (worker + horses, from /proc) per notice, which does not depend on what else
runs, and the cores used by everything else during the run (PostgreSQL, this script, other users of the machine:
before each run the script waits until they use fewer than ``--quiet-cores``). Memory is peak RSS (MiB):

- ``tree``: ``ru_maxrss`` of each worker when it exits (each is started under GNU ``/usr/bin/time -f %M``, which
  gets it from ``wait4``) -- the largest of the worker process and every work horse it forked and waited for (RQ
  forks one horse per job). Exact; the max over the workers.
- ``main``: the worker process itself (its ``VmHWM`` read just before it is stopped).
- ``prepare`` / ``chunk`` / ``finish``: the horses that ran each kind of job (``VmHWM`` sampled every 50 ms, job
  found from the worker's ``current_job`` in Redis; a peak reached in the last 50 ms of a horse can be missed).
  A horse's RSS includes the pages it still shares with the worker it was forked from.

``--compare-sizes`` also runs every configuration on a smaller run (2,000 notices by default) and prints the peak
RSS of both sizes side by side: "memory flat in the size of the run" means they stay about the same.

The database is dropped, the Redis DB flushed and the temporary directory (notices, worker logs) removed at the end
(``--keep`` keeps the database and the files). Figures only, no assertions; never part of the test suite.
"""

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import TICK, drop_database, log, process_cpu, recreate_database  # noqa: E402
from portal import create_app, demo  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.ledger import queries  # noqa: E402
from portal.ledger.models import Creditor, Service  # noqa: E402
from portal.ledger.notice_numbers import build as build_number  # noqa: E402
from portal.notices import billrun  # noqa: E402
from portal.settings import services as settings_svc  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/paybox_bench_notices"
DEFAULT_REDIS = "redis://127.0.0.1:6379/7"
#: The issue's targets for a 100,000-notice run on the 2-core machine, in seconds.
TARGETS = {"merged": 180.0, "envelopes": 420.0}
PROJECTED = 100_000
MIB = 1024 * 1024
TIME = "/usr/bin/time"  # GNU time: the workers' ru_maxrss

#: Italian places outside the Comune: (city, province, first CAP, last CAP).
ELSEWHERE = (
    ("Roma", "RM", 118, 199), ("Milano", "MI", 20121, 20162), ("Torino", "TO", 10121, 10156),
    ("Napoli", "NA", 80121, 80147), ("Bologna", "BO", 40121, 40141), ("Firenze", "FI", 50121, 50145),
    ("Genova", "GE", 16121, 16167), ("Pavia", "PV", 27100, 27100), ("Vigevano", "PV", 27029, 27029),
    ("Voghera", "PV", 27058, 27058), ("Bergamo", "BG", 24121, 24129), ("Brescia", "BS", 25121, 25136),
    ("Palermo", "PA", 90121, 90151), ("Bari", "BA", 70121, 70132), ("Cagliari", "CA", 9121, 9134),
    ("Trento", "TN", 38121, 38123), ("Bolzano", "BZ", 39100, 39100), ("Aosta", "AO", 11100, 11100),
    ("Sant'Angelo Lodigiano", "LO", 26866, 26866), ("Forlì", "FC", 47121, 47122),
    ("Città di Castello", "PG", 6012, 6012), ("Reggio nell'Emilia", "RE", 42121, 42124), ("Lecce", "LE", 73100, 73100),
    ("Venezia", "VE", 30121, 30176), ("Verona", "VR", 37121, 37142), ("Padova", "PD", 35121, 35143),
    ("San Giovanni in Croce", "CR", 26037, 26037), ("Castelnuovo Berardenga", "SI", 53019, 53019),
)
ABROAD = (("DE", "10115", "Berlin"), ("FR", "75011", "Paris"), ("CH", "6900", "Lugano"),
          ("GB", "SW1A 1AA", "London"), ("AT", "1010", "Wien"))
LONG_NAME = "Società Cooperativa Sociale Valleverde Servizi alla Persona e all'Ambiente a r.l. - Impresa Sociale"
NON_DOMESTIC = "cat. 22 (ristoranti, trattorie, osterie, pizzerie, pub)"


# --- Database and data -------------------------------------------------------------------------------------------


def make_app(url: str, redis_url: str, notices_dir: Path, chunk_size: int):
    """The app an officer's request would run in: jobs go to RQ on the bench's Redis DB, as in production."""
    import logging

    app = create_app({
        "SQLALCHEMY_DATABASE_URI": url.replace("postgresql://", "postgresql+psycopg://"),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "SECRET_KEY": "bench-notices",
        "REDIS_URL": redis_url,
        "JOBS_MODE": "rq",
        "NOTICES_DIR": str(notices_dir),
        "NOTICES_CHUNK_SIZE": chunk_size,
    })
    logging.getLogger().setLevel(logging.WARNING)
    return app


@dataclass(frozen=True)
class Loaded:
    creditor_id: int
    service_id: int
    positions: int
    debtors: int
    options: int
    with_installments: int
    without_address: int
    abroad: int


def setup_creditor(app, *, postal: bool) -> tuple[int, int]:
    """Migrate, then the Comune (as the demo's: CBILL, contacts; a postal account with ``--postal``) and TARI."""
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()
        creditor = settings_svc.create_creditor(
            db.session, fiscal_code=demo.COMUNE_FISCAL_CODE, name=demo.COMUNE_NAME,
            segregation_code=demo.SEGREGATION_CODE, department="Settore Economico-Finanziario - Ufficio Tributi",
            cbill_code="AV3R7", postal_account=demo.POSTAL_ACCOUNT if postal else None,
            postal_authorization="Autorizzato da Poste Italiane S.p.A. Aut. n. DEMO/2026 del 01/01/2026"
            if postal else None,
            address="Piazza del Municipio, 1", city=demo.CITY, province=demo.PROVINCE, postal_code=demo.CAP,
            email="tributi@comune.valleverde.example", pec="protocollo@pec.comune.valleverde.example",
            phone="0382 000111", website="https://www.comune.valleverde.example",
        )
        account = settings_svc.add_account(db.session, creditor, iban=demo.TREASURY_IBAN, label="Tesoreria comunale")
        service = Service(creditor=creditor, code="TARI", name="Tassa sui rifiuti (TARI)",
                          taxonomy_code="9/0101101IM/", account=account)
        db.session.add(service)
        db.session.commit()
        ids = creditor.id, service.id
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
    return ids


def _civic(rng: random.Random) -> str:
    n = rng.randint(1, 180)
    r = rng.random()
    if r < 0.10:
        return f"{n}/{rng.choice('ABCD')}"
    if r < 0.13:
        return "SNC"
    if r < 0.15:
        return f"{n} int. {rng.randint(1, 12)}"
    return str(n)


def _debtors(rng: random.Random, count: int) -> list[tuple]:
    """Persons and companies with valid fiscal codes and varied addresses (2% incomplete, 0.5% abroad)."""
    rows, seen = [], set()
    while len(rows) < count:
        surname = rng.choice(demo._SURNAMES)
        if rng.random() < 0.12:
            code, kind = demo.company_fiscal_code(rng), "G"
            name = LONG_NAME if rng.random() < 0.05 else rng.choice(demo._COMPANY_FORMS).format(
                s=surname, n=rng.choice(demo._MALE))
        else:
            female = rng.random() < 0.5
            first = rng.choice(demo._FEMALE if female else demo._MALE)
            if rng.random() < 0.05:
                first = f"{first} {rng.choice(demo._FEMALE if female else demo._MALE)}"
            birth = date(rng.randint(1935, 2006), rng.randint(1, 12), rng.randint(1, 28))
            code = demo.person_fiscal_code(surname, first.split()[0], birth, female, rng.choice(demo._BIRTH_PLACES))
            kind, name = "F", f"{first} {surname}"
        if code in seen:
            continue
        seen.add(code)
        street, civic = rng.choice(demo._STREETS), _civic(rng)
        r = rng.random()
        if r < 0.01:  # no address at all
            street = civic = cap = city = province = None
            country = "IT"
        elif r < 0.02:  # incomplete: no CAP (not mailable in Italy)
            cap, city, province, country = None, demo.CITY, demo.PROVINCE, "IT"
        elif r < 0.025:
            country, cap, city = rng.choice(ABROAD)
            province = None
        elif r < 0.675:
            cap, city, province, country = demo.CAP, demo.CITY, demo.PROVINCE, "IT"
        else:
            city, province, low, high = rng.choice(ELSEWHERE)
            cap, country = f"{rng.randint(low, high):05d}", "IT"
        email = f"{code.lower()}@example.com" if rng.random() < 0.4 else None
        pec = f"{code.lower()}@pec.example.com" if kind == "G" and rng.random() < 0.6 else None
        rows.append((kind, code, name, street, civic, cap, city, province, country, email, pec))
    return rows


def load(url: str, creditor_id: int, service_id: int, count: int, seed: int) -> Loaded:
    """``count`` published TARI positions with their options and transfers, written with COPY."""
    rng = random.Random(seed)
    debtor_rows = _debtors(rng, max(1, count * 9 // 10))
    # Every debtor has a position; one in ten has a second one (an owner of two properties).
    owners = list(range(1, len(debtor_rows) + 1))
    owners += [rng.randint(1, len(debtor_rows)) for _ in range(count - len(owners))]
    rng.shuffle(owners)
    today = date.today()
    now = datetime.now(UTC)
    year = today.year
    positions, options, transfers = [], [], []
    option_id = 0
    with_installments = 0
    for position_id, debtor_id in enumerate(owners, start=1):
        domestic = rng.random() < 0.8
        street = f"{rng.choice(demo._STREETS)} {_civic(rng)}"
        if domestic:
            subject = f"TARI {year} - utenza domestica - {street}"
            total = rng.randint(9_000, 60_000)
        else:
            subject = (f"TARI {year} - Tassa sui rifiuti - utenza non domestica {NON_DOMESTIC} - {street}"
                       if rng.random() < 0.3 else f"TARI {year} - utenza non domestica - {street}")
            total = rng.randint(30_000, 900_000)
        subject = subject[:140]
        due = today + timedelta(days=60)
        iupd = f"{demo.COMUNE_FISCAL_CODE}-BN-{position_id}"
        positions.append((position_id, creditor_id, service_id, debtor_id, iupd, "bench", str(position_id), subject,
                          "published", total, 0, due, now, now, now, "published"))
        plan = [("single", None, total, due, "Pagamento in unica soluzione")]
        if rng.random() < 0.10:
            with_installments += 1
            share, rest = divmod(total, 3)
            plan += [("installment", k, share + (rest if k == 1 else 0), today + timedelta(days=60 * k),
                      f"Rata {k} di 3") for k in (1, 2, 3)]
        for kind, number, amount, due_date, description in plan:
            option_id += 1
            nav = build_number(demo.SEGREGATION_CODE, option_id)
            options.append((option_id, position_id, creditor_id, kind, number, nav.iuv, nav.nav, amount, due_date,
                            description, "unpaid"))
            transfers.append((option_id, 1, amount, demo.COMUNE_FISCAL_CODE, demo.COMUNE_NAME, demo.TREASURY_IBAN,
                              "9/0101101IM/", f"{subject[:120]} - {description}"[:140]))
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        cursor = conn.cursor()
        columns = "id, creditor_id, kind, fiscal_code, name, street, civic_number, postal_code, city, province, " \
                  "country, email, pec, created_at"
        with cursor.copy(f"COPY debtors ({columns}) FROM STDIN") as copy:
            for n, row in enumerate(debtor_rows, start=1):
                copy.write_row((n, creditor_id, *row, now))
        columns = "id, creditor_id, service_id, debtor_id, iupd, source, external_id, subject, status, " \
                  "amount_cents, paid_cents, due_date, created_at, updated_at, published_at, pagopa_target"
        with cursor.copy(f"COPY positions ({columns}) FROM STDIN") as copy:
            for row in positions:
                copy.write_row(row)
        columns = "id, position_id, creditor_id, kind, installment_number, iuv, notice_number, amount_cents, " \
                  "due_date, description, status"
        with cursor.copy(f"COPY payment_options ({columns}) FROM STDIN") as copy:
            for row in options:
                copy.write_row(row)
        columns = 'option_id, "index", amount_cents, beneficiary_fiscal_code, beneficiary_name, iban, ' \
                  "taxonomy_code, remittance"
        with cursor.copy(f"COPY transfers ({columns}) FROM STDIN") as copy:
            for row in transfers:
                copy.write_row(row)
        for table in ("debtors", "positions", "payment_options"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.execute("UPDATE number_counters SET next_value = %s WHERE creditor_id = %s", (option_id + 1, creditor_id))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    without = sum(1 for r in debtor_rows if not r[3] or not r[6] or (r[8] == "IT" and not r[5]))
    abroad = sum(1 for r in debtor_rows if r[8] != "IT")
    return Loaded(creditor_id, service_id, len(positions), len(debtor_rows), len(options), with_installments,
                  without, abroad)


def select_first(url: str, count: int) -> None:
    """Make exactly the first ``count`` positions selectable (notice not issued); the others count as issued."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE positions SET notice_issued_at = NULL WHERE id <= %s AND notice_issued_at IS NOT NULL",
                     (count,))
        conn.execute("UPDATE positions SET notice_issued_at = now() WHERE id > %s AND notice_issued_at IS NULL",
                     (count,))
        conn.execute("VACUUM ANALYZE")


# --- Workers and memory ----------------------------------------------------------------------------------------------


def proc_kib(pid: int, field_name: str) -> int | None:
    """A ``VmHWM``/``VmRSS`` line of /proc/<pid>/status, in KiB (``None`` when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def proc_children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / TICK, total / TICK


def busy_cores(seconds: float) -> float:
    """Average cores busy on the machine over the next ``seconds``."""
    busy0, _ = machine_cpu()
    time.sleep(seconds)
    busy1, _ = machine_cpu()
    return (busy1 - busy0) / seconds


def wait_until_quiet(limit: float, most: float) -> float:
    """Wait (at most ``most`` seconds) until the machine uses less than ``limit`` cores; return the last reading."""
    deadline = time.monotonic() + most
    load = busy_cores(2.0)
    announced = False
    while load > limit and time.monotonic() < deadline:
        if not announced:
            log(f"    machine busy ({load:.2f} cores used by other processes): waiting up to {most:.0f} s")
            announced = True
        load = busy_cores(2.0)
    return load


@dataclass
class Worker:
    """One ``flask rq worker`` run under GNU time, whose ``%M`` is the worker's ``ru_maxrss`` as ``wait4`` gives it.

    Launched from a small ``time`` process rather than from this one: a process's ``ru_maxrss`` also keeps the
    peak of the image it replaced by ``exec``, which for a child forked from the bench would be the bench's own.
    """

    name: str
    process: subprocess.Popen  # /usr/bin/time
    pid: int  # the worker (time's child)
    log_path: Path
    rss_path: Path
    maxrss_kib: int | None = None
    main_hwm_kib: int | None = None

    def exited(self) -> bool:
        return self.process.poll() is not None

    def read_maxrss(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            self.maxrss_kib = int(self.rss_path.read_text().split()[-1])

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def start_workers(count: int, env: dict, log_dir: Path, redis, tag: str) -> list[Worker]:
    """Start ``count`` workers on the ``notices`` queue and wait until each is registered in Redis."""
    workers = []
    for n in range(count):
        name = f"bench-notices-{tag}-{n}-{uuid.uuid4().hex[:6]}"
        log_path, rss_path = log_dir / f"{name}.log", log_dir / f"{name}.maxrss"
        with open(log_path, "wb") as out:
            process = subprocess.Popen(  # noqa: S603 - GNU time and our own venv's flask, fixed arguments
                [TIME, "-f", "%M", "-o", str(rss_path), str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi",
                 "rq", "worker", "notices", "--name", name, "--without-scheduler"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while not (children := proc_children(process.pid)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{TIME} did not start the worker: {log_path.read_text(errors='replace')}")
            time.sleep(0.005)
        workers.append(Worker(name, process, children[0], log_path, rss_path))
    deadline = time.monotonic() + 60
    while not all(redis.exists(f"rq:worker:{w.name}") for w in workers):
        for worker in workers:
            if worker.exited():
                raise RuntimeError(f"worker {worker.name} exited with {worker.process.returncode}:\n{worker.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not register in Redis within 60 s")
        time.sleep(0.1)
    return workers


def stop_workers(workers: list[Worker], horses: dict[int, str]) -> None:
    """Warm shutdown (SIGTERM; they are idle), SIGKILL after 20 s; then any horse left behind, by its pid.

    :param horses: pid -> name of the worker that forked it (a horse's command line is its worker's).
    """
    for worker in workers:
        if not worker.exited():
            worker.main_hwm_kib = proc_kib(worker.pid, "VmHWM")
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for worker in workers:
        try:
            worker.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGKILL)  # time and the worker: their own session
            worker.process.wait()
        worker.read_maxrss()
    for pid, name in horses.items():  # a horse runs in its own process group; normally long gone
        try:
            ours = name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if ours:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


class MemorySampler(threading.Thread):
    """Peak RSS of each work horse (and the job it ran), sampled from /proc every ``interval`` seconds."""

    def __init__(self, workers: list[Worker], redis, interval: float = 0.05):
        super().__init__(daemon=True)
        self.workers = workers
        self.redis = redis
        self.interval = interval
        self.stopped = threading.Event()
        #: horse pid -> [peak KiB, RQ job id or None, worker name]
        self.horses: dict[int, list] = {}

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            for worker in self.workers:
                for pid in proc_children(worker.pid):
                    peak = proc_kib(pid, "VmHWM")
                    if peak is None:
                        continue
                    entry = self.horses.setdefault(pid, [0, None, worker.name])
                    entry[0] = max(entry[0], peak)
                    if entry[1] is None:
                        job = self.redis.hget(f"rq:worker:{worker.name}", "current_job")
                        entry[1] = job.decode() if job else None

    def stop(self) -> None:
        self.stopped.set()
        self.join()

    def peaks(self) -> dict[str, int]:
        """Peak KiB of the horses by step: ``prepare``, ``chunk``, ``finish``."""
        result: dict[str, int] = {}
        for peak, job, _ in self.horses.values():
            step = ("prepare" if job and job.endswith("-prepare") else "finish" if job and job.endswith("-finish")
                    else "chunk" if job and "-chunk-" in job else "other")
            result[step] = max(result.get(step, 0), peak)
        return result


# --- One run ---------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    size: int
    workers: int
    mode: str
    seconds: float = 0.0
    status: str = ""
    #: What start_bill_run counted (the officer is told this number); rendered + skipped should match it.
    selected: int = 0
    rendered: int = 0
    skipped: int = 0
    without_address: int = 0
    pages: int = 0
    chunks: int = 0
    package_bytes: int = 0
    prepare_s: float = 0.0
    render_s: float = 0.0
    render_busy_s: float = 0.0
    slowest_chunk_s: float = 0.0
    finish_s: float = 0.0
    #: CPU seconds used by the workers and their horses during the run, by the whole machine, and before the run.
    workers_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0
    cpu_window_s: float = 0.0
    load_before: float = 0.0
    tree_kib: int = 0
    main_kib: int = 0
    steps_kib: dict = field(default_factory=dict)
    check: str = ""
    error: str = ""

    @property
    def rate(self) -> float:
        return self.rendered / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        """Worker CPU per notice (ms): what the rendering costs whatever else the machine does."""
        return self.workers_cpu_s * 1000 / self.rendered if self.rendered else 0.0

    @property
    def other_cores(self) -> float:
        """Cores used outside the workers during the run: PostgreSQL, this script, and any other process."""
        return (self.machine_cpu_s - self.workers_cpu_s) / self.cpu_window_s if self.cpu_window_s else 0.0

    @property
    def projected(self) -> float:
        return PROJECTED / self.rate if self.rate else float("inf")


def job_times(conn, run_id: int, *, wait: bool) -> dict:
    """Durations of the run's jobs from their JobRecord rows (written by the workers).

    The finish job marks the run done, then removes the chunk files; its own row is closed just after.
    """
    deadline = time.monotonic() + (30 if wait else 0)
    while time.monotonic() < deadline and not conn.execute(
            "SELECT 1 FROM jobs WHERE rq_id = %s AND status = 'done'", (f"billrun-{run_id}-finish",)).fetchone():
        time.sleep(0.05)
    rows = conn.execute("SELECT rq_id, started_at, finished_at FROM jobs WHERE rq_id LIKE %s AND status = 'done'",
                        (f"billrun-{run_id}-%",)).fetchall()
    chunks = [(s, f) for rq_id, s, f in rows if "-chunk-" in rq_id and s and f]
    single = {rq_id.rsplit("-", 1)[1]: (f - s).total_seconds() for rq_id, s, f in rows
              if "-chunk-" not in rq_id and s and f}
    times = {"prepare": single.get("prepare", 0.0), "finish": single.get("finish", 0.0)}
    if chunks:
        times["render"] = (max(f for _, f in chunks) - min(s for s, _ in chunks)).total_seconds()
        durations = [(f - s).total_seconds() for s, f in chunks]
        times["busy"], times["slowest"] = sum(durations), max(durations)
    return times


def check_package(path: Path, mode: str) -> str:
    """What the vendor finds in the ZIP: PDFs per folder and index rows (streamed)."""
    with zipfile.ZipFile(path) as package:
        names = package.namelist()
        pdfs = sum(1 for n in names if n.startswith("avvisi/") and n.endswith(".pdf"))
        apart = sum(1 for n in names if n.startswith("senza_indirizzo/") and n.endswith(".pdf"))
        rows = {}
        for member in ("indice.csv", "dati.csv", "senza_indirizzo.csv"):
            with package.open(member) as data:
                rows[member] = sum(1 for _ in data) - 1
    what = "PDF per envelope" if mode == "envelopes" else "merged PDFs"
    return (f"{pdfs} {what} + {apart} PDF without address; rows: indice {rows['indice.csv']}, "
            f"dati {rows['dati.csv']}, senza_indirizzo {rows['senza_indirizzo.csv']}")


def measure(app, args, loaded: Loaded, size: int, workers_count: int, mode: str, env: dict, log_dir: Path,
            redis) -> Result:
    result = Result(size, workers_count, mode)
    select_first(args.database_url, size)
    redis.flushdb()
    workers = start_workers(workers_count, env, log_dir, redis, f"{workers_count}w-{mode}")
    sampler = MemorySampler(workers, redis)
    sampler.start()
    run_id = None
    result.load_before = wait_until_quiet(args.quiet_cores, args.wait_quiet)
    cpu_before = {w.pid: process_cpu(w.pid, children=True) for w in workers}
    machine_before = machine_cpu()[0]
    try:
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            with app.app_context():
                creditor = db.session.get(Creditor, loaded.creditor_id)
                started = time.perf_counter()
                run = billrun.start_bill_run(
                    db.session, creditor, queries.PositionFilter(service_id=loaded.service_id),
                    title=f"Bench TARI {size} {mode} {workers_count}w", mode=mode,
                    settings=billrun.BillRunSettings.from_config(app.config))
                run_id, result.selected = run.id, run.total
                db.session.commit()  # enqueues the prepare job on Redis
                db.session.remove()
            last_report = started
            while True:
                row = conn.execute("SELECT status, rendered, total, message FROM bill_runs WHERE id = %s",
                                   (run_id,)).fetchone()
                if row[0] in ("done", "failed", "cancelled"):
                    break
                now = time.perf_counter()
                problem = conn.execute(
                    "SELECT rq_id, status, message FROM jobs WHERE rq_id LIKE %s "
                    "AND (status = 'failed' OR message LIKE 'Tentativo%%') LIMIT 1", (f"billrun-{run_id}-%",)
                ).fetchone()
                if problem:
                    raise RuntimeError(f"job {problem[0]} {problem[1]}: {problem[2]}")
                for worker in workers:
                    if worker.exited():
                        raise RuntimeError(f"worker {worker.name} exited with {worker.process.returncode}:\n"
                                           f"{worker.tail()}")
                if now - started > args.timeout:
                    raise RuntimeError(f"run {run_id} not done after {args.timeout:.0f} s (status {row[0]})")
                if now - last_report >= 15:
                    log(f"    ... {now - started:5.0f} s: {row[0]}, {row[1]}/{row[2]} rendered")
                    last_report = now
                time.sleep(0.1)
            result.seconds = time.perf_counter() - started
            row = conn.execute(
                "SELECT status, rendered, skipped, without_address, pages, chunks, file_size, file_name, message "
                "FROM bill_runs WHERE id = %s", (run_id,)).fetchone()
            (result.status, result.rendered, result.skipped, result.without_address, result.pages, result.chunks,
             result.package_bytes, file_name, message) = row
            if result.status != "done":
                result.error = f"run ended {result.status}: {message}"
            times = job_times(conn, run_id, wait=result.status == "done")
            result.prepare_s, result.finish_s = times["prepare"], times["finish"]
            result.render_s, result.render_busy_s = times.get("render", 0.0), times.get("busy", 0.0)
            result.slowest_chunk_s = times.get("slowest", 0.0)
            # CPU once every horse has been reaped (a horse's CPU reaches its worker's cutime when it is waited for)
            deadline = time.monotonic() + 10
            while any(proc_children(w.pid) for w in workers) and time.monotonic() < deadline:
                time.sleep(0.02)
            result.cpu_window_s = time.perf_counter() - started
            result.machine_cpu_s = machine_cpu()[0] - machine_before
            result.workers_cpu_s = sum(process_cpu(w.pid, children=True) - cpu_before[w.pid] for w in workers)
    except Exception as exc:  # noqa: BLE001 - reported in the table, the other configurations still run
        result.error = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        for worker in workers:
            log(f"    worker {worker.name} log tail:\n{worker.tail(1500)}")
        file_name = None
    finally:
        sampler.stop()
        stop_workers(workers, {pid: entry[2] for pid, entry in sampler.horses.items()})
    result.tree_kib = max((w.maxrss_kib or 0) for w in workers)
    result.main_kib = max((w.main_hwm_kib or 0) for w in workers)
    result.steps_kib = sampler.peaks()
    if file_name and not result.error:
        result.check = check_package(Path(app.config["NOTICES_DIR"]) / file_name, mode)
    if run_id is not None and not args.keep:
        shutil.rmtree(Path(app.config["NOTICES_DIR"]) / f"billrun-{run_id}", ignore_errors=True)
    return result


# --- Report ----------------------------------------------------------------------------------------------------------


def mib(kib: int | None) -> str:
    return f"{kib / 1024:.0f}" if kib else "-"


def describe(result: Result) -> str:
    if result.error:
        return f"  FAILED: {result.error}"
    lost = result.selected - result.rendered - result.skipped
    warning = (f"\n  WARNING: {result.selected} positions selected at start, {lost} neither rendered nor skipped "
               "(missing from the package)" if lost else "")
    return (f"  {result.seconds:6.1f} s, {result.rate:6.1f} notices/s ({result.rendered} rendered, {result.skipped} "
            f"skipped, {result.without_address} without address, {result.chunks} chunks, {result.pages} pages, "
            f"{result.package_bytes / MIB:.1f} MiB); prepare {result.prepare_s:.1f} s, chunks {result.render_s:.1f} s "
            f"(busy {result.render_busy_s:.1f} s, slowest {result.slowest_chunk_s:.1f} s), finish "
            f"{result.finish_s:.1f} s; worker CPU {result.workers_cpu_s:.1f} s ({result.cpu_ms:.1f} ms/notice), "
            f"other processes {result.other_cores:.2f} cores (before the run {result.load_before:.2f}); peak RSS "
            f"tree {mib(result.tree_kib)} MiB\n  package: {result.check}" + warning)


def print_tables(results: list[Result]) -> None:
    log()
    log(f"TIME (wall clock from start_bill_run + commit to status 'done'; projection = time x {PROJECTED:,} / N)")
    header = (f"{'notices':>8} {'wrk':>3} {'mode':<9} {'total s':>8} {'notices/s':>9} {'prepare s':>9} "
              f"{'chunks s':>8} {'finish s':>8} {'pages':>7} {'ZIP MiB':>8} {'100k proj.':>10} {'target':>7}  verdict")
    log(header)
    log("-" * len(header))
    for r in results:
        if r.error:
            log(f"{r.size:>8} {r.workers:>3} {r.mode:<9}  FAILED: {r.error}")
            continue
        target = TARGETS[r.mode]
        verdict = "ok" if r.projected <= target else "MISSED"
        log(f"{r.size:>8} {r.workers:>3} {r.mode:<9} {r.seconds:>8.1f} {r.rate:>9.1f} {r.prepare_s:>9.1f} "
            f"{r.render_s:>8.1f} {r.finish_s:>8.1f} {r.pages:>7} {r.package_bytes / MIB:>8.1f} "
            f"{r.projected / 60:>7.1f} min {target / 60:>3.0f} min  {verdict}")
    log()
    log("CPU (busy = chunk jobs' durations summed; worker CPU = workers and horses, user + system; other = cores")
    log("     used outside the workers during the run: PostgreSQL, this script, anything else on the machine)")
    header = (f"{'notices':>8} {'wrk':>3} {'mode':<9} {'busy s':>7} {'worker CPU s':>12} {'CPU ms/notice':>13} "
              f"{'other cores':>11} {'before run':>10}")
    log(header)
    log("-" * len(header))
    for r in results:
        if not r.error:
            log(f"{r.size:>8} {r.workers:>3} {r.mode:<9} {r.render_busy_s:>7.1f} {r.workers_cpu_s:>12.1f} "
                f"{r.cpu_ms:>13.2f} {r.other_cores:>11.2f} {r.load_before:>10.2f}")
    log()
    log("PEAK RSS, MiB (tree = ru_maxrss of a worker, from wait4 via /usr/bin/time: itself and every horse it")
    log("              forked, max over workers;")
    log("              main = the worker process; prepare/chunk/finish = the horses that ran those jobs, sampled)")
    header = (f"{'notices':>8} {'wrk':>3} {'mode':<9} {'tree':>6} {'main':>6} {'prepare':>8} {'chunk':>6} "
              f"{'finish':>7}")
    log(header)
    log("-" * len(header))
    for r in results:
        steps = r.steps_kib
        log(f"{r.size:>8} {r.workers:>3} {r.mode:<9} {mib(r.tree_kib):>6} {mib(r.main_kib):>6} "
            f"{mib(steps.get('prepare')):>8} {mib(steps.get('chunk')):>6} {mib(steps.get('finish')):>7}")
    sizes = sorted({r.size for r in results})
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        log()
        log(f"MEMORY vs RUN SIZE (peak RSS, MiB, {small:,} -> {large:,} notices; flat = about the same)")
        header = f"{'wrk':>3} {'mode':<9} " + " ".join(f"{name:>18}" for name in ("prepare horse", "chunk horse",
                                                                                   "finish horse", "tree"))
        log(header)
        log("-" * len(header))
        for workers, mode in sorted({(r.workers, r.mode) for r in results}):
            by_size = {r.size: r for r in results if (r.workers, r.mode) == (workers, mode) and not r.error}
            if small not in by_size or large not in by_size:
                continue
            cells = []
            for step in ("prepare", "chunk", "finish", "tree"):
                a, b = (by_size[n].tree_kib if step == "tree" else by_size[n].steps_kib.get(step)
                        for n in (small, large))
                ratio = f"({b / a:.2f})" if a and b else ""
                cells.append(f"{mib(a):>4} -> {mib(b):>4} {ratio:>6}")
            log(f"{workers:>3} {mode:<9} " + " ".join(f"{c:>18}" for c in cells))


# --- Main --------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notices", type=int, default=10_000, help="notices per bill run (default 10000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--modes", nargs="+", choices=("merged", "envelopes"), default=["merged", "envelopes"])
    parser.add_argument("--postal", action="store_true",
                        help="give the Comune a postal account: every notice carries the Poste slip and Data Matrix")
    parser.add_argument("--compare-sizes", type=int, nargs="?", const=2000, default=None, metavar="N",
                        help="also run every configuration with N notices (default 2000) to compare peak memory")
    parser.add_argument("--chunk-size", type=int, default=1000, help="NOTICES_CHUNK_SIZE (default 1000)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per run (default 1800)")
    parser.add_argument("--quiet-cores", type=float, default=0.25,
                        help="before each run, wait until other processes use fewer cores than this (default 0.25)")
    parser.add_argument("--wait-quiet", type=float, default=300.0,
                        help="how long to wait for that at most, in seconds (default 300; 0: never wait)")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS),
                        help="a Redis DB of its own, flushed (default redis://127.0.0.1:6379/7)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database and the notice files")
    args = parser.parse_args()
    if args.notices < 1 or args.chunk_size < 1 or min(args.workers) < 1:
        parser.error("--notices, --chunk-size and --workers must be positive")
    sizes = sorted({args.notices} | ({args.compare_sizes} if args.compare_sizes else set()))
    if not os.access(TIME, os.X_OK):
        parser.error(f"{TIME} (GNU time) is needed to read the workers' peak memory")

    from redis import Redis

    redis = Redis.from_url(args.redis_url)
    if int(redis.connection_pool.connection_kwargs.get("db") or 0) == 0:
        parser.error("use a Redis DB of its own, not 0: it is flushed")
    redis.ping()
    redis.flushdb()
    work_dir = Path(tempfile.mkdtemp(prefix="bench_notices_"))
    notices_dir, log_dir = work_dir / "notices", work_dir / "logs"
    notices_dir.mkdir()
    log_dir.mkdir()
    env = {
        **os.environ,
        "PAYBOX_ENV": "development",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "PAYBOX_JOBS_MODE": "rq",
        "NOTICES_DIR": str(notices_dir),
        "NOTICES_CHUNK_SIZE": str(args.chunk_size),
        "SECRET_KEY": "bench-notices",
        "MAIL_OUTBOX_DIR": str(work_dir / "outbox"),
    }
    log(f"bill-run bench: sizes {', '.join(f'{s:,}' for s in sizes)}; workers {args.workers}; modes {args.modes}; "
        f"chunk size {args.chunk_size}; postal slip {'yes' if args.postal else 'no'}; {os.cpu_count()} CPUs")
    results: list[Result] = []
    app = None
    try:
        step = time.perf_counter()
        recreate_database(args.database_url)
        app = make_app(args.database_url, args.redis_url, notices_dir, args.chunk_size)
        creditor_id, service_id = setup_creditor(app, postal=args.postal)
        loaded = load(args.database_url, creditor_id, service_id, max(sizes), args.seed)
        log(f"loaded (not measured, {time.perf_counter() - step:.1f} s): {loaded.positions:,} published positions, "
            f"{loaded.options:,} options ({loaded.with_installments:,} positions with 3 installments), "
            f"{loaded.debtors:,} debtors ({loaded.without_address} without a complete address, {loaded.abroad} "
            f"abroad); work dir {work_dir}")
        for size in sizes:
            for workers in args.workers:
                for mode in args.modes:
                    log(f"run: {size:,} notices, {workers} worker(s), {mode}")
                    result = measure(app, args, loaded, size, workers, mode, env, log_dir, redis)
                    results.append(result)
                    log(describe(result))
        print_tables(results)
    finally:
        with contextlib.suppress(Exception):
            redis.flushdb()
        if args.keep:
            log(f"kept: database {args.database_url}, files under {work_dir}")
        else:
            if app is not None:
                with app.app_context():
                    db.session.remove()
                    for engine in db.engines.values():
                        engine.dispose()
            drop_database(args.database_url)
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
