"""From rows of cells to positions: read each row's cells, group the rows of a position, check that they agree,
and validate the position with the ledger's own rules, placing every problem on its row and column.

The rows of a position follow one another, so a position is complete as soon as the key changes and the file is
read once, in order, holding one position at a time (plus one small entry per key seen, to refuse a key that comes
back further down).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from portal.imports import layout
from portal.imports.layout import CellError, Columns, Mapping
from portal.ledger.errors import FieldError, ValidationFailed
from portal.ledger.inputs import (
    MAX_TRANSFERS,
    DebtorInput,
    OptionInput,
    PositionInput,
    TransferInput,
    validate_position,
)

#: The source of positions created by an import (``external_id`` is unique per creditor and source).
SOURCE = "import"

_DEBTOR_FIELDS = ("codice_fiscale", "tipo_soggetto", "nominativo", "indirizzo", "civico", "cap", "comune",
                  "provincia", "nazione", "email", "pec")
_DEBTOR_ATTRS = {"codice_fiscale": "fiscal_code", "tipo_soggetto": "kind", "nominativo": "name",
                 "indirizzo": "street", "civico": "civic_number", "cap": "postal_code", "comune": "city",
                 "provincia": "province", "nazione": "country", "email": "email", "pec": "pec"}
_LEDGER_DEBTOR = {attr: name for name, attr in _DEBTOR_ATTRS.items()}


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One problem of one row: its number, the field (layout name) and the message."""

    row: int
    field: str
    message: str
    key: str | None = None


@dataclass(slots=True)
class Row:
    """One row of the file, read: its cells as the ledger needs them, or the problems found reading them."""

    number: int
    key: str
    service: str
    debtor: dict
    subject: str
    kind: str | None
    installment: int | None
    amount: int | None
    due: date | None
    description: str
    transfers: list[dict]
    #: Fields whose cell could not be read (their ledger checks would only repeat the problem).
    bad: set = field(default_factory=set)
    problems: list[RowProblem] = field(default_factory=list)

    def problem(self, name: str, message: str) -> None:
        self.bad.add(name)
        self.problems.append(RowProblem(self.number, name, message, self.key or None))


@dataclass(frozen=True)
class ServiceDefaults:
    """What a service contributes to validation: its id, IBAN and taxonomy code."""

    id: int
    code: str
    iban: str
    taxonomy_code: str


@dataclass
class Assembled:
    """A complete position: its input (validated and normalised when ``problems`` is empty) and its rows."""

    key: str
    first_row: int
    rows: list[int]
    service_code: str
    data: PositionInput | None
    problems: list[RowProblem]

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def option_count(self) -> int:
        if self.data is None:
            return 0
        return (1 if self.data.single else 0) + len(self.data.installments)


