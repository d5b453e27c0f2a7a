"""Bulk uploads: the operations the back office, the REST API and the command line call.

Plain Python without Flask: each takes the session and the actor, flushes and never commits (the request or the
job wrapper commits). The flow:

1. :func:`create_import` keeps the uploaded file (streamed to disk, hashed) and asks for the dry run.
2. :func:`run_dry_run` (a job) reads the file once, streamed, checks every row with the ledger's rules and records
   the figures (per service, new / updated / unchanged) and every row error.
3. :func:`confirm` asks for the import: refused while the file has errors, unless only the valid rows are wanted.
4. :func:`run_import` (a job) reads the file again and writes the valid positions in bulk, all in one transaction:
   all or nothing. Positions reach pagoPA through the sync sweep (GPD bulk calls).

:func:`cancel_import` drops an import before it is confirmed; :func:`cancel_positions` cancels what an import
created. :func:`report_rows` and :func:`report_csv` give the row report.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import hashlib
import io
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from portal import outbox
from portal.imports import assemble, bulk, layout, reader, spill
from portal.imports.assemble import SOURCE, Assembled, RowProblem, ServiceDefaults
from portal.imports.layout import Mapping
from portal.imports.models import Import, ImportMapping, ImportRowError
from portal.ledger.errors import ValidationFailed
from portal.ledger.inputs import PositionInput
from portal.ledger.models import Creditor, PaymentOption, Position, Service
from portal.ledger.status import LedgerError, PositionStatus
from portal.ledger.types import utcnow

log = logging.getLogger(__name__)

#: Positions classified and written per batch (one query to find existing keys, one bulk write).
BATCH = 1000
#: Batches between two collections of young objects during a pass (nearly all objects die by their reference count:
#: a collection per batch walked the survivors for ~15 ms each time, for the few cycles there may be).
COLLECT_EVERY = 10
#: Rows between two progress reports of a pass over the file (each is a cheap call; the job runner throttles).
REPORT_EVERY = 250
#: The jobs (declared in portal.jobs.tasks).
CHECK_TASK = "import_check"
RUN_TASK = "import_run"
CANCEL_TASK = "import_cancel_positions"
#: Statuses whose positions an update may change: nothing was paid on them.
UPDATABLE = (PositionStatus.DRAFT, PositionStatus.PUBLISHED, PositionStatus.EXPIRED)
#: Statuses a batch cancellation takes back.
CANCELLABLE = (PositionStatus.DRAFT, PositionStatus.PUBLISHED, PositionStatus.EXPIRED)


class ImportRefused(ValueError):
    """The file or the request cannot be accepted (Italian message); nothing was changed."""


@dataclass(frozen=True)
class ImportSettings:
    """Where files are kept and how big one may be (``IMPORTS_DIR``, ``MAX_UPLOAD_MB``)."""

    storage_dir: Path
    max_bytes: int = 64 * 1024 * 1024

    @classmethod
    def from_config(cls, config) -> ImportSettings:
        return cls(storage_dir=Path(config["IMPORTS_DIR"]), max_bytes=int(config["MAX_CONTENT_LENGTH"]))


@dataclass(frozen=True)
class ImportOptions:
    """What the officer chose on upload."""

    valid_rows_only: bool = False
    update_existing: bool = False


def file_path(imp: Import, settings: ImportSettings) -> Path:
    """Where an import's file is kept."""
    return settings.storage_dir / imp.stored_name


# --- Mappings -----------------------------------------------------------------------------------------------------


def get_mapping(session: Session, service: Service) -> Mapping:
    """The service's saved mapping, or the default layout's."""
    row = session.scalar(sa.select(ImportMapping).where(ImportMapping.service_id == service.id))
    if row is None:
        return Mapping()
    return Mapping(columns=dict(row.columns or {}), fixed=dict(row.fixed or {}), date_format=row.date_format,
                   decimal=row.decimal)


def save_mapping(session: Session, service: Service, mapping: Mapping, *,
                 actor_user_id: int | None = None) -> ImportMapping:
    """Save how the service's files are read (blank entries dropped).

    :raise ImportRefused: listing what is wrong with the mapping.
    """
    mapping = Mapping(columns={k: str(v).strip() for k, v in mapping.columns.items() if str(v or "").strip()},
                      fixed={k: str(v).strip() for k, v in mapping.fixed.items() if str(v or "").strip()},
                      date_format=mapping.date_format or "auto", decimal=mapping.decimal or "auto")
    problems = mapping.problems()
    if problems:
        raise ImportRefused(" ".join(problems))
    row = session.scalar(sa.select(ImportMapping).where(ImportMapping.service_id == service.id))
    if row is None:
        row = ImportMapping(service_id=service.id)
        session.add(row)
    row.columns, row.fixed = mapping.columns, mapping.fixed
    row.date_format, row.decimal, row.updated_by_id = mapping.date_format, mapping.decimal, actor_user_id
    session.flush()
    return row


