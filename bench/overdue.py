"""Benchmark of collections on a large PostgreSQL ledger: the daily overdue scan, a reminder batch and a litigation
batch of 10,000 positions each.

Loads (once) the 1,000,000 positions of ``bench/positions_list.py`` (its loader, into this bench's own database),
then times, with the real code and nothing mocked:

* ``overdue.scan``: the daily job marking expired what fell due unpaid (the first run moves them; a second run
  the same day, with nothing to do, is timed too);
* a reminder batch of ``--batch`` expired positions: ``batches.start`` (freezing the selection) and every chunk
  of ``batches.run_chunk`` (events, reminders, outcomes), as the jobs would run them one after the other;
* a litigation batch of the same positions once the reminders' deadline has passed: each is re-read on GPD (the
  pagoPA sandbox in its own process, over HTTP: its time is counted apart), moved to ``in_litigation`` and
  re-issued as a new position with the engine's breakdown.

The letters (PDF rendering, e-mail, print package: the ``collections_finish`` job) and the syncs the batches ask for
are not part of these figures: the notices bench and the publish bench time those.

    .venv/bin/python bench/overdue.py [--positions 1000000] [--batch 10000] [--reload]
                                      [--reminder-cost CENTS]
                                      [--database-url postgresql://postgres@127.0.0.1:5432/paybox_overdue_bench]

Each run changes the data (expired, reminded, litigated positions): a later run without ``--reload`` reminds
the next ``--batch`` expired positions (its first scan has little left to do); ``--reload`` starts again from the
load. ``--reminder-cost CENTS`` gives every service a reminder cost, so each reminded position gets a new version
(new amount and due date, for pagoPA through the sync) in the reminder batch.

The summary prints, per step, the wall time, the SQL statements this process sent and its CPU time.
"""

import argparse
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.positions_list import ensure_database, load, make_app  # noqa: E402
from bench.publish import API_KEY, HttpClock, start_sandbox  # noqa: E402
from portal.collections import batches, overdue  # noqa: E402
from portal.collections.models import CollectionBatch, CollectionBatchItem  # noqa: E402
from portal.collections.settings import policies_by_service, seed_legal_rates  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.ledger import queries  # noqa: E402
from portal.ledger.models import Creditor, Position  # noqa: E402
from portal.ledger.status import PositionStatus  # noqa: E402
from portal.pagopa.gpd import GPDClient  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/paybox_overdue_bench"
SCAN_TARGET_S = 10.0
BATCH_TARGET_S = 120.0


class Meter:
    """SQL statements this process sent (an executemany or a COPY counts once) and its CPU seconds: the app's
    side of each step, less noisy than wall time on a shared machine (PostgreSQL's own CPU is not in it)."""

    def __init__(self, engine):
        self.statements = 0
        sa.event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_args) -> None:
        self.statements += 1

    def mark(self) -> tuple[int, float]:
        return self.statements, time.process_time()

    def since(self, mark: tuple[int, float]) -> tuple[int, float]:
        return self.statements - mark[0], time.process_time() - mark[1]


def log(message: str = "") -> None:
    print(message, flush=True)


def run_batch(app, batch_id: int, *, today: date, client: GPDClient | None) -> tuple[float, int]:
    """Run a batch's chunks one after the other, each in its own transaction, as the jobs do; (seconds, chunks)."""
    backend = app.extensions["paybox_jobs"]
    started, chunks = time.perf_counter(), 0
    while True:
        with app.app_context():
            outcome = batches.run_chunk(db.session, batch_id, today=today, client=client)
            db.session.commit()
            status = db.session.scalar(sa.select(CollectionBatch.status).where(CollectionBatch.id == batch_id))
            db.session.remove()
        backend.clear()  # the next chunk, the syncs and the letters it asked for: run here by the loop, or not at all
        chunks += 1
        if status != "running":
            return time.perf_counter() - started, chunks
        if chunks % 10 == 0:
            log(f"    {outcome}")


def outcomes(app, batch_id: int) -> dict:
    with app.app_context():
        batch = db.session.get(CollectionBatch, batch_id)
        found = batches.counts(db.session, batch)
        db.session.remove()
    return found


