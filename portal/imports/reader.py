"""Reading an uploaded file as rows of cells, streamed: CSV (any of ``;`` ``,`` tab, UTF-8 with or without BOM or
Windows-1252) or XLSX (openpyxl in read-only mode, after a check of the zip directory against zip bombs).

On upload, :func:`store_upload` copies the stream to disk in blocks while hashing it, recognising the format by its
first bytes (never by the file name) and checking the encoding of a CSV over the whole file, so a problem of the
whole file is said at once and the dry run can trust what it reads. :func:`iter_rows` then yields one row at a time:
memory does not grow with the file.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: Bytes read from the upload at a time.
BLOCK = 1024 * 1024
#: XLSX guards: what the zip directory may announce once uncompressed, in total and per entry, and how many
#: times an entry may be smaller than what it expands to (ordinary sheets compress 5-30 times; bombs thousands).
XLSX_MAX_UNCOMPRESSED = 1024 * 1024 * 1024
XLSX_MAX_RATIO = 200
XLSX_MAX_ENTRIES = 10_000
#: Entries smaller than this are not held to the ratio (tiny XML parts compress oddly).
XLSX_RATIO_FLOOR = 1024 * 1024
ZIP_MAGIC = b"PK\x03\x04"
#: A field of a CSV may be long (a full address), never megabytes.
CSV_FIELD_LIMIT = 100_000


class FileRefused(ValueError):
    """The file as a whole cannot be read (Italian message for the officer); nothing of it is imported."""


@dataclass(frozen=True)
class Stored:
    """What :func:`store_upload` found: size, hash, format, and for a CSV its encoding and separator."""

    size: int
    sha256: str
    file_format: str
    encoding: str | None = None
    delimiter: str | None = None


def store_upload(stream: BinaryIO, path: Path, *, max_bytes: int) -> Stored:
    """Copy ``stream`` to ``path`` in blocks, hashing it and recognising its format and encoding.

    :raise FileRefused: empty, too big, binary, neither UTF-8 nor Windows-1252, or an XLSX that is not a sound
        zip (the partial file is removed).
    """
    digest = hashlib.sha256()
    size = 0
    head = b""
    utf8 = codecs.getincrementaldecoder("utf-8")()
    utf8_ok = True
    has_nul = False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "wb") as out:
            while block := stream.read(BLOCK):
                size += len(block)
                if size > max_bytes:
                    raise FileRefused(f"Il file supera la dimensione massima di {max_bytes // (1024 * 1024)} MB.")
                digest.update(block)
                out.write(block)
                if len(head) < 4096:
                    head += block[: 4096 - len(head)]
                if not head.startswith(ZIP_MAGIC):
                    has_nul = has_nul or b"\x00" in block
                    if utf8_ok:
                        try:
                            utf8.decode(block)
                        except UnicodeDecodeError:
                            utf8_ok = False
        if size == 0 or not head.strip(b" \t\r\n\xef\xbb\xbf"):
            raise FileRefused("Il file è vuoto.")
        if head.startswith(ZIP_MAGIC):
            check_xlsx(path)
            return Stored(size=size, sha256=digest.hexdigest(), file_format="xlsx")
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise FileRefused("Il file è in codifica UTF-16 («Testo Unicode»): salvarlo come CSV UTF-8 o come XLSX.")
        if has_nul:
            raise FileRefused("Il file non è un CSV né un XLSX: contiene dati binari. Caricare un file CSV o XLSX.")
        if utf8_ok:
            try:
                utf8.decode(b"", final=True)
            except UnicodeDecodeError:
                utf8_ok = False
        encoding = ("utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8") if utf8_ok else "cp1252"
        if encoding == "cp1252":
            _check_cp1252(path)
        return Stored(size=size, sha256=digest.hexdigest(), file_format="csv", encoding=encoding,
                      delimiter=_sniff_delimiter(head.decode(encoding, errors="replace")))
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _check_cp1252(path: Path) -> None:
    """A text that is not UTF-8 must be Windows-1252 all through (the five bytes it leaves undefined refuse it)."""
    decoder = codecs.getincrementaldecoder("cp1252")()
    line = 1
    with open(path, "rb") as source:
        while block := source.read(BLOCK):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                line += block[: exc.start].count(b"\n")
                raise FileRefused(
                    f"Codifica del testo non riconosciuta (né UTF-8 né Windows-1252), riga {line}: salvare il file "
                    "come CSV UTF-8 o come XLSX.") from exc
            line += block.count(b"\n")


def _sniff_delimiter(head: str) -> str:
    """The separator of the header line: the most frequent of ``;``, ``,`` and tab (``;`` on a tie, as Italian
    Excel writes)."""
    first = next((line for line in head.lstrip("\ufeff").splitlines() if line.strip()), "")
    counts = {sep: first.count(sep) for sep in (";", ",", "\t")}
    best = max(counts.values())
    if best == 0:
        return ";"
    return next(sep for sep in (";", ",", "\t") if counts[sep] == best)


def check_xlsx(path: Path) -> None:
    """Refuse a zip that is not a workbook or that would expand beyond the limits (read from the zip directory
    before any entry is opened)."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FileRefused("Il file non è un XLSX valido (archivio danneggiato).") from exc
    if len(entries) > XLSX_MAX_ENTRIES:
        raise FileRefused("Il file XLSX contiene troppe parti: non viene aperto.")
    total = sum(e.file_size for e in entries)
    if total > XLSX_MAX_UNCOMPRESSED:
        raise FileRefused(f"Il file XLSX, decompresso, supererebbe {XLSX_MAX_UNCOMPRESSED // 1024 ** 3} GB: non viene "
                          "aperto (possibile «zip bomb»).")
    for entry in entries:
        if entry.file_size > XLSX_RATIO_FLOOR and entry.file_size > XLSX_MAX_RATIO * max(entry.compress_size, 1):
            raise FileRefused("Il file XLSX contiene una parte compressa in modo anomalo: non viene aperto "
                              "(possibile «zip bomb»).")
    names = {e.filename for e in entries}
    if "xl/workbook.xml" not in names:
        raise FileRefused("Il file è un archivio ZIP ma non un foglio XLSX: caricare un file CSV o XLSX.")