class RowParser:
    """Reads the cells of each row through a header's columns and a mapping.

    Where each field is and what it defaults to is worked out once per file; a plain text cell (what a CSV holds)
    is then read without a call per cell, and a beneficiary whose cells are all empty is skipped at once.
    """

    def __init__(self, columns: Columns, mapping: Mapping, default_service: str):
        self.columns = columns
        self.mapping = mapping
        self.default_service = default_service
        self.fixed = {name: str(value).strip() for name, value in mapping.fixed.items() if str(value).strip()}
        # Only the beneficiaries the file (or the mapping) mentions at all.
        self.transfer_numbers = [n for n in range(1, MAX_TRANSFERS + 1)
                                 if any(f"{prefix}_{n}" in columns.index or f"{prefix}_{n}" in self.fixed
                                        for prefix in _TRANSFER_PREFIXES)]
        index = columns.index
        #: The text fields of a row: (field, column index or -1, fixed value or None).
        self._debtor = [(name, index.get(name, -1), self.fixed.get(name)) for name in _DEBTOR_FIELDS]
        self._spec = {name: (index.get(name, -1), self.fixed.get(name)) for name in layout.FIELD_NAMES}
        #: Per beneficiary: its number, the column indexes of its cells (to skip an empty one at once), and
        #: whether the mapping fixes any of its values.
        self._transfers = []
        for n in self.transfer_numbers:
            names = [f"{prefix}_{n}" for prefix in _TRANSFER_PREFIXES]
            self._transfers.append((n, [index[name] for name in names if name in index],
                                    any(name in self.fixed for name in names)))
        self._decimal = mapping.decimal
        self._date_format = mapping.date_format
        #: Dates and amounts already read in this file, by their text (a bill run repeats a few due dates).
        self._dates: dict[str, object] = {}

    def _raw(self, cells: list, name: str):
        i, fixed = self._spec[name]
        if i < 0:
            return fixed
        value = cells[i] if i < len(cells) else None
        if value is None or value == "" or (isinstance(value, str) and not value.strip()):
            return fixed
        return value

    def _text(self, row: Row, cells: list, size: int, name: str, i: int, fixed: str | None) -> str:
        """A text field (``read_text``): the trimmed cell, else the fixed value; a formula refused where text is
        stored and shown."""
        value = cells[i] if 0 <= i < size else None
        if type(value) is str:
            value = value.strip()
            if value:
                if value[0] != "=":
                    return value
                return self._checked(row, name, value)
            value = None
        if value is None:
            if fixed is None:
                return ""
            value = fixed
            if value[0] != "=":
                return value
        return self._checked(row, name, value)

    @staticmethod
    def _checked(row: Row, name: str, value) -> str:
        try:
            return layout.text(value, name=name)
        except CellError as exc:
            row.problem(name, str(exc))
            return ""

    def _due(self, value):
        if type(value) is not str:
            return layout.due_date(value, date_format=self._date_format)
        found = self._dates.get(value)
        if found is None:
            found = layout.due_date(value, date_format=self._date_format)
            if len(self._dates) < 10_000:
                self._dates[value] = found
        return found

    def parse(self, number: int, cells: list) -> Row:
        """One row of cells as a :class:`Row` (never raises: problems are collected on the row)."""
        row = Row(number=number, key="", service="", debtor={}, subject="", kind=None, installment=None, amount=None,
                  due=None, description="", transfers=[])
        size = len(cells)
        spec = self._spec
        text = self._text

        key = text(row, cells, size, "chiave", *spec["chiave"])[:101]
        row.key = key
        if not key:
            row.problem("chiave", "Indicare la chiave della posizione.")
        elif len(key) > 100:
            row.problem("chiave", "La chiave può avere al massimo 100 caratteri.")
        row.service = text(row, cells, size, "servizio", *spec["servizio"]).upper() or self.default_service
        row.debtor = {name: text(row, cells, size, name, i, fixed) for name, i, fixed in self._debtor}
        row.subject = text(row, cells, size, "causale", *spec["causale"])
        row.description = text(row, cells, size, "descrizione", *spec["descrizione"])
        raw = self._raw
        try:
            row.kind = layout.option_kind(raw(cells, "tipo_pagamento"), raw(cells, "numero_rata"))
        except CellError as exc:
            row.problem("tipo_pagamento", str(exc))
        if row.kind == "installment":
            try:
                row.installment = layout.installment_number(raw(cells, "numero_rata"))
            except CellError as exc:
                row.problem("numero_rata", str(exc))
        try:
            row.amount = layout.amount(raw(cells, "importo"), decimal=self._decimal)
        except CellError as exc:
            row.problem("importo", str(exc))
        try:
            row.due = self._due(raw(cells, "scadenza"))
        except CellError as exc:
            row.problem("scadenza", str(exc))
        for n, indexes, fixed in self._transfers:
            if not fixed:
                for i in indexes:
                    if i < size and cells[i] is not None and cells[i] != "":
                        break
                else:
                    continue  # every cell of this beneficiary is empty
            transfer = {"n": n, "iban": text(row, cells, size, f"iban_{n}", *spec[f"iban_{n}"]),
                        "taxonomy_code": text(row, cells, size, f"tassonomia_{n}", *spec[f"tassonomia_{n}"]),
                        "remittance": text(row, cells, size, f"causale_{n}", *spec[f"causale_{n}"]),
                        "beneficiary_fiscal_code": text(row, cells, size, f"cf_beneficiario_{n}",
                                                        *spec[f"cf_beneficiario_{n}"]) if n > 1 else "",
                        "beneficiary_name": text(row, cells, size, f"beneficiario_{n}",
                                                 *spec[f"beneficiario_{n}"]) if n > 1 else "", "amount": None}
            raw_amount = raw(cells, f"importo_{n}")
            if layout.text(raw_amount):
                try:
                    transfer["amount"] = layout.amount(raw_amount, decimal=self._decimal)
                except CellError as exc:
                    row.problem(f"importo_{n}", str(exc))
                    transfer["amount"] = False
            if any(transfer[k] for k in ("iban", "taxonomy_code", "remittance", "beneficiary_fiscal_code",
                                         "beneficiary_name", "amount")) or transfer["amount"] is False:
                row.transfers.append(transfer)
        return row