# --- 1. Upload ----------------------------------------------------------------------------------------------------


def create_import(session: Session, creditor: Creditor, service: Service, filename: str, stream: BinaryIO,
                  options: ImportOptions | None = None, *, actor: str, actor_user_id: int | None = None,
                  settings: ImportSettings, enqueue: bool = True) -> Import:
    """Keep an uploaded file and ask for its dry run (after the commit).

    :raise ImportRefused: the service is not the creditor's or not active, the file is empty, too big, binary, in
        an unknown encoding, a damaged or oversized XLSX, or the very same file was already imported.
    """
    options = options or ImportOptions()
    if service.creditor_id != creditor.id:
        raise ImportRefused("Servizio sconosciuto.")
    if not service.active:
        raise ImportRefused("Il servizio non è attivo.")
    name = Path((filename or "").replace("\\", "/")).name[:255] or "file"
    stored_name = f"{creditor.id}/{utcnow():%Y%m}/{uuid.uuid4().hex}"
    path = settings.storage_dir / stored_name
    try:
        stored = reader.store_upload(stream, path, max_bytes=settings.max_bytes)
    except reader.FileRefused as exc:
        raise ImportRefused(str(exc)) from exc
    previous = session.scalar(sa.select(Import).where(
        Import.creditor_id == creditor.id, Import.content_sha256 == stored.sha256, Import.status == "done",
    ).order_by(Import.id.desc()).limit(1))
    if previous is not None:
        path.unlink(missing_ok=True)
        raise ImportRefused(f"Questo file è già stato importato (importazione n. {previous.id}, "
                            f"«{previous.filename}»): non viene importato una seconda volta.")
    imp = Import(creditor_id=creditor.id, service_id=service.id, filename=name, stored_name=stored_name,
                 file_size=stored.size, content_sha256=stored.sha256, file_format=stored.file_format,
                 encoding=stored.encoding, delimiter=stored.delimiter,
                 mapping=get_mapping(session, service).to_json(), valid_rows_only=options.valid_rows_only,
                 update_existing=options.update_existing, status="uploaded", created_by_id=actor_user_id,
                 actor=actor, totals={})
    session.add(imp)
    session.flush()
    if enqueue:
        outbox.schedule(session, CHECK_TASK, imp.id, job_id=job_id(imp.id, "check"), creditor_id=creditor.id,
                        created_by_id=actor_user_id)
    log.info("import %s: %s (%s, %d bytes) uploaded by %s", imp.id, name, stored.file_format, stored.size, actor)
    return imp


def job_id(import_id: int, step: str) -> str:
    """The deterministic job id of an import's step (``check``, ``run``, ``cancel``)."""
    return f"import-{import_id}-{step}"


def _lock(session: Session, import_id: int) -> Import:
    imp = session.get(Import, import_id, with_for_update=True, populate_existing=True)
    if imp is None:
        raise ImportRefused("Importazione inesistente.")
    return imp


# --- The pass over the file (dry run and import) ------------------------------------------------------------------


