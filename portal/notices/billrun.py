"""Bill runs: select positions, render their notices in chunks (one job each), package them for the vendor.

The steps, each a job (``portal.jobs.tasks``) or, from the CLI, called in turn:

1. :func:`start_bill_run` (the officer's request): checks the selection, writes the run, asks for ``prepare``.
2. :func:`prepare`: freezes the selection in ``bill_run_items`` in envelope order (by CAP; positions without a
   postal address apart) with two ``INSERT … SELECT`` statements, splits it into chunks, asks for one job each.
3. :func:`render_chunk`: renders one chunk's notices into its files (PDF or ZIP, index/data CSV parts), writes
   them under temporary names and renames them, then marks the chunk done. The last chunk asks for ``finish``.
4. :func:`finish`: writes the ZIP from the chunks' files, records "notice issued" (column and timeline event) on
   every position whose notice was rendered, marks the run done, and (if asked) hands the e-mails to jobs.

Restarting is safe: a done chunk is never rendered again, and positions are marked issued once, by ``finish``,
in the same transaction that marks the run done. Cancelling stops the chunks that have not started.
Nothing here imports Flask; the files live under ``settings.storage_dir`` (a shared volume when workers run on
several machines).
"""

import logging
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, contains_eager, selectinload

from portal import metrics, outbox
from portal.ledger import queries
from portal.ledger.models import Creditor, Debtor, Event, PaymentOption, Position
from portal.ledger.status import PAYABLE_STATUSES, OptionStatus
from portal.ledger.types import utcnow
from portal.notices import package
from portal.notices.envelopes import envelope_order, has_postal_address_sql, postal_address, sheets
from portal.notices.models import ACTIVE_STATUSES, MODES, BillRun, BillRunChunk, BillRunItem
from portal.notices.render import (
    NoticeDocument,
    NoticeError,
    notice_filename,
    render_notice_with_pages,
    unpaid_options,
)

log = logging.getLogger(__name__)

#: Event kind written on each position whose notice a bill run issued.
NOTICE_ISSUED = "notice_issued"


class BillRunError(ValueError):
    """A bill run that cannot be started, cancelled or restarted (Italian message for the officer)."""


@dataclass(frozen=True)
class BillRunSettings:
    """Where files go and how big a chunk is (from the app's ``NOTICES_*`` settings)."""

    storage_dir: Path
    chunk_size: int = 1000
    #: Sheets printed on both sides (the index's ``sheets`` column).
    duplex: bool = False
    #: Poste product written in the index (``POSTA_MASSIVA``, ``RACCOMANDATA_AR``, ...).
    product: str = "POSTA_MASSIVA"
    #: Days a finished run's files stay on the server.
    retention_days: int = 90

    @classmethod
    def from_config(cls, config) -> "BillRunSettings":
        return cls(storage_dir=Path(config["NOTICES_DIR"]), chunk_size=int(config["NOTICES_CHUNK_SIZE"]),
                   duplex=bool(config["NOTICES_PRINT_DUPLEX"]), product=config["NOTICES_POSTAL_PRODUCT"],
                   retention_days=int(config["NOTICES_RETENTION_DAYS"]))


class RunFiles:
    """The files of one run under the storage directory (chunk numbers start at 0, file names at 00001)."""

    def __init__(self, settings: BillRunSettings, run_id: int):
        self.dir = settings.storage_dir / f"billrun-{run_id}"

    def chunk_pdf(self, number: int) -> Path:
        return self.dir / f"avvisi-{number + 1:05d}.pdf"

    def chunk_zip(self, number: int) -> Path:
        return self.dir / f"chunk-{number + 1:05d}.zip"

    def index_part(self, number: int) -> Path:
        return self.dir / f"chunk-{number + 1:05d}.index.csv"

    def data_part(self, number: int) -> Path:
        return self.dir / f"chunk-{number + 1:05d}.data.csv"

    def package(self, run: BillRun) -> Path:
        return self.dir / f"bollettazione-{run.id}.zip"

    def chunk_files(self, number: int) -> list[Path]:
        return [self.chunk_pdf(number), self.chunk_zip(number), self.index_part(number), self.data_part(number)]