class RowReader:
    """The rows of a stored file, header first, as lists of cells; ``fraction`` says how far reading got."""

    def __init__(self, path: Path, *, file_format: str, encoding: str | None = None, delimiter: str | None = None):
        self.path = path
        self.file_format = file_format
        self.encoding = encoding
        self.delimiter = delimiter or ";"
        self._raw = None
        self._rows_hint: int | None = None
        self._row = 0

    def fraction(self) -> float:
        """Share of the file read so far (bytes for a CSV, rows of the sheet's declared size for an XLSX)."""
        if self._raw is not None:
            try:
                return min(1.0, self._raw.tell() / max(self.path.stat().st_size, 1))
            except (OSError, ValueError):
                return 0.0
        if self._rows_hint:
            return min(1.0, self._row / self._rows_hint)
        return 0.0

    def __iter__(self) -> Iterator[tuple[int, list]]:
        """``(row number as a spreadsheet shows it, cells)`` for every row, the header (row 1) first."""
        if self.file_format == "xlsx":
            yield from self._xlsx()
        else:
            yield from self._csv()

    def _csv(self):
        csv.field_size_limit(CSV_FIELD_LIMIT)
        with open(self.path, "rb") as raw:
            self._raw = raw
            text = io.TextIOWrapper(raw, encoding=self.encoding or "utf-8", newline="")
            reader = csv.reader(text, delimiter=self.delimiter)
            try:
                for cells in reader:
                    yield self._next(), cells
            except csv.Error as exc:
                raise FileRefused(f"Il CSV non si legge oltre la riga {self._row}: {_csv_problem(exc)}.") from exc
            finally:
                self._raw = None

    def _next(self) -> int:
        self._row += 1
        return self._row

    def _xlsx(self):
        import openpyxl
        from openpyxl.utils.exceptions import InvalidFileException

        check_xlsx(self.path)
        source = open(self.path, "rb")  # noqa: SIM115 - closed below; a file object: the stored name has no suffix
        try:
            workbook = openpyxl.load_workbook(source, read_only=True, data_only=True)
        except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
            source.close()
            raise FileRefused("Il file non è un XLSX valido.") from exc
        except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds on a damaged workbook
            source.close()
            raise FileRefused(f"Il file XLSX non si legge ({type(exc).__name__}).") from exc
        try:
            sheet = workbook.worksheets[0] if workbook.worksheets else None
            if sheet is None:
                return
            try:
                self._rows_hint = sheet.max_row
            except Exception:  # noqa: BLE001 - no dimension record
                self._rows_hint = None
            try:
                for values in sheet.iter_rows(values_only=True):
                    yield self._next(), list(values)
            except (KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
                raise FileRefused(f"Il file XLSX non si legge oltre la riga {self._row}.") from exc
        finally:
            workbook.close()
            source.close()


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"un campo supera {CSV_FIELD_LIMIT} caratteri (virgolette non chiuse?)"
    if "NUL" in text:
        return "contiene caratteri nulli"
    return "virgolette non bilanciate o righe malformate"
