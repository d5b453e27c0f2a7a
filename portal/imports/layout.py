"""The file layout: the fields of a row, the default column names, a service's mapping, and how a cell reads.

One row per payment option (the single payment or one installment); the rows of a position share its key and
follow one another. Cells are read leniently where the meaning is certain (``1.234,50`` and ``1,234.50``, dates as
``31/12/2026``, ``2026-12-31`` or Excel serial numbers, fiscal codes in lower case with spaces) and refused with
an Italian message where it is not. The rules of the ledger (:func:`portal.ledger.inputs.validate_position`) apply
afterwards, unchanged.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from portal.ledger.inputs import MAX_TRANSFERS
from portal.money import AmountError, parse_euro


@dataclass(frozen=True)
class Field:
    """A field of the layout: its default column name, whether a row needs it, and what it means."""

    name: str
    description: str
    required: bool = False
    example: str = ""


def _transfer_fields(n: int) -> list[Field]:
    fields = []
    if n > 1:
        fields += [Field(f"cf_beneficiario_{n}", f"Codice fiscale dell'ente beneficiario {n} (11 cifre)"),
                   Field(f"beneficiario_{n}", f"Denominazione dell'ente beneficiario {n}")]
    what = "del Comune (predefinito: quello del servizio)" if n == 1 else f"dell'ente beneficiario {n}"
    fields += [
        Field(f"importo_{n}", f"Quota del beneficiario {n} (la somma delle quote è l'importo della riga)"),
        Field(f"iban_{n}", f"IBAN {what}"),
        Field(f"tassonomia_{n}", f"Codice tassonomico pagoPA della quota {n}" + (" (predefinito: quello del servizio)"
                                                                                if n == 1 else "")),
        Field(f"causale_{n}", f"Causale del versamento della quota {n} (predefinita: la causale)"),
    ]
    return fields


#: Every field, in the order of the template's columns.
FIELDS: tuple[Field, ...] = (
    Field("chiave", "Identificativo della posizione nel programma del Comune: le righe di una posizione lo ripetono "
          "e si seguono; un file caricato di nuovo non crea doppioni", required=True, example="TARI-2027-000001"),
    Field("servizio", "Codice del servizio (predefinito: quello scelto al caricamento)", example="TARI"),
    Field("codice_fiscale", "Codice fiscale o partita IVA del debitore", required=True, example="RSSMRA80A01H501U"),
    Field("tipo_soggetto", "F (persona fisica) o G (persona giuridica); predefinito dal codice fiscale"),
    Field("nominativo", "Nome e cognome o ragione sociale", required=True, example="Mario Rossi"),
    Field("indirizzo", "Via o piazza", example="Via Roma"),
    Field("civico", "Numero civico", example="1"),
    Field("cap", "CAP", example="00100"),
    Field("comune", "Comune", example="Roma"),
    Field("provincia", "Sigla della provincia", example="RM"),
    Field("nazione", "Codice ISO del paese (predefinito IT)"),
    Field("email", "E-mail del debitore"),
    Field("pec", "PEC del debitore"),
    Field("causale", "Causale della posizione (al massimo 140 caratteri)", required=True, example="TARI 2027"),
    Field("tipo_pagamento", "«unica» (pagamento in unica soluzione) o «rata»; predefinito: rata se c'è il numero "
          "della rata, altrimenti unica", example="unica"),
    Field("numero_rata", "Numero della rata (1, 2, ...) per le righe di tipo rata"),
    Field("importo", "Importo in euro (1.234,50 o 1234.50)", required=True, example="120,00"),
    Field("scadenza", "Data di scadenza (gg/mm/aaaa o aaaa-mm-gg)", required=True, example="31/03/2027"),
    Field("descrizione", "Descrizione del pagamento (predefinita: la causale, con il numero della rata)"),
    *[f for n in range(1, MAX_TRANSFERS + 1) for f in _transfer_fields(n)],
)
FIELD_NAMES = tuple(f.name for f in FIELDS)
BY_NAME = {f.name: f for f in FIELDS}
REQUIRED = tuple(f.name for f in FIELDS if f.required)
#: Fields whose text is stored and shown elsewhere: refused when it begins as a spreadsheet formula.
TEXT_FIELDS = frozenset({"chiave", "nominativo", "indirizzo", "civico", "comune", "causale", "descrizione",
                         *(f"beneficiario_{n}" for n in range(2, MAX_TRANSFERS + 1)),
                         *(f"causale_{n}" for n in range(1, MAX_TRANSFERS + 1))})

DATE_FORMATS = ("auto", "%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y", "%Y%m%d", "%d/%m/%y")
DECIMALS = ("auto", ",", ".")


def normalize_header(text: object) -> str:
    """``"Codice Fiscale "`` → ``codice_fiscale``: case, spaces and dashes do not matter in column names."""
    return re.sub(r"[\s\-]+", "_", str(text or "").strip().lstrip("\ufeff").lower())


@dataclass
class Mapping:
    """How a service's files are read (see :class:`portal.imports.models.ImportMapping`)."""

    #: ``{field: header}`` where the file's column is not called as the field.
    columns: dict[str, str] = field(default_factory=dict)
    #: ``{field: value}`` used when the file has no such column, or the cell is empty.
    fixed: dict[str, str] = field(default_factory=dict)
    date_format: str = "auto"
    decimal: str = "auto"

    def to_json(self) -> dict:
        return {"columns": dict(self.columns), "fixed": dict(self.fixed), "date_format": self.date_format,
                "decimal": self.decimal}

    @classmethod
    def from_json(cls, data: dict | None) -> Mapping:
        data = data or {}
        return cls(columns=dict(data.get("columns") or {}), fixed=dict(data.get("fixed") or {}),
                   date_format=data.get("date_format") or "auto", decimal=data.get("decimal") or "auto")

    def problems(self) -> list[str]:
        """What is wrong with the mapping itself (unknown fields, formats), in Italian."""
        found = []
        for name in [*self.columns, *self.fixed]:
            if name not in BY_NAME:
                found.append(f"Campo sconosciuto «{name}».")
        headers = [normalize_header(h) for h in self.columns.values() if str(h).strip()]
        for header in sorted({h for h in headers if headers.count(h) > 1}):
            found.append(f"La colonna «{header}» è assegnata a più campi.")
        if self.date_format not in DATE_FORMATS:
            found.append("Formato della data non previsto.")
        if self.decimal not in DECIMALS:
            found.append("Separatore decimale non previsto.")
        if self.fixed.get("chiave"):
            found.append("La chiave non può essere un valore fisso: ogni posizione ha la sua.")
        return found