@contextmanager
def _young_collections_only():
    """While a pass runs, the cyclic collector only looks at young objects, every few batches (:meth:`_Pass._flush`).

    A pass makes millions of short-lived objects (freed by their reference counts) while what outlives a batch (the
    keys seen) only grows: the automatic full collections would walk all of it again and again for nothing.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()



@dataclass
class _Figures:
    rows: int = 0
    rows_refused: int = 0
    errors: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    written: int = 0
    totals: dict = field(default_factory=dict)

    def add_total(self, code: str, options: int, amount: int, sign: int = 1) -> None:
        entry = self.totals.setdefault(code, {"positions": 0, "options": 0, "amount_cents": 0})
        entry["positions"] += sign
        entry["options"] += sign * options
        entry["amount_cents"] += sign * amount


class _Pass:
    """One streamed read of an import's file: rows → positions → classified (new / existing) → counted, and, when
    ``write`` is set, written."""

    def __init__(self, session: Session, imp: Import, settings: ImportSettings, *, write: bool, today: date,
                 visible_service_ids: set[int] | None, progress: Callable[[int, int | None], None] | None):
        self.session = session
        self.imp = imp
        self.write = write
        self.today = today
        self.path = file_path(imp, settings)
        self.creditor = session.get(Creditor, imp.creditor_id)
        services = session.scalars(sa.select(Service).where(Service.creditor_id == imp.creditor_id,
                                                            Service.active.is_(True))).all()
        if visible_service_ids is not None:
            services = [s for s in services if s.id in visible_service_ids or s.id == imp.service_id]
        self.services = {s.id: s for s in services}
        self.defaults = {s.code.upper(): ServiceDefaults(s.id, s.code, s.account.iban, s.taxonomy_code)
                         for s in services}
        self.visible_service_ids = visible_service_ids
        self.figures = _Figures()
        self.problems: list[RowProblem] = []
        #: key → (first row, last row, service code, options, amount, outcome) of positions already classified.
        self.seen: dict[str, tuple] = {}
        self.refused_keys: set[str] = set()
        self.pending: list[Assembled] = []
        self.progress = progress or outbox.report_progress
        self.expected_rows = imp.rows_total if write and imp.rows_total else None
        self.ctx = bulk.WriteContext(creditor=self.creditor, services=self.services, import_id=imp.id,
                                     actor=imp.actor, actor_user_id=imp.confirmed_by_id or imp.created_by_id,
                                     visible_service_ids=visible_service_ids, statistics=bulk.Statistics())
        #: Batches classified so far (the young objects are collected every :data:`COLLECT_EVERY`).
        self.flushes = 0
        #: The dry run's spill of the validated positions (see :mod:`portal.imports.spill`).
        self.spill: spill.Writer | None = None

    def fingerprint(self) -> dict:
        """Everything the validation of the file depended on: a spill made under another one is not used."""
        return {
            "sha256": self.imp.content_sha256, "mapping": self.imp.mapping, "service": self.imp.service_id,
            "today": self.today.isoformat(), "creditor": self.creditor.fiscal_code,
            "services": sorted((s.id, s.code.upper(), s.account.iban, s.taxonomy_code) for s in self.services.values()),
            "visible": sorted(self.visible_service_ids) if self.visible_service_ids is not None else None,
        }

    # -- reading

    def run(self) -> None:
        rows = reader.RowReader(self.path, file_format=self.imp.file_format, encoding=self.imp.encoding,
                                delimiter=self.imp.delimiter)
        iterator = iter(rows)
        self.progress(0, self.expected_rows or 1000)
        header = next(iterator, None)
        if header is None or not any(layout.text(c) for c in header[1]):
            self._file_problem("Il file è vuoto: manca la riga di intestazione con i nomi delle colonne.")
            return
        mapping = Mapping.from_json(self.imp.mapping)
        columns = layout.resolve_columns(header[1], mapping)
        if columns.problems:
            for message in columns.problems:
                self._file_problem(message, row=1)
            return
        self.header_of = columns.header_of
        self.ignored = columns.ignored
        service = self.session.get(Service, self.imp.service_id)
        parser = assemble.RowParser(columns, mapping, service.code.upper())

        def parsed():
            for number, cells in iterator:
                if not any(c is not None and str(c).strip() for c in cells):
                    continue
                self.figures.rows += 1
                if self.figures.rows % REPORT_EVERY == 0:
                    self._report(rows)
                yield parser.parse(number, cells)

        if not self.write:
            self.spill = spill.Writer(self.path, self.fingerprint(), self.header_of)
        try:
            with _young_collections_only(), self._writing():
                for group in assemble.group_rows(parsed()):
                    self._position(group)
                self._flush()
        except BaseException:
            if self.spill is not None:
                self.spill.discard()
            raise
        if self.figures.rows == 0:
            self._file_problem("Il file contiene solo l'intestazione: nessuna riga da importare.", row=1)
        if self.spill is not None:
            self.spill.commit()
        self._report(rows, done=True)

    def run_spilled(self, source: spill.Reader) -> None:
        """The import without reading the file again: the positions the dry run validated, classified against the
        ledger as it is now and written, batch by batch."""
        self.header_of = source.header_of
        total = max(self.imp.rows_total - self.imp.rows_refused, 1)
        self.progress(0, total)
        with _young_collections_only(), self._writing():
            self._spilled(source, total)
        self.progress(total, total)

    def _spilled(self, source: spill.Reader, total: int) -> None:
        done = 0
        for batch in source.batches():
            for item in batch:
                done += len(item.rows)
                if item.key in self.refused_keys:
                    continue
                self.pending.append(Assembled(key=item.key, first_row=item.first_row, rows=item.rows,
                                              service_code=item.service_code, data=item.data, problems=[]))
                if len(self.pending) >= BATCH:
                    self._flush()
                    self.progress(min(done, total), total)
        self._flush()

    def _writing(self):
        """While positions are written, their batches overlap with the server's work (see ``bulk.pipelined``)."""
        return bulk.pipelined(self.session, self.ctx) if self.write else contextlib.nullcontext()

    def _report(self, rows: reader.RowReader, *, done: bool = False) -> None:
        if self.expected_rows:
            self.progress(min(self.figures.rows, self.expected_rows), self.expected_rows)
        else:
            self.progress(1000 if done else int(rows.fraction() * 1000), 1000)

    def _file_problem(self, message: str, *, row: int = 0) -> None:
        self.problems.append(RowProblem(row, "", message))
        self.figures.errors += 1

    # -- positions

    def _position(self, group: list[assemble.Row]) -> None:
        position = assemble.assemble(group, self.defaults, creditor_fiscal_code=self.creditor.fiscal_code,
                                     today=self.today)
        key = position.key
        if key and key in self.seen:
            first, last = self.seen[key][:2]
            where = f"alla riga {first}" if first == last else f"alle righe {first}-{last}"
            for number in position.rows:
                position.problems.append(RowProblem(
                    number, "chiave", f"La chiave «{key}» compare già {where}: le righe di una posizione devono "
                                      "essere consecutive e una chiave non può ripetersi.", key))
            self._refuse_earlier(key)
        if key:
            self.seen[key] = (position.first_row, position.rows[-1], None)
        if key in self.refused_keys or not position.valid:
            self._refuse(position)
            return
        self.pending.append(position)
        if len(self.pending) >= BATCH:
            self._flush()

    def _refuse(self, position: Assembled) -> None:
        if position.key:
            self.refused_keys.add(position.key)
        self.figures.rows_refused += len(position.rows)
        self.figures.refused += 1
        self.problems.extend(position.problems)
        self.figures.errors += len(position.problems)
        if len(self.problems) >= BATCH:
            self._store_problems()

    def _refuse_earlier(self, key: str) -> None:
        """A key seen again: the position of its first rows is refused too (its figures taken back)."""
        self.refused_keys.add(key)
        for i, position in enumerate(self.pending):
            if position.key == key:
                del self.pending[i]
                self.figures.refused += 1
                self.figures.rows_refused += len(position.rows)
                return
        entry = self.seen.get(key)
        if entry and entry[2] is not None:
            outcome, code, options, amount = entry[2]
            setattr(self.figures, outcome, getattr(self.figures, outcome) - 1)
            self.figures.add_total(code, options, amount, sign=-1)
            self.figures.refused += 1
            self.figures.rows_refused += entry[1] - entry[0] + 1

    def _flush(self) -> None:
        """Classify the pending positions against what is stored, count them, and write them if asked."""
        batch, self.pending = self.pending, []
        self.flushes += 1
        if self.flushes % COLLECT_EVERY == 0:
            gc.collect(1)
        if not batch:
            self._store_problems()
            return
        existing = self._existing([p.key for p in batch])
        new: list[PositionInput] = []
        for position in batch:
            stored = existing.get(position.key)
            outcome = "new"
            if stored is not None:
                outcome = self._compare(position, stored)
                if outcome is None:
                    continue
            code = position.service_code
            amount = position.data.single.amount_cents if position.data.single else \
                sum(o.amount_cents for o in position.data.installments)
            setattr(self.figures, outcome, getattr(self.figures, outcome) + 1)
            self.figures.add_total(code, position.option_count, amount)
            if not self.write:  # what a key repeated further down takes back (the dry run refuses it)
                self.seen[position.key] = (*self.seen[position.key][:2], (outcome, code, position.option_count,
                                                                          amount))
            if self.write and outcome == "new":
                new.append(position.data)
            elif self.write and outcome == "updated":
                self._update(stored, position)
        if new:
            bulk.write_new_positions(self.session, self.ctx, new)
            self.figures.written += len(new)
        if self.spill is not None:
            self.spill.add([spill.Spilled(p.key, p.first_row, p.rows, p.service_code, p.data) for p in batch])
        self._store_problems()

    def _existing(self, keys: list[str]) -> dict[str, Position]:
        """The stored positions of these keys (one query; the options too when they may be updated)."""
        mine = (Position.creditor_id == self.imp.creditor_id, Position.source == SOURCE)
        bulk.wait(self.ctx)
        if self.session.get_bind().dialect.name == "postgresql":
            # One probe of the unique index per key whatever the statistics say: during a large import they are
            # stale (the table grows inside the transaction) and an IN list was planned as a scan of every
            # imported position for each batch.
            # Never prepared: psycopg prepares a statement run five times, and the generic plan of this one probes
            # nothing (seconds per batch instead of milliseconds).
            raw = self.session.connection().connection.driver_connection
            ids = [row[0] for row in raw.execute(
                "SELECT p.id FROM unnest(%(keys)s::text[]) AS k(key) CROSS JOIN LATERAL "
                "(SELECT id FROM positions WHERE creditor_id = %(creditor)s AND source = %(source)s "
                "AND external_id = k.key LIMIT 1) AS p",
                {"keys": keys, "creditor": self.imp.creditor_id, "source": SOURCE}, prepare=False)]
            if not ids:
                return {}
            query = sa.select(Position).where(Position.id.in_(ids))
        else:
            query = sa.select(Position).where(*mine, Position.external_id.in_(keys))
        if self.imp.update_existing:
            # What the ORM loads (and may update) must be what is stored, the debtors' last refreshes included.
            bulk.settle(self.ctx)
            query = query.options(selectinload(Position.options).selectinload(PaymentOption.transfers),
                                  selectinload(Position.debtor))
        return {p.external_id: p for p in self.session.scalars(query)}

    def _compare(self, position: Assembled, stored: Position) -> str | None:
        """``unchanged`` or ``updated`` for a key already stored; ``None`` (refused) when it may not be updated."""
        if stored.service_id not in self.services or stored.service_id != position.data.service_id:
            self._refuse_existing(position, "servizio", "La chiave è già usata da una posizione di un altro servizio.")
            return None
        if not self.imp.update_existing or not differs(stored, position.data):
            return "unchanged"
        if stored.status not in UPDATABLE or stored.paid_cents:
            self._refuse_existing(position, "chiave", "La posizione esiste già ed è pagata (in tutto o in parte) o "
                                                      "chiusa: non può essere aggiornata.")
            return None
        return "updated"

    def _refuse_existing(self, position: Assembled, name: str, message: str) -> None:
        position.problems.append(RowProblem(position.first_row, name, message, position.key))
        self._refuse(position)

    def _update(self, stored: Position, position: Assembled) -> None:
        """Update an unpaid position through the ledger (a new version goes to pagoPA through the sync)."""
        from portal.ledger import changes

        try:
            with self.session.begin_nested():
                outcome = changes.update_position(
                    self.session, stored, position.data, actor=self.imp.actor, actor_user_id=self.ctx.actor_user_id,
                    reason=f"Importazione n. {self.imp.id}", today=self.today,
                    visible_service_ids=self.visible_service_ids)
        except ValidationFailed as exc:
            for error in exc.errors:
                position.problems.append(RowProblem(position.first_row, "", error.message, position.key))
            self._refused_while_writing(position)
            return
        except LedgerError as exc:
            position.problems.append(RowProblem(position.first_row, "chiave", str(exc), position.key))
            self._refused_while_writing(position)
            return
        if outcome.changed:
            self.figures.written += 1

    def _refused_while_writing(self, position: Assembled) -> None:
        self.figures.updated -= 1
        self._refuse(position)

    # -- the report

    def _store_problems(self) -> None:
        if not self.problems:
            return
        problems, self.problems = self.problems, []
        if self.write:
            self.late_problems = getattr(self, "late_problems", []) + problems
            return
        headers = getattr(self, "header_of", {})
        self.session.execute(sa.insert(ImportRowError), [{
            "import_id": self.imp.id, "row_number": p.row, "column": _column_label(p.field, headers),
            "field": p.field[:60], "key": (p.key or None) and p.key[:100], "message": p.message,
        } for p in problems])


