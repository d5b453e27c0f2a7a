"""Exports of positions, one row per payment option, as CSV or XLSX (plain Python: no Flask here).

Positions are read by keyset batches (:func:`portal.ledger.queries.iter_positions`) and each batch's options are
loaded with one query, so an export of a million rows costs flat memory and no query per position.

Two layouts: the Italian one an accountant opens in a spreadsheet (the back office's default: ``;``, Italian
headers and statuses, euros with a decimal comma, dates ``gg/mm/aaaa``), and the machine one for other systems
(``,``, the column names of :data:`COLUMNS`, cents, ISO dates and timestamps with their offset, status codes).

Text that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return at the start) is
neutralised: CSV cells get a leading apostrophe, XLSX cells are written as typed strings shown as text.
"""

import csv
import io
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import IO
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from portal.formatting import format_date, format_datetime, status_label
from portal.ledger import queries
from portal.ledger.models import Creditor, PaymentOption, Position
from portal.money import format_euro

ROME = ZoneInfo("Europe/Rome")

#: The export's columns, in order (the CSV header, the XLSX first row).
COLUMNS = (
    "creditor_fiscal_code",
    "iupd",
    "external_id",
    "service_code",
    "debtor_fiscal_code",
    "debtor_name",
    "option_kind",
    "installment_number",
    "iuv",
    "notice_number",
    "amount_cents",
    "due_date",
    "status",
    "created_at",
    "published_at",
    "notice_issued_at",
    "paid_at",
    "option_status",
    "option_paid_at",
)

#: The Italian layout's header for each column.
ITALIAN_HEADERS = {
    "creditor_fiscal_code": "Codice fiscale ente",
    "iupd": "Identificativo posizione (IUPD)",
    "external_id": "Identificativo esterno",
    "service_code": "Servizio",
    "debtor_fiscal_code": "Codice fiscale debitore",
    "debtor_name": "Debitore",
    "option_kind": "Modalità",
    "installment_number": "Rata n.",
    "iuv": "IUV",
    "notice_number": "Codice avviso",
    "amount_cents": "Importo (euro)",
    "due_date": "Scadenza",
    "status": "Stato posizione",
    "created_at": "Creata il",
    "published_at": "Caricata su pagoPA il",
    "notice_issued_at": "Avviso emesso il",
    "paid_at": "Pagata il",
    "option_status": "Stato rata/opzione",
    "option_paid_at": "Opzione pagata il",
}
OPTION_KINDS = {"single": "Unica soluzione", "installment": "Rata"}
OPTION_STATUSES = {"unpaid": "Da pagare", "paid": "Pagata", "cancelled": "Annullata"}
TIMESTAMPS = frozenset({"created_at", "published_at", "notice_issued_at", "paid_at", "option_paid_at"})

#: First characters that make a spreadsheet read a cell as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

#: Positions read per keyset batch.
BATCH_SIZE = 500

XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def is_formula_like(value: object) -> bool:
    """Whether a spreadsheet would take this text as a formula."""
    return isinstance(value, str) and value.startswith(FORMULA_PREFIXES)


def _iso_date(value: date | None) -> str:
    return value.isoformat() if value else ""


def _iso_timestamp(value: datetime | None) -> str:
    """ISO 8601 in Rome time with its offset (``2027-01-31T14:05:00+01:00``)."""
    return value.astimezone(ROME).isoformat(timespec="seconds") if value else ""


def _italian_value(column: str, value, *, spreadsheet: bool):
    """One machine value the Italian way: text for CSV; numbers and dates stay typed for a spreadsheet."""
    if value in ("", None):
        return ""
    if column == "amount_cents":
        return Decimal(value) / 100 if spreadsheet else format_euro(value, symbol=False)
    if column == "due_date":
        day = date.fromisoformat(value)
        return day if spreadsheet else format_date(day)
    if column in TIMESTAMPS:
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=None) if spreadsheet else format_datetime(moment)
    if column == "status":
        return status_label(value)
    if column == "option_status":
        return OPTION_STATUSES.get(value, value)
    if column == "option_kind":
        return OPTION_KINDS.get(value, value)
    return value


