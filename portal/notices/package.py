"""What a bill run hands to the print vendor: the index, the data file, the no-address list, and the ZIP.

Rows are written per chunk (by the job that renders it) into CSV part files without a header; the package
concatenates them, in chunk order, under one header. Cells a spreadsheet would take as formulas are neutralised.

The ZIP (stored, not deflated: the PDFs are already compressed; written by
:class:`~portal.notices.zipwriter.StoredZipWriter` in constant memory whatever the number of envelopes) holds:

- ``avvisi/``: one PDF per envelope ``<CF>_<IUV>.pdf``, or (merged) one PDF per chunk ``avvisi-00001.pdf``;
- ``indice.csv``: one row per envelope, sorted by CAP, with the file, its pages and the Poste address lines;
- ``dati.csv``: one row per payment option with every field a vendor needs to compose its own notice;
- ``senza_indirizzo.csv`` and ``senza_indirizzo/``: positions without a postal address (for e-mail or PEC);
- ``LEGGIMI.txt``: what the package contains.
"""

import csv
import io
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

from portal.formatting import format_date
from portal.ledger.notice_numbers import format_nav
from portal.money import format_euro
from portal.notices import barcodes
from portal.notices.envelopes import PostalAddress
from portal.notices.zipwriter import StoredZipWriter
from portal.reports.exports import csv_safe

INDEX_COLUMNS = (
    "envelope_id", "file", "page_from", "page_to", "pages", "sheets", "position_id", "iupd", "debtor_fiscal_code",
    "recipient_name", "address_line", "cap", "locality", "province", "country", "product", "notice_numbers",
    "amount_cents",
)
NO_ADDRESS_COLUMNS = (
    "envelope_id", "file", "position_id", "iupd", "debtor_fiscal_code", "debtor_name", "email", "pec", "street",
    "civic_number", "postal_code", "city", "province", "country", "amount_cents",
)
DATA_COLUMNS = (
    "envelope_id", "position_id", "iupd", "service_code", "subject", "debtor_fiscal_code", "debtor_name",
    "address_line", "cap", "locality", "province", "country", "email", "creditor_fiscal_code", "creditor_name",
    "cbill_code", "postal_account", "option_kind", "installment_number", "installments", "iuv", "notice_number",
    "notice_number_printed", "amount_cents", "amount", "due_date", "qr_payload", "poste_datamatrix",
)

README = """Pacchetto di bollettazione n. {run.id} - {run.title}
Ente: {creditor.name} (C.F. {creditor.fiscal_code})

avvisi/              {files}
indice.csv           una riga per busta, ordinate per CAP: file, pagine, fogli e righe dell'indirizzo (standard Poste)
dati.csv             una riga per avviso/rata con tutti i dati, per chi compone i documenti in proprio
senza_indirizzo.csv  posizioni senza indirizzo postale completo (da recapitare per e-mail o PEC): {run.without_address}
senza_indirizzo/     i loro avvisi in PDF

Buste: {envelopes}; avvisi non stampati perché nel frattempo pagati o annullati: {run.skipped}.
File CSV: UTF-8, separatore ";", importi in centesimi (colonna amount in euro con la virgola).
"""