def _column_label(name: str, headers: dict[str, str]) -> str:
    if not name:
        return ""
    return (headers.get(name) or name)[:100]


def differs(position: Position, data: PositionInput) -> bool:
    """Whether the stored position says something other than ``data`` (validated): debtor, subject, options."""
    debtor = position.debtor
    if (debtor.fiscal_code, debtor.name) != (data.debtor.fiscal_code, data.debtor.name):
        return True
    if position.subject != data.subject:
        return True
    wanted = ([("single", None, data.single)] if data.single else []) + [
        ("installment", n, o) for n, o in enumerate(data.installments, start=1)]
    have = [o for o in position.options if o.status.value != "cancelled"]
    if len(have) != len(wanted):
        return True
    for stored, (kind, number, option) in zip(have, wanted, strict=True):
        if (stored.kind, stored.installment_number, stored.amount_cents, stored.due_date) != \
                (kind, number, option.amount_cents, option.due_date):
            return True
        if [(t.amount_cents, t.iban, t.taxonomy_code, t.beneficiary_fiscal_code) for t in stored.transfers] != \
                [(t.amount_cents, t.iban, t.taxonomy_code, t.beneficiary_fiscal_code) for t in option.transfers]:
            return True
    return False


# --- 2. Dry run ---------------------------------------------------------------------------------------------------