_TRANSFER_PREFIXES = ("importo", "iban", "tassonomia", "causale", "cf_beneficiario", "beneficiario")


def group_rows(rows: Iterable[Row]) -> Iterator[list[Row]]:
    """Consecutive rows with the same key, as lists (rows without a key stand alone)."""
    current: list[Row] = []
    for row in rows:
        if current and (not row.key or row.key != current[0].key):
            yield current
            current = []
        current.append(row)
    if current:
        yield current


def _debtor_signature(row: Row) -> tuple:
    from portal.ledger.identifiers import normalize_fiscal_code

    d = row.debtor
    return (normalize_fiscal_code(d["codice_fiscale"]), " ".join(d["nominativo"].split()).casefold(),
            *(" ".join(d[name].split()).casefold() for name in _DEBTOR_FIELDS[3:]))


def assemble(rows: list[Row], services: dict[str, ServiceDefaults], *, creditor_fiscal_code: str,
             today: date) -> Assembled:
    """One position from its rows: agreement between rows, options, the ledger's validation; problems placed."""
    first = rows[0]
    problems = [p for row in rows for p in row.problems]
    key = first.key

    def add(row: Row, name: str, message: str) -> None:
        problems.append(RowProblem(row.number, name, message, key or None))

    # One position, one debtor, one subject, one service.
    signature = _debtor_signature(first) if len(rows) > 1 else None
    for row in rows[1:]:
        if row.service != first.service:
            add(row, "servizio", f"Servizio diverso da quello della riga {first.number} della stessa posizione.")
        mine = _debtor_signature(row)
        if mine != signature:
            differing = next(name for name, a, b in zip(("codice_fiscale", "nominativo", *_DEBTOR_FIELDS[3:]),
                                                         signature, mine, strict=True) if a != b)
            add(row, differing, f"Dati del debitore diversi da quelli della riga {first.number}: una posizione ha un "
                                "solo debitore.")
        if " ".join(row.subject.split()) != " ".join(first.subject.split()):
            add(row, "causale", f"Causale diversa da quella della riga {first.number} della stessa posizione.")
    service = services.get(first.service)
    if service is None:
        add(first, "servizio", f"Servizio «{first.service}» sconosciuto, non attivo o non consentito.")

    # Options: at most one single payment, installments numbered once each, 1..n.
    single_row: Row | None = None
    by_number: dict[int, Row] = {}
    for row in rows:
        if row.kind == "single":
            if single_row is not None:
                add(row, "tipo_pagamento", f"Pagamento in unica soluzione già indicato alla riga {single_row.number} "
                                           "per la stessa chiave.")
            else:
                single_row = row
        elif row.kind == "installment" and row.installment is not None:
            if row.installment in by_number:
                add(row, "numero_rata", f"Rata n. {row.installment} già indicata alla riga "
                                        f"{by_number[row.installment].number} per la stessa chiave.")
            else:
                by_number[row.installment] = row
    installment_rows = [by_number[n] for n in sorted(by_number)]
    expected = list(range(1, len(installment_rows) + 1))
    if sorted(by_number) != expected and by_number:
        missing = sorted(set(range(1, max(by_number) + 1)) - set(by_number))
        if missing:
            add(installment_rows[0], "numero_rata", "Manca la rata n. " + ", ".join(map(str, missing)) + ".")
    if single_row and installment_rows and single_row.amount and all(r.amount for r in installment_rows):
        total = sum(r.amount for r in installment_rows)
        if total != single_row.amount:
            from portal.money import format_euro

            add(single_row, "importo", f"La somma delle rate ({format_euro(total)}) è diversa dall'importo in unica "
                                       f"soluzione ({format_euro(single_row.amount)}).")

    d = first.debtor
    data = PositionInput(
        service_id=service.id if service else 0,
        debtor=DebtorInput(**{_DEBTOR_ATTRS[name]: (d[name] or None) for name in _DEBTOR_FIELDS
                              if name not in ("codice_fiscale", "nominativo", "nazione")},
                           fiscal_code=d["codice_fiscale"], name=d["nominativo"], country=d["nazione"] or "IT"),
        subject=first.subject,
        single=_option(single_row) if single_row else None,
        installments=[_option(r) for r in installment_rows],
        external_id=key or None,
        source=SOURCE,
    )
    if data.debtor.kind:
        data.debtor.kind = data.debtor.kind.strip().upper()
        if data.debtor.kind not in ("F", "G"):
            add(first, "tipo_soggetto", "Tipo di soggetto non valido: F (persona fisica) o G (persona giuridica).")
            data.debtor.kind = None
    if service is not None:
        try:
            validate_position(data, today=today, creditor_fiscal_code=creditor_fiscal_code,
                              default_iban=service.iban, default_taxonomy=service.taxonomy_code)
        except ValidationFailed as exc:
            for error in exc.errors:
                placed = _place(error, first, single_row, installment_rows)
                if placed is None:
                    continue
                row, name = placed
                if name in row.bad or (name.startswith("importo") and _amounts_unread(rows)):
                    continue
                add(row, name, error.message)
    problems.sort(key=lambda p: p.row)
    return Assembled(key=key, first_row=first.number, rows=[r.number for r in rows], service_code=first.service,
                     data=data, problems=_unique(problems))