@dataclass
class Columns:
    """Where each field is in a file's header (0-based index), and what the header has besides."""

    index: dict[str, int]
    #: Header text of each field's column (for the row report).
    header_of: dict[str, str]
    ignored: list[str]
    problems: list[str]


def resolve_columns(header: list, mapping: Mapping) -> Columns:
    """Match a file's header row to the fields; report missing required columns and repeated ones."""
    normalized = [normalize_header(h) for h in header]
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(normalized):
        if name:
            positions.setdefault(name, []).append(i)
    index, header_of, problems, used = {}, {}, [], set()
    for f in FIELDS:
        wanted = normalize_header(mapping.columns.get(f.name) or f.name)
        found = positions.get(wanted)
        if not found:
            if f.required and not str(mapping.fixed.get(f.name) or "").strip():
                problems.append(f"Manca la colonna «{mapping.columns.get(f.name) or f.name}» (obbligatoria).")
            continue
        if len(found) > 1:
            letters = ", ".join(column_letter(i) for i in found)
            problems.append(f"La colonna «{header[found[0]]}» compare più volte (colonne {letters}).")
        index[f.name] = found[0]
        header_of[f.name] = str(header[found[0]]).strip().lstrip("\ufeff")
        used.add(found[0])
    ignored = [str(h).strip() for i, h in enumerate(header) if i not in used and normalize_header(h)]
    return Columns(index=index, header_of=header_of, ignored=ignored, problems=problems)