def run_dry_run(session: Session, import_id: int, *, settings: ImportSettings, today: date | None = None,
                visible_service_ids: set[int] | None = None,
                progress: Callable[[int, int | None], None] | None = None) -> Import:
    """Read the file, check every row, and record the figures and the row errors; nothing else is written."""
    imp = _lock(session, import_id)
    if imp.status not in ("uploaded", "checking", "checked", "failed"):
        return imp
    imp.status = "checking"
    session.execute(sa.delete(ImportRowError).where(ImportRowError.import_id == imp.id))
    spill.discard(file_path(imp, settings))
    work = _Pass(session, imp, settings, write=False, today=today or date.today(),
                 visible_service_ids=visible_service_ids, progress=progress)
    try:
        work.run()
    except reader.FileRefused as exc:
        work._file_problem(str(exc))
    work._store_problems()
    f = work.figures
    imp.rows_total, imp.rows_refused, imp.error_count = f.rows, f.rows_refused, f.errors
    imp.positions_new, imp.positions_updated, imp.positions_unchanged = f.new, f.updated, f.unchanged
    imp.positions_refused, imp.totals = f.refused, f.totals
    imp.status, imp.checked_at = "checked", utcnow()
    ignored = getattr(work, "ignored", [])
    imp.message = ("Colonne non previste, ignorate: " + ", ".join(f"«{c}»" for c in ignored[:20]) + "."
                   if ignored else None)
    session.flush()
    log.info("import %s checked: %d rows, %d errors, %d new, %d to update, %d unchanged", imp.id, f.rows, f.errors,
             f.new, f.updated, f.unchanged)
    return imp


