"""Bulk upload end to end: a generated bill run of N rows (default 100,000) checked and imported into PostgreSQL.

Measures the dry run (store + hash the upload, parse, validate every row, classify against the ledger, record the
figures) and the import (the same pass again, IUV blocks, debtors, positions, options, transfers, events, one
transaction), both through ``portal.imports.services`` exactly as the job runs them; then a plain ``COPY`` of the
very rows the import wrote into tables built ``LIKE`` the real ones (same indexes and checks), and the ratio.
Peak RSS is the process's maximum resident set (``getrusage``). The last line reads
``rows/s dry-run=N import=N copy=N ratio=R peak-rss-mib=N``.

    .venv/bin/python bench/import.py [--rows 100000] [--database-url postgresql://postgres@127.0.0.1:5432/paybox_imports_bench]
"""

import argparse
import cProfile
import csv
import logging
import random
import resource
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stdnum.it import codicefiscale  # noqa: E402

from bench.common import load_average, log, process_cpu, recreate_database  # noqa: E402
from portal import create_app  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.imports import services as imports  # noqa: E402
from portal.imports.layout import FIELD_NAMES  # noqa: E402
from portal.ledger.models import Service  # noqa: E402
from portal.settings import services as settings_svc  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/paybox_imports_bench"
PROVINCE_CF = "80008630107"  # the Province receiving TEFA (11 digits, Luhn-valid)
PROVINCE_IBAN = "IT08L0306903200000100000046"
TABLES = ("debtors", "positions", "payment_options", "transfers", "events")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def fiscal_code(n: int) -> str:
    """A valid codice fiscale for person number ``n``."""
    rnd = random.Random(n)
    base = "".join(rnd.choice(_LETTERS) for _ in range(6)) + f"{rnd.randint(40, 99):02d}" + rnd.choice("ABCDEHLMPRST") \
        + f"{rnd.randint(1, 28):02d}" + rnd.choice("HLF") + f"{rnd.randint(100, 999)}"
    return base + codicefiscale.calc_check_digit(base)