@dataclass(frozen=True)
class Layout:
    """How an export writes its rows: header, CSV delimiter, and the conversion of each machine row."""

    name: str
    header: tuple[str, ...]
    delimiter: str
    convert: Callable[[tuple, bool], tuple]


def _machine(row: tuple, spreadsheet: bool) -> tuple:
    return row


def _italian(row: tuple, spreadsheet: bool) -> tuple:
    return tuple(_italian_value(c, v, spreadsheet=spreadsheet) for c, v in zip(COLUMNS, row, strict=True))


MACHINE = Layout("machine", COLUMNS, ",", _machine)
ITALIAN = Layout("it", tuple(ITALIAN_HEADERS[c] for c in COLUMNS), ";", _italian)
#: The layouts by name (``?layout=`` of the download, ``--layout`` of the CLI).
LAYOUTS = {layout.name: layout for layout in (ITALIAN, MACHINE)}


def attach_options(session: Session, positions: list[Position], *, transfers: bool = False) -> None:
    """Load the options of ``positions`` with one query and set them on each position (no N+1)."""
    if not positions:
        return
    query = (
        sa.select(PaymentOption)
        .where(PaymentOption.position_id.in_([p.id for p in positions]))
        .order_by(PaymentOption.position_id, PaymentOption.id)
    )
    if transfers:
        query = query.options(selectinload(PaymentOption.transfers))
    by_position: dict[int, list[PaymentOption]] = {p.id: [] for p in positions}
    for option in session.scalars(query):
        by_position[option.position_id].append(option)
    for position in positions:
        set_committed_value(position, "options", by_position[position.id])


def rows_for_positions(positions: Iterable[Position],
                       creditor_codes: Mapping[int, str] | None = None) -> Iterator[tuple]:
    """One tuple per payment option, in :data:`COLUMNS` order.

    Amounts and installment numbers stay integers; dates and timestamps become ISO text. Options must be loaded
    (see :func:`attach_options`), and so must each position's debtor and service.

    :param creditor_codes: fiscal code of each creditor id; looked up through the position's session if missing.
    """
    codes = dict(creditor_codes or {})
    for position in positions:
        code = codes.get(position.creditor_id)
        if code is None:
            session = sa.inspect(position).session
            code = codes[position.creditor_id] = session.get(Creditor, position.creditor_id).fiscal_code
        for option in position.options:
            yield (
                code,
                position.iupd,
                position.external_id or "",
                position.service.code,
                position.debtor.fiscal_code,
                position.debtor.name,
                option.kind,
                option.installment_number if option.installment_number is not None else "",
                option.iuv,
                option.notice_number,
                option.amount_cents,
                _iso_date(option.due_date),
                position.status.value,
                _iso_timestamp(position.created_at),
                _iso_timestamp(position.published_at),
                _iso_timestamp(position.notice_issued_at),
                _iso_timestamp(position.paid_at),
                option.status.value,
                _iso_timestamp(option.paid_at),
            )