def _amounts_unread(rows: list[Row]) -> bool:
    return any(name.startswith("importo") for row in rows for name in row.bad)


def _unique(problems: list[RowProblem]) -> list[RowProblem]:
    seen, out = set(), []
    for p in problems:
        if (p.row, p.field, p.message) not in seen:
            seen.add((p.row, p.field, p.message))
            out.append(p)
    return out


def _option(row: Row) -> OptionInput:
    transfers = []
    for t in row.transfers:
        transfers.append(TransferInput(
            amount_cents=t["amount"] if t["amount"] else (row.amount if len(row.transfers) == 1 else None),
            iban=t["iban"] or None, taxonomy_code=t["taxonomy_code"] or None, remittance=t["remittance"] or None,
            beneficiary_fiscal_code=t["beneficiary_fiscal_code"] or None,
            beneficiary_name=t["beneficiary_name"] or None))
    return OptionInput(amount_cents=row.amount, due_date=row.due, transfers=transfers,
                       description=row.description or None)


_TRANSFER_PATH = re.compile(r"^transfers\.(\d+)\.(\w+)$")
_TRANSFER_FIELD = {"amount": "importo", "iban": "iban", "taxonomy_code": "tassonomia", "remittance": "causale",
                   "beneficiary_fiscal_code": "cf_beneficiario", "beneficiary_name": "beneficiario"}


def _place(error: FieldError, first: Row, single: Row | None, installments: list[Row]) -> tuple[Row, str] | None:
    """The row and layout field a ledger error path belongs to."""
    path = error.field
    if path == "subject":
        return first, "causale"
    if path == "external_id":
        return first, "chiave"
    if path == "service_id":
        return first, "servizio"
    if path.startswith("debtor."):
        return first, _LEDGER_DEBTOR.get(path.removeprefix("debtor."), "codice_fiscale")
    if path == "options":
        return first, "tipo_pagamento"
    if path == "installments":
        return (installments[0] if installments else first), "numero_rata"
    if path.startswith("single."):
        row, rest = single, path.removeprefix("single.")
    elif path.startswith("installments."):
        number, _, rest = path.removeprefix("installments.").partition(".")
        index = int(number) - 1 if number.isdigit() else -1
        row = installments[index] if 0 <= index < len(installments) else None
    else:
        return first, ""
    if row is None:
        return None
    if rest == "amount":
        return row, "importo"
    if rest == "due_date":
        return row, "scadenza"
    if rest == "transfers":
        return row, "importo_1" if row.transfers else "importo"
    if m := _TRANSFER_PATH.match(rest):
        n = int(m.group(1))
        numbers = [t["n"] for t in row.transfers]
        n = numbers[n - 1] if 0 < n <= len(numbers) else n
        return row, f"{_TRANSFER_FIELD.get(m.group(2), m.group(2))}_{n}"
    return row, ""