def write_file(path: Path, rows: int, *, seed: int = 7) -> int:
    """A TARI bill run in the default layout: most positions a single payment, one in five also payable in two
    installments (three rows); every option split between the Comune and TEFA to the Province. Returns positions."""
    rnd = random.Random(seed)
    debtors = [fiscal_code(n) for n in range(max(rows // 2, 1))]
    first_due = date.today() + timedelta(days=60)
    header = list(FIELD_NAMES)
    index = {name: i for i, name in enumerate(header)}
    written = positions = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(header)
        while written < rows:
            positions += 1
            cf = rnd.choice(debtors)
            total = rnd.randint(50, 900) * 100 + rnd.choice((0, 50))
            plan = rnd.random() < 0.2 and rows - written >= 3
            civic = str(rnd.randint(1, 200))
            options = [("unica", "", total, first_due)]
            if plan:
                half = total // 2
                options += [("rata", "1", half, first_due), ("rata", "2", total - half, first_due + timedelta(90))]
            for kind, number, amount, due in options:
                tefa = amount * 5 // 100
                row = [""] * len(header)
                values = {
                    "chiave": f"TARI-2027-{positions:07d}", "codice_fiscale": cf, "nominativo": f"Debitore {cf[:6]}",
                    "indirizzo": "Via Roma", "civico": civic, "cap": "00100", "comune": "Roma",
                    "provincia": "RM", "causale": "TARI 2027", "tipo_pagamento": kind, "numero_rata": number,
                    "importo": f"{amount // 100},{amount % 100:02d}", "scadenza": due.strftime("%d/%m/%Y"),
                    "importo_1": f"{(amount - tefa) // 100},{(amount - tefa) % 100:02d}",
                    "cf_beneficiario_2": PROVINCE_CF, "beneficiario_2": "Provincia di Roma",
                    "iban_2": PROVINCE_IBAN, "tassonomia_2": "9/0101101IM/",
                    "importo_2": f"{tefa // 100},{tefa % 100:02d}",
                }
                for name, value in values.items():
                    row[index[name]] = value
                writer.writerow(row)
                written += 1
    return positions


class Cpu:
    """CPU seconds of this process and of the session's PostgreSQL backend (same machine, from /proc) over a step:
    comparable between runs on a shared machine, where wall time is not."""

    def __init__(self, backend_pid: int):
        self.backend_pid = backend_pid
        self.start = self._now()

    def _now(self) -> tuple[float, float]:
        return time.process_time(), process_cpu(self.backend_pid)

    def done(self, rows: int) -> str:
        python, server = (b - a for a, b in zip(self.start, self._now(), strict=True))
        return (f"CPU python {python:.1f} s ({python * 1000 / rows * 1000:.0f} ms/1,000 rows), "
                f"server {server:.1f} s ({server * 1000 / rows * 1000:.0f} ms/1,000 rows); load {load_average()}")


def backend_pid() -> int:
    return db.session.connection().connection.driver_connection.info.backend_pid


def copy_baseline(url: str, rows: int) -> tuple[float, int]:
    """Seconds to ``COPY`` the rows the import wrote into tables like the real ones (indexes and checks included),
    and how many rows that was."""
    import psycopg

    dumps = {}
    # The rows wait on disk, not in memory: the peak RSS printed is the import's, not this baseline's.
    spool = Path(tempfile.mkdtemp(prefix="paybox-import-copy-"))
    with psycopg.connect(url) as conn:
        for table in TABLES:
            dumps[table] = spool / f"{table}.copy"
            with open(dumps[table], "wb") as buffer, conn.cursor().copy(f"COPY {table} TO STDOUT") as copy:
                for block in copy:
                    buffer.write(block)
            conn.execute(f"DROP TABLE IF EXISTS bench_copy_{table}")
            conn.execute(f"CREATE TABLE bench_copy_{table} (LIKE {table} INCLUDING ALL)")
        conn.commit()
        count = 0
        cpu = Cpu(conn.info.backend_pid)
        started = time.perf_counter()
        for table in TABLES:
            with open(dumps[table], "rb") as source, conn.cursor().copy(f"COPY bench_copy_{table} FROM STDIN") as copy:
                while block := source.read(1024 * 1024):
                    copy.write(block)
        conn.commit()
        elapsed = time.perf_counter() - started
        log(f"copy: {cpu.done(rows)} (per 1,000 rows of the file)")
        for table in TABLES:
            count += conn.execute(f"SELECT count(*) FROM bench_copy_{table}").fetchone()[0]
            conn.execute(f"DROP TABLE bench_copy_{table}")
            dumps[table].unlink()
        conn.commit()
    spool.rmdir()
    return elapsed, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the import step to FILE (slower)")
    args = parser.parse_args()

    recreate_database(args.database_url)
    work = Path(tempfile.mkdtemp(prefix="paybox-import-bench-"))
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": args.database_url.replace("postgresql://", "postgresql+psycopg://"),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "SECRET_KEY": "bench-import", "JOBS_MODE": "manual", "IMPORTS_DIR": str(work / "imports"),
    })
    logging.getLogger().setLevel(logging.WARNING)
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()
        creditor = settings_svc.create_creditor(db.session, fiscal_code="80015010723", name="Comune di Prova",
                                                segregation_code="01", department="Settore Tributi")
        account = settings_svc.add_account(db.session, creditor, iban="IT60X0542811101000000123456",
                                           label="Tesoreria")
        service = Service(creditor=creditor, code="TARI", name="TARI", taxonomy_code="9/0101101IM/", account=account)
        db.session.add(service)
        db.session.commit()

        path = work / "tari.csv"
        started = time.perf_counter()
        positions = write_file(path, args.rows)
        log(f"file: {args.rows} rows, {positions} positions, {path.stat().st_size / 1e6:.1f} MB "
            f"(written in {time.perf_counter() - started:.1f} s)")
        settings = imports.ImportSettings.from_config(app.config)
        settings = imports.ImportSettings(storage_dir=settings.storage_dir, max_bytes=1024 ** 3)

        log(f"load before the dry run {load_average()}")
        cpu = Cpu(backend_pid())
        started = time.perf_counter()
        with open(path, "rb") as upload:
            imp = imports.create_import(db.session, creditor, service, "tari.csv", upload, actor="bench",
                                        settings=settings, enqueue=False)
        db.session.commit()
        imports.run_dry_run(db.session, imp.id, settings=settings)
        db.session.commit()
        dry = time.perf_counter() - started
        log(f"dry run: {dry:.1f} s; {imp.rows_total} rows, {imp.positions_new} new positions, {imp.error_count} errors")
        log(f"dry run: {cpu.done(args.rows)}")
        if imp.error_count:
            for error in imports.report_rows(db.session, imp.id, limit=5):
                log(f"  row {error.row_number} {error.column}: {error.message}")
            raise SystemExit("the generated file should have no errors")

        cpu = Cpu(backend_pid())
        started = time.perf_counter()
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        imports.confirm(db.session, imp.id, actor="bench", enqueue=False)
        imports.run_import(db.session, imp.id, settings=settings, enqueue=False)
        db.session.commit()
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        run = time.perf_counter() - started
        log(f"import: {run:.1f} s; {imp.imported} positions written ({imp.status})")
        log(f"import: {cpu.done(args.rows)}")

    copy_seconds, copied = copy_baseline(args.database_url, args.rows)
    log(f"copy: {copy_seconds:.1f} s for the same {copied} rows of {', '.join(TABLES)}")
    rows = args.rows
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    dry_rate, run_rate, copy_rate = rows / dry, rows / run, rows / copy_seconds
    log(f"rows/s dry-run={dry_rate:.0f} import={run_rate:.0f} copy={copy_rate:.0f} ratio={run_rate / copy_rate:.2f} "
        f"peak-rss-mib={peak:.0f}")


if __name__ == "__main__":
    main()