def refusal(imp: Import) -> str | None:
    """Why an import cannot be confirmed now (Italian), or ``None`` when it can."""
    if imp.status != "checked":
        return {"uploaded": "La verifica del file non è ancora iniziata.",
                "checking": "La verifica del file è in corso.",
                "importing": "L'importazione è già in corso.", "done": "Il file è già stato importato.",
                "cancelled": "L'importazione è stata annullata.",
                "failed": "L'importazione non è riuscita: caricare di nuovo il file."}.get(imp.status, imp.status)
    if imp.error_count and not imp.valid_rows_only:
        return (f"Il file contiene {imp.error_count} errori: nulla viene importato. Correggere il file e caricarlo di "
                "nuovo, oppure scegliere «importa solo le righe valide».")
    if imp.positions_new + imp.positions_updated == 0:
        return "Nessuna posizione da importare: sono tutte già presenti così come nel file."
    return None


# --- 3. Confirm ---------------------------------------------------------------------------------------------------


def confirm(session: Session, import_id: int, *, actor: str, actor_user_id: int | None = None,
            enqueue: bool = True) -> Import:
    """Ask for the import of a checked file (after the commit); confirming again changes nothing.

    :raise ImportRefused: the dry run is not done, found errors (without "valid rows only"), or nothing to write.
    """
    imp = _lock(session, import_id)
    if imp.status in ("importing", "done") and imp.confirmed_at is not None:
        return imp
    reason = refusal(imp)
    if reason:
        raise ImportRefused(reason)
    imp.status, imp.confirmed_at, imp.confirmed_by_id = "importing", utcnow(), actor_user_id
    imp.actor = actor
    session.flush()
    if enqueue:
        outbox.schedule(session, RUN_TASK, imp.id, job_id=job_id(imp.id, "run"), creditor_id=imp.creditor_id,
                        created_by_id=actor_user_id, total=imp.rows_total)
    return imp


# --- 4. Import ----------------------------------------------------------------------------------------------------