def loaded_count(url: str) -> int:
    """Positions of the load: those an earlier run's litigation batch re-issued are not counted (a later run
    reuses the data, and its reminder batch takes the next expired positions)."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM positions WHERE source IS DISTINCT FROM %s",
                            (batches.LITIGATION_SOURCE,)).fetchone()[0]


def set_reminder_cost(session, creditor_id: int, cents: int) -> None:
    """Give every service of the creditor a policy charging ``cents`` per reminder (0: the default, no cost)."""
    for policy in policies_by_service(session, creditor_id).values():
        if policy.reminder_cost_cents != cents:
            policy.reminder_cost_cents = cents
            session.add(policy)
    session.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000, help="positions per batch")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--reload", action="store_true", help="drop the database and load it again")
    parser.add_argument("--reminder-cost", type=int, default=0, metavar="CENTS",
                        help="every service's policy charges this reminder cost (a new version of each position)")
    args = parser.parse_args()

    ensure_database(args.database_url, recreate=args.reload)
    app = make_app(args.database_url)
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        db.session.remove()
    if loaded_count(args.database_url) != args.positions:
        log(f"loading {args.positions:,} positions into {args.database_url} ...")
        load(app, args.database_url, args.positions, max(200, args.positions // 5), args.seed)
    with app.app_context():
        seed_legal_rates(db.session)  # the loader empties every table, the migration's seed included
        creditor_id = db.session.scalar(sa.select(Creditor.id))
        set_reminder_cost(db.session, creditor_id, args.reminder_cost)
        db.session.commit()
        by_status = dict(db.session.execute(
            sa.select(Position.status, sa.func.count()).group_by(Position.status)).all())
        db.session.remove()
    log(f"{sum(by_status.values()):,} positions: " + ", ".join(f"{s.value} {n:,}" for s, n in sorted(
        by_status.items(), key=lambda kv: -kv[1])))
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    today = date.today()
    figures = []
    with app.app_context():
        meter = Meter(db.engine)
    log("load average before: " + " ".join(f"{n:.2f}" for n in os.getloadavg()))

    # --- The daily scan -------------------------------------------------------------------------------------------
    for run in ("first", "second (nothing to do)"):
        with app.app_context():
            mark, started = meter.mark(), time.perf_counter()
            result = overdue.scan(db.session, today=today)
            db.session.commit()
            seconds = time.perf_counter() - started
            db.session.remove()
        log(f"overdue scan, {run}: {result.count:,} positions marked expired in {seconds:.2f} s")
        figures.append((f"overdue scan ({run})", seconds, SCAN_TARGET_S, *meter.since(mark)))

    # --- A reminder batch ------------------------------------------------------------------------------------------
    with app.app_context():
        creditor = db.session.get(Creditor, creditor_id)
        flt = queries.PositionFilter(status=PositionStatus.EXPIRED, overdue=True)  # as the dashboard's alert links
        ids = [r[0] for r in db.session.execute(
            batches.eligible_ids(creditor_id, "reminder", flt, today=today).limit(args.batch))]
        mark, started = meter.mark(), time.perf_counter()
        batch = batches.start(db.session, creditor, "reminder", flt, today=today, title="bench: solleciti", ids=ids)
        db.session.commit()
        start_seconds = time.perf_counter() - started
        reminder_id = batch.id
        db.session.remove()
    app.extensions["paybox_jobs"].clear()
    log(f"reminder batch of {len(ids):,}: started (selection frozen) in {start_seconds:.2f} s")
    seconds, chunks = run_batch(app, reminder_id, today=today, client=None)
    total = start_seconds + seconds
    log(f"reminder batch: {chunks} chunks in {seconds:.1f} s ({seconds / max(len(ids), 1) * 1000:.1f} ms a position),"
        f" {total:.1f} s with the start; outcomes {outcomes(app, reminder_id)}")
    figures.append((f"reminder batch ({len(ids):,} positions)", total, BATCH_TARGET_S, *meter.since(mark)))

    # --- A litigation batch, after the reminders' deadline -------------------------------------------------------
    with app.app_context():
        reminded = [r[0] for r in db.session.execute(sa.select(CollectionBatchItem.position_id).where(
            CollectionBatchItem.batch_id == reminder_id, CollectionBatchItem.outcome == "reminded"))]
        # They are on pagoPA (the loader does not say so): the batch must re-read each one on GPD first.
        db.session.execute(sa.update(Position).where(Position.id.in_(reminded)).values(
            pagopa_target="published", pagopa_synced_target="published",
            pagopa_synced_version=Position.pagopa_version, sync_pending=False))
        db.session.commit()
        db.session.remove()
    later = today + timedelta(days=31)
    with tempfile.TemporaryDirectory() as tmp:
        sandbox, server = start_sandbox(Path(tmp))
        try:
            clock = HttpClock()
            client = clock.wrap(GPDClient(f"{sandbox}/gpd/debt-positions-service", API_KEY, timeout=60))
            with app.app_context():
                creditor = db.session.get(Creditor, creditor_id)
                mark, started = meter.mark(), time.perf_counter()
                batch = batches.start(db.session, creditor, "litigation", queries.PositionFilter(), today=later,
                                      title="bench: accertamenti", ids=reminded)
                db.session.commit()
                start_seconds = time.perf_counter() - started
                litigation_id, litigated = batch.id, batch.total  # the partly paid ones are not litigable
                db.session.remove()
            app.extensions["paybox_jobs"].clear()
            log(f"litigation batch of {litigated:,}: started in {start_seconds:.2f} s")
            seconds, chunks = run_batch(app, litigation_id, today=later, client=client)
        finally:
            server.terminate()
            server.wait(10)
    own = start_seconds + seconds - clock.seconds
    log(f"litigation batch: {chunks} chunks in {seconds:.1f} s, of which {clock.seconds:.1f} s waiting for GPD; "
        f"our own {own:.1f} s ({own / max(litigated, 1) * 1000:.1f} ms a position); "
        f"outcomes {outcomes(app, litigation_id)}")
    figures.append((f"litigation batch ({litigated:,} positions, without GPD's time)", own, BATCH_TARGET_S,
                    *meter.since(mark)))

    log()
    log("load average after: " + " ".join(f"{n:.2f}" for n in os.getloadavg()))
    width = max(len(name) for name, *_ in figures)
    log(f"{'step':<{width}}  {'time':>10}  {'target':>8}  {'statements':>10}  {'CPU (this process)':>18}")
    for name, seconds, target, statements, cpu in figures:
        log(f"{name:<{width}}  {seconds:8.2f} s  {target:6.0f} s  {statements:10,}  {cpu:16.2f} s"
            f"  {'ok' if seconds < target else 'SLOW'}")


if __name__ == "__main__":
    main()