def column_letter(index: int) -> str:
    """0 → ``A``, 27 → ``AB``: how a spreadsheet names a column."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


# --- Cells --------------------------------------------------------------------------------------------------------


class CellError(ValueError):
    """A cell that cannot be read; the message is Italian and names the value."""


def text(value: object, *, name: str = "") -> str:
    """A cell as text, trimmed; numbers without a spurious ``.0``.

    :raise CellError: for text that a spreadsheet would run as a formula, in a field that is stored and shown.
    """
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    out = str(value).strip()
    if name in TEXT_FIELDS and out.startswith("="):
        raise CellError("Il testo inizia con «=» come una formula di foglio di calcolo: non è ammesso.")
    return out


_THOUSANDS_POINT = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$")
#: Up to 999.999.999,99 € (pagoPA's maximum) written plainly with a decimal comma, spaces around allowed.
_PLAIN_COMMA = re.compile(r"\s*(\d{1,9}),(\d\d)\s*")


def amount(value: object, *, decimal: str = "auto") -> int:
    """An amount in euro as cents: a number cell, ``1.234,50`` or ``1,234.50`` (the last separator followed by
    one or two digits is the decimal one), ``1234.5``; never rounded.

    :raise CellError: with the ledger's message for a negative, zero or malformed amount.
    """
    if type(value) is str and decimal != "." and (plain := _PLAIN_COMMA.fullmatch(value)):
        # What nearly every cell of a CSV holds (``120,50``): read at once; zero goes the long way (its message).
        cents = int(plain.group(1)) * 100 + int(plain.group(2))
        if cents:
            return cents
    if isinstance(value, bool):
        raise CellError("Importo non valido.")
    if isinstance(value, int):
        value = Decimal(value)
    elif isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        if value < 0:
            raise CellError("L'importo non può essere negativo.")
        cents = value * 100
        if cents != cents.to_integral_value():
            raise CellError("L'importo può avere al massimo due decimali.")
        value = int(cents)
        if value == 0:
            raise CellError("L'importo deve essere maggiore di zero.")
        return _checked(value)
    raw = text(value).replace(" ", "").replace("\u00a0", "").replace("€", "")
    if decimal == "." or (decimal == "auto" and "," in raw and "." in raw and raw.rfind(".") > raw.rfind(",")):
        if decimal == "auto" and not _THOUSANDS_POINT.match(raw.lstrip("-")):
            raise CellError(f"Importo non valido «{raw}»: usare il formato 1.234,56 o 1234.56.")
        # 1,234.50 → 1.234,50 (the Italian form parse_euro reads)
        raw = raw.replace(",", "").replace(".", ",")
    try:
        return parse_euro(raw)
    except AmountError as exc:
        raise CellError(str(exc)) from exc


def _checked(cents: int) -> int:
    try:
        return parse_euro(f"{cents // 100},{cents % 100:02d}")
    except AmountError as exc:
        raise CellError(str(exc)) from exc


#: Excel's day zero (serial 1 is 1900-01-01 with its leap-year bug; 60 never is a real date).
_EXCEL_EPOCH = date(1899, 12, 30)
_AUTO_PATTERNS = ("%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y")


def due_date(value: object, *, date_format: str = "auto") -> date:
    """A date: a date cell, ``31/12/2026``, ``2026-12-31``, ``20261231``, or an Excel serial number (``46387``).

    :raise CellError: when it is none of these (or an impossible date such as 31/02).
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _serial(value)
    raw = text(value)
    if not raw:
        raise CellError("Indicare una data di scadenza valida.")
    if date_format != "auto":
        try:
            return datetime.strptime(raw, date_format).date()
        except ValueError as exc:
            raise CellError(f"Data non valida «{raw}»: il formato atteso è {_pattern_label(date_format)}.") from exc
    if re.fullmatch(r"\d{8}", raw):
        try:
            return datetime.strptime(raw, "%Y%m%d").date()
        except ValueError:
            pass
    if re.fullmatch(r"\d{1,6}(\.0+)?", raw):
        return _serial(float(raw))
    candidate = raw[:10] if re.fullmatch(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?", raw) else raw
    for pattern in _AUTO_PATTERNS:
        try:
            return datetime.strptime(candidate, pattern).date()
        except ValueError:
            continue
    raise CellError(f"Data non valida «{raw}»: usare gg/mm/aaaa o aaaa-mm-gg.")


def _serial(number: float) -> date:
    """An Excel date serial (days since 1899-12-30), within years 2000-2199."""
    try:
        days = Decimal(repr(number)) if isinstance(number, float) else Decimal(number)
    except InvalidOperation as exc:
        raise CellError("Data non valida.") from exc
    if days != days.to_integral_value() or not 36526 <= days <= 109572:
        raise CellError(f"Data non valida «{number:g}»: come numero di serie di Excel dovrebbe essere un giorno tra il "
                        "2000 e il 2199.")
    return _EXCEL_EPOCH + timedelta(days=int(days))


def _pattern_label(pattern: str) -> str:
    return pattern.replace("%d", "gg").replace("%m", "mm").replace("%Y", "aaaa").replace("%y", "aa")


_SINGLE = {"", "unica", "u", "unica soluzione", "unica_soluzione", "single", "s", "0"}
_INSTALLMENT = {"rata", "r", "rate", "installment", "rateale"}


def option_kind(value: object, number: object) -> str:
    """``single`` or ``installment`` from the ``tipo_pagamento`` cell (installment when only a number is given)."""
    raw = text(value).lower()
    if raw in _INSTALLMENT:
        return "installment"
    if raw in _SINGLE:
        return "installment" if text(number) and raw == "" else "single"
    raise CellError(f"Tipo di pagamento «{text(value)}» non previsto: usare «unica» o «rata».")


def installment_number(value: object) -> int:
    """The number of an installment, 1 or more."""
    raw = text(value)
    if not raw:
        raise CellError("Indicare il numero della rata.")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise CellError(f"Numero di rata «{raw}» non valido: un numero da 1 a 100.")
    return int(raw)


# --- The template -------------------------------------------------------------------------------------------------


def template_rows() -> list[list[str]]:
    """The default layout's header and three example rows: a single payment, and a position payable at once or in
    two installments (whose sum is the single payment)."""
    header = list(FIELD_NAMES)

    def row(**values):
        return [values.get(name, "") for name in header]

    base = {"servizio": "TARI", "indirizzo": "Via Roma", "civico": "1", "cap": "00100", "comune": "Roma",
            "provincia": "RM"}
    return [
        header,
        row(**base, chiave="TARI-2027-000001", codice_fiscale="RSSMRA80A01H501U", nominativo="Mario Rossi",
            causale="TARI 2027", tipo_pagamento="unica", importo="120,00", scadenza="31/03/2027"),
        row(**base, chiave="TARI-2027-000002", codice_fiscale="80015010723", nominativo="Ditta Esempio Srl",
            causale="TARI 2027", tipo_pagamento="unica", importo="300,00", scadenza="31/03/2027"),
        row(**base, chiave="TARI-2027-000002", codice_fiscale="80015010723", nominativo="Ditta Esempio Srl",
            causale="TARI 2027", tipo_pagamento="rata", numero_rata="1", importo="150,00", scadenza="31/03/2027"),
        row(**base, chiave="TARI-2027-000002", codice_fiscale="80015010723", nominativo="Ditta Esempio Srl",
            causale="TARI 2027", tipo_pagamento="rata", numero_rata="2", importo="150,00", scadenza="30/06/2027"),
    ]


def template_csv() -> str:
    """The template as a CSV (``;``, UTF-8 with BOM so that Excel shows accents right)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerows(template_rows())
    return out.getvalue()


def template_xlsx() -> bytes:
    """The template as an XLSX workbook: the example sheet and a sheet describing each column."""
    import openpyxl

    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Posizioni")
    for row in template_rows():
        sheet.append(row)
    legend = workbook.create_sheet("Colonne")
    legend.append(["colonna", "obbligatoria", "significato"])
    for f in FIELDS:
        legend.append([f.name, "sì" if f.required else "", f.description])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