def run_import(session: Session, import_id: int, *, settings: ImportSettings, today: date | None = None,
               visible_service_ids: set[int] | None = None, enqueue: bool = True,
               progress: Callable[[int, int | None], None] | None = None) -> Import:
    """Write the confirmed import's valid positions, all in the caller's transaction.

    The file is checked again as it is written (the ledger may have changed since the dry run). Without "valid
    rows only", a problem found now undoes everything written (rollback) and the import fails, saying so.
    """
    imp = _lock(session, import_id)
    if imp.status != "importing":
        return imp
    reported = set(session.execute(sa.select(ImportRowError.row_number, ImportRowError.message).where(
        ImportRowError.import_id == imp.id)).tuples())
    refused = set(session.scalars(sa.select(ImportRowError.key).where(
        ImportRowError.import_id == imp.id, ImportRowError.key.is_not(None)).distinct()))
    file_level = session.scalar(sa.select(sa.func.count()).select_from(ImportRowError).where(
        ImportRowError.import_id == imp.id, ImportRowError.row_number <= 1, ImportRowError.key.is_(None)))
    work = _Pass(session, imp, settings, write=True, today=today or date.today(),
                 visible_service_ids=visible_service_ids, progress=progress)
    work.refused_keys |= refused
    try:
        if file_level:
            raise reader.FileRefused("Il file ha errori che ne impediscono la lettura.")
        source = spill.open_matching(work.path, work.fingerprint())
        if source is not None:
            # What the dry run validated, unless something validation depends on changed since (then: read again).
            f = work.figures
            f.rows, f.refused, f.rows_refused = imp.rows_total, imp.positions_refused, imp.rows_refused
            work.run_spilled(source)
        else:
            work.run()
    except reader.FileRefused as exc:
        return _fail(session, import_id, str(exc), settings=settings)
    # Problems the dry run did not report: the ledger changed since (a key taken, a position paid, a date passed).
    late = [p for p in getattr(work, "late_problems", []) if (p.row, p.message) not in reported]
    if late and not imp.valid_rows_only:
        first = late[0]
        return _fail(session, import_id, f"Durante l'importazione la riga {first.row} non è più valida: "
                                         f"{first.message} Nulla è stato importato; verificare di nuovo il file.",
                     problems=late, settings=settings)
    if late:
        _store(session, imp.id, late, getattr(work, "header_of", {}))
        imp.error_count += len(late)
    f = work.figures
    imp.imported = f.written
    imp.positions_new, imp.positions_updated, imp.positions_unchanged = f.new, f.updated, f.unchanged
    imp.positions_refused, imp.totals = f.refused, f.totals
    imp.status, imp.finished_at = "done", utcnow()
    session.flush()
    spill.discard(work.path)
    if enqueue and f.written:
        # The periodic sweep publishes new positions in GPD bulk calls; ask for one now instead of in 30 s.
        outbox.schedule(session, "sync_sweep", job_id=f"sync-sweep-import-{imp.id}", creditor_id=imp.creditor_id)
    log.info("import %s done: %d positions written (%d new, %d updated)", imp.id, f.written, f.new, f.updated)
    return imp


def _fail(session: Session, import_id: int, message: str, *, problems: list[RowProblem] | None = None,
          settings: ImportSettings) -> Import:
    """Undo whatever the import wrote and mark it failed, with the reason and the new row errors."""
    session.rollback()
    imp = _lock(session, import_id)
    spill.discard(file_path(imp, settings))
    imp.status, imp.finished_at, imp.message = "failed", utcnow(), message
    if problems:
        _store(session, imp.id, problems, {})
        imp.error_count += len(problems)
    session.flush()
    log.warning("import %s failed: %s", import_id, message)
    return imp


def _store(session: Session, import_id: int, problems: list[RowProblem], headers: dict[str, str]) -> None:
    session.execute(sa.insert(ImportRowError), [{
        "import_id": import_id, "row_number": p.row, "column": _column_label(p.field, headers), "field": p.field[:60],
        "key": (p.key or None) and p.key[:100], "message": p.message} for p in problems])


# --- Cancel -------------------------------------------------------------------------------------------------------


def cancel_import(session: Session, import_id: int, *, actor_user_id: int | None = None,
                  settings: ImportSettings | None = None) -> Import:
    """Drop an import that was not confirmed; its file and report stay for the record (the dry run's spill goes,
    when ``settings`` say where it is).

    :raise ImportRefused: once it is importing or imported (cancel its positions instead).
    """
    imp = _lock(session, import_id)
    if imp.status == "cancelled":
        return imp
    if imp.status in ("importing", "done"):
        raise ImportRefused("L'importazione è già confermata: annullare invece le posizioni importate.")
    imp.status, imp.cancelled_at, imp.cancelled_by_id = "cancelled", utcnow(), actor_user_id
    session.flush()
    if settings is not None:
        spill.discard(file_path(imp, settings))
    return imp


def cancellable_positions(session: Session, import_id: int) -> sa.Select:
    """Ids of the import's positions that can still be cancelled (nothing paid)."""
    return sa.select(Position.id).where(Position.import_id == import_id, Position.status.in_(CANCELLABLE),
                                        Position.paid_cents == 0)