class CsvPart:
    """A headerless CSV part file of one chunk (``;``-separated, UTF-8, formula cells neutralised)."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._writer = csv.writer(self._file, delimiter=";")
        self.rows = 0

    def write(self, row: Iterable) -> None:
        self._writer.writerow([csv_safe(value) for value in row])
        self.rows += 1

    def close(self) -> None:
        self._file.close()


def index_row(*, envelope_id: int, file: str, page_from: int, pages: int, sheets: int, position, address:
              PostalAddress, product: str, navs: list[str]) -> tuple:
    return (envelope_id, file, page_from, page_from + pages - 1, pages, sheets, position.id, position.iupd,
            position.debtor.fiscal_code, address.name, address.street, address.postal_code, address.locality,
            address.province, address.country, product, " ".join(navs), position.amount_cents - position.paid_cents)


def no_address_row(*, envelope_id: int, file: str, position) -> tuple:
    d = position.debtor
    return (envelope_id, file, position.id, position.iupd, d.fiscal_code, d.name, d.email or "", d.pec or "",
            d.street or "", d.civic_number or "", d.postal_code or "", d.city or "", d.province or "",
            d.country or "", position.amount_cents - position.paid_cents)


def data_rows(*, envelope_id: int, position, creditor, address: PostalAddress | None, options) -> list[tuple]:
    """One row per option printed on the notice (``options``: the unpaid ones, single first)."""
    d = position.debtor
    installments = sum(1 for o in options if o.kind == "installment")
    rows = []
    for option in options:
        poste = ""
        if creditor.postal_account and option.amount_cents <= barcodes.POSTE_MAX_CENTS:
            poste = barcodes.poste_payload(
                nav=option.notice_number, postal_account=creditor.postal_account, amount_cents=option.amount_cents,
                creditor_fiscal_code=creditor.fiscal_code, debtor_fiscal_code=d.fiscal_code, debtor_name=d.name,
                subject=position.subject)
        rows.append((
            envelope_id, position.id, position.iupd, position.service.code, position.subject, d.fiscal_code, d.name,
            address.street if address else "", address.postal_code if address else "",
            address.locality if address else "", address.province if address else "",
            address.country if address else "", d.email or "", creditor.fiscal_code, creditor.name,
            creditor.cbill_code or "", creditor.postal_account or "", option.kind,
            option.installment_number if option.installment_number is not None else "",
            installments or "", option.iuv, option.notice_number, format_nav(option.notice_number),
            option.amount_cents, format_euro(option.amount_cents, symbol=False), format_date(option.due_date),
            barcodes.qr_payload(option.notice_number, creditor.fiscal_code, option.amount_cents), poste,
        ))
    return rows


def _write_csv(package: StoredZipWriter, name: str, columns: tuple, parts: Iterable[Path]) -> None:
    """One CSV member: the header, then every part file's bytes in order (streamed, flat memory)."""
    header = io.StringIO()
    csv.writer(header, delimiter=";").writerow(columns)
    package.write_files(name, [part for part in parts if part.exists()], head=header.getvalue().encode("utf-8"))


def _copy_members(package: StoredZipWriter, folder: str, chunk_zip: Path) -> None:
    """Copy every PDF of a chunk's ZIP into ``folder`` of the package (sizes and CRCs come from the chunk's ZIP)."""
    if not chunk_zip.exists():
        return
    with zipfile.ZipFile(chunk_zip) as src:
        for info in src.infolist():
            with src.open(info) as data:
                package.write_stream(f"{folder}/{info.filename}", data, size=info.file_size, crc=info.CRC,
                                     mtime=time.mktime((*info.date_time, 0, 0, -1)))


def write_package(target: Path, *, run, creditor, chunks, files) -> int:
    """Assemble the ZIP at ``target`` from the chunks' files; returns its size in bytes.

    :param chunks: the run's chunks in order (``number``, ``postal``).
    :param files: the run's :class:`~portal.notices.billrun.RunFiles` (where each chunk's parts are).
    """
    postal = [c for c in chunks if c.postal]
    apart = [c for c in chunks if not c.postal]
    with StoredZipWriter(target) as package:
        for chunk in postal:
            if run.mode == "merged":
                pdf = files.chunk_pdf(chunk.number)
                if pdf.exists():
                    package.write_files(f"avvisi/{pdf.name}", [pdf])
            else:
                _copy_members(package, "avvisi", files.chunk_zip(chunk.number))
        for chunk in apart:
            _copy_members(package, "senza_indirizzo", files.chunk_zip(chunk.number))
        _write_csv(package, "indice.csv", INDEX_COLUMNS, [files.index_part(c.number) for c in postal])
        _write_csv(package, "dati.csv", DATA_COLUMNS, [files.data_part(c.number) for c in chunks])
        _write_csv(package, "senza_indirizzo.csv", NO_ADDRESS_COLUMNS, [files.index_part(c.number) for c in apart])
        envelopes = sum(c.notices for c in postal)
        described = ("un PDF per busta, <CF>_<IUV>.pdf" if run.mode == "envelopes"
                     else "PDF unici per blocco di buste, avvisi-00001.pdf, ...; pagine di ogni busta in indice.csv")
        package.write_bytes("LEGGIMI.txt", README.format(run=run, creditor=creditor, files=described,
                                                         envelopes=envelopes).encode("utf-8"))
    return target.stat().st_size