# --- Selection ---------------------------------------------------------------------------------------------------


def eligible_ids(creditor_id: int, flt: queries.PositionFilter, *, include_issued: bool,
                 today: date | None = None) -> sa.Select:
    """Ids of the positions the filter selects that pagoPA can collect and that still have something to pay."""
    ids = queries.matching_ids(creditor_id, flt, today or date.today())
    ids = ids.where(
        Position.status.in_(PAYABLE_STATUSES),
        Position.id.in_(sa.select(PaymentOption.position_id).where(
            PaymentOption.creditor_id == creditor_id, PaymentOption.status == OptionStatus.UNPAID)),
    )
    if not include_issued:
        # Never printed, or printed before an edit or an abatement changed it (that notice is superseded).
        ids = ids.where(sa.or_(Position.notice_issued_at.is_(None), Position.notice_superseded_at.is_not(None)))
    return ids


@dataclass(frozen=True)
class SelectionCount:
    total: int
    without_address: int


def count_selection(session: Session, creditor_id: int, flt: queries.PositionFilter, *, include_issued: bool,
                    today: date | None = None) -> SelectionCount:
    """How many notices a run with this selection would print, and how many lack a postal address."""
    ids = eligible_ids(creditor_id, flt, include_issued=include_issued, today=today).subquery()
    row = session.execute(
        sa.select(sa.func.count(), sa.func.count().filter(sa.not_(has_postal_address_sql(Debtor))))
        .select_from(Position)
        .join(Debtor, Debtor.id == Position.debtor_id)
        .where(Position.id.in_(sa.select(ids.c.id)))
    ).one()
    return SelectionCount(total=row[0], without_address=row[1])


def start_bill_run(session: Session, creditor: Creditor, flt: queries.PositionFilter, *, title: str, mode: str,
                   include_issued: bool = False, send_email: bool = False,
                   actor_user_id: int | None = None, settings: BillRunSettings, enqueue: bool = True) -> BillRun:
    """Create a run for the positions ``flt`` selects and ask for its preparation (after commit).

    :raise BillRunError: if the mode is unknown, the title empty, or nothing would be printed.
    """
    if mode not in MODES:
        raise BillRunError("Modalità di uscita non valida.")
    title = (title or "").strip()
    if not title:
        raise BillRunError("Indicare una descrizione della bollettazione.")
    counted = count_selection(session, creditor.id, flt, include_issued=include_issued)
    if counted.total == 0:
        raise BillRunError("Nessuna posizione da avvisare con questi criteri (servono posizioni caricate su pagoPA "
                           "con importi ancora da pagare" + ("" if include_issued else " e avviso non ancora emesso")
                           + ").")
    run = BillRun(creditor_id=creditor.id, service_id=flt.service_id, title=title[:140], mode=mode,
                  selection=_filter_to_json(flt), include_issued=include_issued,
                  send_email=send_email, status="preparing", chunk_size=settings.chunk_size, total=counted.total,
                  without_address=counted.without_address, created_by_id=actor_user_id)
    session.add(run)
    session.flush()
    if enqueue:
        _enqueue(session, "billrun_prepare", run, "prepare")
    log.info("bill run %s created: %s notices (%s without address)", run.id, counted.total, counted.without_address)
    return run


def _filter_to_json(flt: queries.PositionFilter) -> dict:
    return {
        "service_id": flt.service_id, "status": flt.status.value if flt.status else None,
        "due_from": flt.due_from.isoformat() if flt.due_from else None,
        "due_to": flt.due_to.isoformat() if flt.due_to else None, "debtor": flt.debtor, "number": flt.number,
        "amount_min": flt.amount_min, "amount_max": flt.amount_max, "overdue": flt.overdue,
        "scope": sorted(flt.scope) if flt.scope is not None else None,
    }