def request_cancel_positions(session: Session, import_id: int, *, reason: str, actor: str,
                             actor_user_id: int | None = None) -> int:
    """Ask for the cancellation of every cancellable position of an import (a job); returns how many.

    :raise ImportRefused: without a reason, or when nothing can be cancelled.
    """
    imp = _lock(session, import_id)
    reason = " ".join((reason or "").split())
    if not reason:
        raise ImportRefused("Indicare il motivo dell'annullamento.")
    count = session.scalar(sa.select(sa.func.count()).select_from(cancellable_positions(session, imp.id).subquery()))
    if not count:
        raise ImportRefused("Nessuna posizione di questa importazione si può annullare (pagate o già annullate).")
    outbox.schedule(session, CANCEL_TASK, imp.id, reason[:400], actor, actor_user_id or 0,
                    job_id=job_id(imp.id, "cancel"), creditor_id=imp.creditor_id, created_by_id=actor_user_id,
                    total=count)
    imp.message = f"Annullamento richiesto da {actor}: {reason[:400]}"
    session.flush()
    return count


def cancel_positions(session: Session, import_id: int, *, reason: str, actor: str,
                     actor_user_id: int | None = None) -> int:
    """Cancel every cancellable position of an import (each through the ledger: event, pagoPA invalidation)."""
    from portal.ledger import services as ledger

    ids = list(session.scalars(cancellable_positions(session, import_id).order_by(Position.id)))
    done = 0
    for start in range(0, len(ids), 500):
        for position in session.scalars(sa.select(Position).where(Position.id.in_(ids[start:start + 500]))
                                        .options(selectinload(Position.options))):
            try:
                ledger.cancel_position(session, position, reason=reason, actor=actor, actor_user_id=actor_user_id)
            except LedgerError:
                continue
            done += 1
        session.flush()
        outbox.report_progress(min(start + 500, len(ids)), len(ids))
    return done


# --- What officers see --------------------------------------------------------------------------------------------


def report_rows(session: Session, import_id: int, *, after: int | None = None,
                limit: int = 200) -> list[ImportRowError]:
    """A page of the row report, by row number then id; ``after`` is the id of the last error of the previous page
    (the keyset is the pair, since a problem found late, such as a repeated key, may belong to an earlier row)."""
    query = sa.select(ImportRowError).where(ImportRowError.import_id == import_id)
    if after is not None:
        last = session.scalar(sa.select(ImportRowError.row_number).where(
            ImportRowError.import_id == import_id, ImportRowError.id == after))
        if last is not None:
            query = query.where(sa.tuple_(ImportRowError.row_number, ImportRowError.id) > sa.tuple_(last, after))
        else:
            query = query.where(ImportRowError.id > after)
    return list(session.scalars(query.order_by(ImportRowError.row_number, ImportRowError.id).limit(limit)))


REPORT_HEADER = ("riga", "colonna", "chiave", "errore")


def report_csv(session: Session, import_id: int) -> Iterator[str]:
    """The row report as CSV text (``;``, UTF-8 with BOM), streamed; cells safe against formula injection."""
    from portal.reports.exports import csv_safe

    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    out.write("\ufeff")
    writer.writerow(REPORT_HEADER)
    query = (sa.select(ImportRowError.row_number, ImportRowError.column, ImportRowError.key, ImportRowError.message)
             .where(ImportRowError.import_id == import_id).order_by(ImportRowError.row_number, ImportRowError.id))
    for n, row in enumerate(session.execute(query.execution_options(yield_per=1000)), start=1):
        writer.writerow([row[0], csv_safe(row[1]), csv_safe(row[2] or ""), csv_safe(row[3])])
        if n % 500 == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


@dataclass(frozen=True)
class PagoPACounts:
    """How the import's positions stand with pagoPA."""

    total: int
    on_pagopa: int
    pending: int
    failing: int
    cancelled: int


def pagopa_counts(session: Session, import_id: int) -> PagoPACounts:
    """How many of the import's positions pagoPA confirmed, are on their way, failed, or were cancelled."""
    row = session.execute(sa.select(
        sa.func.count(),
        sa.func.count().filter(Position.pagopa_synced_target == "published"),
        sa.func.count().filter(Position.sync_pending.is_(True)),
        sa.func.count().filter(Position.sync_error.is_not(None)),
        sa.func.count().filter(Position.status == PositionStatus.CANCELLED),
    ).where(Position.import_id == import_id)).one()
    return PagoPACounts(*row)


def on_pagopa(session: Session, import_ids: list[int]) -> dict[int, int]:
    """How many positions of each of these imports pagoPA confirmed (one query, for the list of imports)."""
    if not import_ids:
        return {}
    rows = session.execute(sa.select(Position.import_id, sa.func.count()).where(
        Position.import_id.in_(import_ids), Position.pagopa_synced_target == "published",
    ).group_by(Position.import_id))
    return {import_id: count for import_id, count in rows}


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file on disk (the CLI says whether it was imported before)."""
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(reader.BLOCK):
            digest.update(block)
    return digest.hexdigest()