def iter_batches(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of at most ``size`` items."""
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def export_rows(session: Session, creditor_id: int, flt: queries.PositionFilter, *, today: date | None = None,
                batch: int = BATCH_SIZE) -> Iterator[tuple]:
    """Rows of every position of one creditor matching ``flt`` (scope included), newest first, by batches."""
    code = session.scalar(sa.select(Creditor.fiscal_code).where(Creditor.id == creditor_id))
    # Same batch size as the keyset reader: each chunk is exactly one page, read before the next page expunges it.
    positions = queries.iter_positions(session, creditor_id, flt, batch=batch, today=today)
    for chunk in iter_batches(positions, batch):
        attach_options(session, chunk)
        yield from rows_for_positions(chunk, {creditor_id: code})


def csv_safe(value: object) -> object:
    """``value`` for a CSV cell: text a spreadsheet would run as a formula gets a leading apostrophe."""
    if is_formula_like(value):
        return "'" + value
    return value


def iter_csv(rows: Iterable[tuple], *, layout: Layout = MACHINE, flush_every: int = 500) -> Iterator[str]:
    """The CSV text (header first) in chunks of about ``flush_every`` rows, for a streamed response.

    The Italian layout starts with a byte-order mark, so that Excel reads the file as UTF-8.
    """
    buffer = io.StringIO()
    if layout.name == ITALIAN.name:  # the positions' Italian layout, and the accounting export's
        buffer.write("\ufeff")
    writer = csv.writer(buffer, delimiter=layout.delimiter, lineterminator="\r\n")
    writer.writerow(layout.header)
    pending = 0
    for row in rows:
        writer.writerow([csv_safe(v) for v in layout.convert(row, False)])
        pending += 1
        if pending >= flush_every:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue()


def write_csv(out: IO[str], rows: Iterable[tuple], *, layout: Layout = MACHINE) -> int:
    """Write the header and ``rows`` as CSV to a text stream; return the number of data rows."""
    counted = _Counter(rows)
    for chunk in iter_csv(counted, layout=layout):
        out.write(chunk)
    return counted.count


def write_xlsx(out: IO[bytes], rows: Iterable[tuple], *, layout: Layout = MACHINE) -> int:
    """Write the header and ``rows`` as a one-sheet XLSX workbook to a binary stream; return the data rows.

    Uses openpyxl's write-only mode, which keeps rows on disk rather than in memory. In the Italian layout amounts
    are numbers in euros and dates real dates, shown the Italian way by the spreadsheet.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Posizioni")
    sheet.append(layout.header)
    count = 0
    for row in rows:
        cells = []
        for value in layout.convert(row, True):
            if isinstance(value, Decimal | date):
                cell = WriteOnlyCell(sheet, value=value)
                cell.number_format = "#,##0.00" if isinstance(value, Decimal) else (
                    "DD/MM/YYYY HH:MM" if isinstance(value, datetime) else "DD/MM/YYYY")
                cells.append(cell)
            elif is_formula_like(value):
                # A typed string, shown as text even if someone edits the cell: never a formula.
                cell = WriteOnlyCell(sheet, value=value)
                cell.data_type = "s"
                cell.quotePrefix = True
                cells.append(cell)
            else:
                cells.append(value)
        sheet.append(cells)
        count += 1
    workbook.save(out)
    return count


def xlsx_chunks(rows: Iterable[tuple], *, layout: Layout = MACHINE, chunk_size: int = 64 * 1024,
                in_memory: int = 8 * 1024 * 1024) -> tuple[Iterator[bytes], int]:
    """The XLSX workbook of ``rows`` for a streamed response: its bytes a chunk at a time, and its size.

    A workbook is a ZIP written at the end, so it is built first in a temporary file (in memory up to
    ``in_memory`` bytes, on disk beyond), then sent and removed: memory stays flat whatever the export's size.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=in_memory)  # noqa: SIM115 (closed once sent, below)
    try:
        write_xlsx(spool, rows, layout=layout)
        size = spool.tell()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise

    def chunks():
        try:
            while chunk := spool.read(chunk_size):
                yield chunk
        finally:
            spool.close()

    return chunks(), size


def write_all_positions_csv(session: Session, out: IO[str], *, layout: Layout = MACHINE) -> int:
    """Every position of every creditor, one row per option, as CSV (``flask positions export``)."""
    creditors = session.execute(sa.select(Creditor.id, Creditor.fiscal_code).order_by(Creditor.id)).all()

    def rows():
        for creditor_id, _code in creditors:
            yield from export_rows(session, creditor_id, queries.PositionFilter())

    return write_csv(out, rows(), layout=layout)


class _Counter:
    """Wrap an iterable and count what passes through."""

    def __init__(self, items: Iterable):
        self.items = items
        self.count = 0

    def __iter__(self):
        for item in self.items:
            self.count += 1
            yield item