def selection_filter(run: BillRun) -> queries.PositionFilter:
    """The positions filter a run was started with (what its page shows, what ``prepare`` applies)."""
    from portal.ledger.status import PositionStatus

    data = run.selection
    return queries.PositionFilter(
        service_id=data.get("service_id"), status=PositionStatus(data["status"]) if data.get("status") else None,
        due_from=date.fromisoformat(data["due_from"]) if data.get("due_from") else None,
        due_to=date.fromisoformat(data["due_to"]) if data.get("due_to") else None, debtor=data.get("debtor"),
        number=data.get("number"), amount_min=data.get("amount_min"), amount_max=data.get("amount_max"),
        overdue=bool(data.get("overdue")), scope=set(data["scope"]) if data.get("scope") is not None else None,
    )


def _enqueue(session: Session, task: str, run: BillRun, suffix: str, *ids) -> None:
    outbox.schedule(session, task, run.id, *ids, job_id=f"billrun-{run.id}-{suffix}",
                    creditor_id=run.creditor_id, created_by_id=run.created_by_id)


def _lock_run(session: Session, run_id: int) -> BillRun | None:
    return session.get(BillRun, run_id, with_for_update=True, populate_existing=True)


# --- 2. Prepare --------------------------------------------------------------------------------------------------


def prepare(session: Session, run_id: int, settings: BillRunSettings, *, enqueue: bool = True) -> str:
    """Freeze the run's positions in envelope order, split them into chunks and ask for their rendering."""
    run = _lock_run(session, run_id)
    if run is None or run.status != "preparing":
        return f"bollettazione {run_id}: niente da preparare ({run.status if run else 'inesistente'})"
    flt = selection_filter(run)
    ids = eligible_ids(run.creditor_id, flt, include_issued=run.include_issued).subquery()
    size = run.chunk_size
    first_chunk = 0
    counts = {}
    for postal in (True, False):
        condition = has_postal_address_sql(Debtor)
        rank = sa.func.row_number().over(order_by=(*envelope_order(Debtor), Position.id))
        selected = (
            sa.select(Position.id.label("position_id"), rank.label("rn"))
            .join(Debtor, Debtor.id == Position.debtor_id)
            .where(Position.id.in_(sa.select(ids.c.id)), condition if postal else sa.not_(condition))
        ).subquery()
        offset = sum(counts.values())
        session.execute(sa.insert(BillRunItem).from_select(
            ["bill_run_id", "seq", "position_id", "chunk", "postal", "skipped"],
            sa.select(sa.literal(run.id), selected.c.rn + offset, selected.c.position_id,
                      (selected.c.rn - 1) // size + first_chunk, sa.literal(postal), sa.false()),
        ))
        counts[postal] = session.scalar(sa.select(sa.func.count()).select_from(BillRunItem).where(
            BillRunItem.bill_run_id == run.id, BillRunItem.postal.is_(postal)))
        chunk_count = -(-counts[postal] // size)
        for number in range(first_chunk, first_chunk + chunk_count):
            session.add(BillRunChunk(bill_run_id=run.id, number=number, postal=postal, status="pending"))
        first_chunk += chunk_count
    run.total = counts[True] + counts[False]
    run.without_address = counts[False]
    run.chunks = first_chunk
    if run.total == 0:
        run.status, run.finished_at = "failed", utcnow()
        run.message = "Nessuna posizione da avvisare al momento della preparazione."
        return run.message
    run.status = "rendering"
    session.flush()
    if enqueue:
        for number in range(run.chunks):
            _enqueue(session, "billrun_chunk", run, f"chunk-{number}", number)
    chunks = "1 blocco" if run.chunks == 1 else f"{run.chunks} blocchi"
    return f"{run.total} avvisi in {chunks} ({run.without_address} senza indirizzo)"


# --- 3. Render one chunk -----------------------------------------------------------------------------------------


def _chunk_positions(session: Session, run_id: int, number: int) -> list[tuple[BillRunItem, Position]]:
    items = session.scalars(
        sa.select(BillRunItem).where(BillRunItem.bill_run_id == run_id, BillRunItem.chunk == number)
        .order_by(BillRunItem.seq)
    ).all()
    positions = {p.id: p for p in session.scalars(
        sa.select(Position)
        .join(Position.debtor).join(Position.service)
        .options(contains_eager(Position.debtor), contains_eager(Position.service),
                 selectinload(Position.options).selectinload(PaymentOption.transfers))
        .where(Position.id.in_([i.position_id for i in items]))
    ).unique()}
    return [(item, positions[item.position_id]) for item in items]


def render_chunk(session: Session, run_id: int, number: int, settings: BillRunSettings, *,
                 enqueue: bool = True) -> str:
    """Render chunk ``number`` of the run into its files and mark it done (nothing if done or cancelled)."""
    run = session.get(BillRun, run_id)
    if run is None or run.status != "rendering":
        return f"bollettazione {run_id}: blocco {number} non elaborato ({run.status if run else 'inesistente'})"
    # The chunk row stays locked while it renders: a second copy of this job waits, then finds it done.
    chunk = session.get(BillRunChunk, (run_id, number), with_for_update=True, populate_existing=True)
    if chunk is None or chunk.status == "done":
        return f"bollettazione {run_id}: blocco {number} già elaborato"
    creditor = session.get(Creditor, run.creditor_id)
    files = RunFiles(settings, run_id)
    files.dir.mkdir(parents=True, exist_ok=True)
    rows = _chunk_positions(session, run_id, number)
    envelopes = chunk.postal and run.mode == "envelopes" or not chunk.postal
    written = _render_files(rows, files, number, creditor=creditor, envelopes=envelopes, postal=chunk.postal,
                            settings=settings)
    skipped_seqs = [item.seq for item, _ in rows if item.seq in written.skipped]
    if skipped_seqs:
        session.execute(sa.update(BillRunItem).where(BillRunItem.bill_run_id == run_id,
                                                     BillRunItem.seq.in_(skipped_seqs)).values(skipped=True))
    chunk.status, chunk.notices, chunk.pages, chunk.rendered_at = "done", written.notices, written.pages, utcnow()
    session.execute(sa.update(BillRun).where(BillRun.id == run_id).values(
        rendered=BillRun.rendered + written.notices, skipped=BillRun.skipped + len(skipped_seqs),
        pages=BillRun.pages + written.pages))
    session.flush()
    run = _lock_run(session, run_id)
    pending = session.scalar(sa.select(sa.func.count()).select_from(BillRunChunk).where(
        BillRunChunk.bill_run_id == run_id, BillRunChunk.status == "pending"))
    if pending == 0 and run.status == "rendering":
        run.status = "assembling"
        if enqueue:
            _enqueue(session, "billrun_finish", run, "finish")
    metrics.NOTICES_RENDERED.labels(run.mode).inc(written.notices)
    metrics.BILLRUN_PAGES.labels(run.mode).inc(written.pages)
    return f"blocco {number}: {written.notices} avvisi, {written.pages} pagine, {len(skipped_seqs)} saltati"


@dataclass
class _Written:
    notices: int = 0
    pages: int = 0
    skipped: set | None = None


def _render_files(rows, files: RunFiles, number: int, *, creditor, envelopes: bool, postal: bool,
                  settings: BillRunSettings) -> _Written:
    """Write the chunk's PDF (or ZIP of PDFs) and CSV parts under temporary names, then rename them."""
    import zipfile

    written = _Written(skipped=set())
    final = {"index": files.index_part(number), "data": files.data_part(number),
             "out": files.chunk_zip(number) if envelopes else files.chunk_pdf(number)}
    tmp = {key: path.with_name(path.name + ".tmp") for key, path in final.items()}
    index, data = package.CsvPart(tmp["index"]), package.CsvPart(tmp["data"])
    try:
        if envelopes:
            out = zipfile.ZipFile(tmp["out"], "w", compression=zipfile.ZIP_STORED)
            document = None
        else:
            out = open(tmp["out"], "wb")  # noqa: SIM115 - closed below
            document = NoticeDocument(out, title=f"Avvisi di pagamento - blocco {number}")
        try:
            for done, (item, position) in enumerate(rows):
                outbox.report_progress(done, len(rows))
                options = unpaid_options(position)
                if not options:
                    written.skipped.add(item.seq)
                    continue
                name = notice_filename(position)
                try:
                    if envelopes:
                        pdf, pages = render_notice_with_pages(position, creditor=creditor)
                        out.writestr(name, pdf)
                        page_from, file = 1, name
                    else:
                        page_from = document.pages + 1
                        pages, file = document.add(position, creditor=creditor), final["out"].name
                except NoticeError:
                    written.skipped.add(item.seq)
                    continue
                address = postal_address(position.debtor) if postal else None
                if postal:
                    index.write(package.index_row(
                        envelope_id=item.seq, file=file, page_from=page_from, pages=pages,
                        sheets=sheets(pages, duplex=settings.duplex), position=position, address=address,
                        product=settings.product, navs=[o.notice_number for o in options]))
                else:
                    index.write(package.no_address_row(envelope_id=item.seq, file=file, position=position))
                for row in package.data_rows(envelope_id=item.seq, position=position, creditor=creditor,
                                             address=address, options=options):
                    data.write(row)
                written.notices += 1
                written.pages += pages
            if document is not None and document.pages:
                document.close()
            outbox.report_progress(len(rows), len(rows))
        finally:
            out.close()
    finally:
        index.close()
        data.close()
    for key, path in tmp.items():
        if key == "out" and document is not None and document.pages == 0:
            path.unlink(missing_ok=True)  # every notice of the chunk was skipped: no empty PDF
            continue
        path.replace(final[key])
    return written


# --- 4. Finish ---------------------------------------------------------------------------------------------------


def finish(session: Session, run_id: int, settings: BillRunSettings, *, actor: str = "bollettazione",
           enqueue: bool = True) -> str:
    """Write the package, mark the positions issued, and close the run (commits, then removes the parts)."""
    run = _lock_run(session, run_id)
    if run is None or run.status != "assembling":
        return f"bollettazione {run_id}: niente da completare ({run.status if run else 'inesistente'})"
    creditor = session.get(Creditor, run.creditor_id)
    chunks = session.scalars(sa.select(BillRunChunk).where(BillRunChunk.bill_run_id == run_id)
                             .order_by(BillRunChunk.number)).all()
    files = RunFiles(settings, run_id)
    files.dir.mkdir(parents=True, exist_ok=True)
    target = files.package(run)
    tmp = target.with_name(target.name + ".tmp")
    size = package.write_package(tmp, run=run, creditor=creditor, chunks=chunks, files=files)
    tmp.replace(target)
    now = utcnow()
    issued = (sa.select(BillRunItem.position_id)
              .where(BillRunItem.bill_run_id == run_id, BillRunItem.skipped.is_(False)))
    session.execute(sa.update(Position).where(Position.id.in_(issued))
                    .values(notice_issued_at=now, notice_superseded_at=None, updated_at=now),
                    execution_options={"synchronize_session": False})
    session.execute(sa.insert(Event).from_select(
        ["position_id", "kind", "at", "actor", "actor_user_id", "details"],
        sa.select(BillRunItem.position_id, sa.literal(NOTICE_ISSUED), sa.literal(now, Event.at.type),
                  sa.literal(actor), sa.literal(run.created_by_id, sa.Integer),
                  sa.literal({"bill_run_id": run.id, "mode": run.mode}, sa.JSON))
        .where(BillRunItem.bill_run_id == run_id, BillRunItem.skipped.is_(False))
        .order_by(BillRunItem.seq),
    ))
    run.status, run.file_size, run.finished_at = "done", size, now
    run.file_name = str(target.relative_to(settings.storage_dir))
    if enqueue and run.send_email:
        for chunk in chunks:
            _enqueue(session, "billrun_mail", run, f"mail-{chunk.number}", chunk.number)
    session.commit()
    metrics.BILLRUNS_FINISHED.labels(run.mode).inc()
    for chunk in chunks:
        for path in files.chunk_files(chunk.number):
            path.unlink(missing_ok=True)
    return f"pacchetto {target.name}: {run.rendered} avvisi, {run.pages} pagine, {size} byte"


# --- Cancel and restart -----------------------------------------------------------------------------------------


def cancel(session: Session, run_id: int, *, actor_user_id: int | None = None) -> BillRun:
    """Stop a run that is still working; chunks already rendered are kept for a restart.

    :raise BillRunError: if the run has already finished.
    """
    run = _lock_run(session, run_id)
    if run.status not in ("preparing", "rendering", "assembling", "failed"):
        raise BillRunError("La bollettazione è già conclusa: non si può annullare.")
    run.status, run.cancelled_by_id, run.finished_at = "cancelled", actor_user_id, utcnow()
    run.message = "Annullata dall'operatore."
    return run


def restart(session: Session, run_id: int, *, enqueue: bool = True) -> BillRun:
    """Resume a cancelled, failed or stalled run: only the chunks not yet rendered are asked for again.

    :raise BillRunError: if the run is done.
    """
    run = _lock_run(session, run_id)
    if run.status == "done":
        raise BillRunError("La bollettazione è già conclusa.")
    run.message, run.finished_at, run.cancelled_by_id = None, None, None
    if run.chunks == 0:
        session.execute(sa.delete(BillRunItem).where(BillRunItem.bill_run_id == run_id))
        run.status = "preparing"
        if enqueue:
            _enqueue(session, "billrun_prepare", run, "prepare")
        return run
    pending = session.scalars(sa.select(BillRunChunk.number).where(
        BillRunChunk.bill_run_id == run_id, BillRunChunk.status == "pending").order_by(BillRunChunk.number)).all()
    run.status = "rendering" if pending else "assembling"
    if enqueue:
        for number in pending:
            _enqueue(session, "billrun_chunk", run, f"chunk-{number}", number)
        if not pending:
            _enqueue(session, "billrun_finish", run, "finish")
    return run


def resume_active(session: Session) -> int:
    """Ask again for the missing work of every run still working (the periodic sweep; returns how many runs).

    Job ids are deterministic, so work still queued or running is not doubled, and a chunk job that lost its
    worker is simply run again: its chunk is rendered once (row lock, ``done`` check).
    """
    resumed = 0
    for run_id in session.scalars(sa.select(BillRun.id).where(BillRun.status.in_(ACTIVE_STATUSES))).all():
        # A run being finished (or cancelled) right now is locked: leave it; one that just ended is skipped.
        run = session.get(BillRun, run_id, with_for_update={"skip_locked": True}, populate_existing=True)
        if run is None or run.status not in ACTIVE_STATUSES:
            continue
        restart(session, run_id)
        resumed += 1
    return resumed


def purge_files(session: Session, settings: BillRunSettings, *, now=None) -> int:
    """Remove the files of runs that ended more than ``settings.retention_days`` ago; returns how many runs.

    A package can weigh gigabytes: once the vendor has it, the server keeps it only for a while. The run, its
    items and the positions' "notice issued" stay; the page then says the package was removed.
    """
    limit = (now or utcnow()) - timedelta(days=settings.retention_days)
    runs = session.scalars(sa.select(BillRun).where(
        BillRun.status.in_(("done", "failed", "cancelled")), BillRun.finished_at < limit,
        sa.or_(BillRun.file_name.is_not(None), BillRun.status != "done"))).all()
    purged = 0
    for run in runs:
        directory = RunFiles(settings, run.id).dir
        if run.file_name is None and not directory.exists():
            continue
        shutil.rmtree(directory, ignore_errors=True)
        if run.file_name:
            run.file_name = None
            run.message = f"Pacchetto rimosso dal server dopo {settings.retention_days} giorni."
        purged += 1
    return purged


def run_inline(session: Session, run: BillRun, settings: BillRunSettings, *, progress=None) -> BillRun:
    """Prepare, render and finish ``run`` here, one step after the other, committing each (CLI, tests, bench)."""
    prepare(session, run.id, settings, enqueue=False)
    session.commit()
    numbers = session.scalars(sa.select(BillRunChunk.number).where(
        BillRunChunk.bill_run_id == run.id, BillRunChunk.status == "pending").order_by(BillRunChunk.number)).all()
    for number in numbers:
        render_chunk(session, run.id, number, settings, enqueue=False)
        session.commit()
        if progress:
            progress(session.get(BillRun, run.id))
    finish(session, run.id, settings, enqueue=False)
    return session.get(BillRun, run.id)
