"""The pagoPA taxonomy of collection services (tassonomia, v33), used to check every transfer's category.

The official file is shipped in ``data/tassonomia.json`` (a verbatim copy of the pagoPA data file; a test
checks it still equals ``specs/pagopa/taxonomy/``). A code is valid when a row with that code is in force
today. Prefixes 6/, 7/, 8/ are the SEPA Request-to-Pay opt-out variants of the same ``9/`` code.
"""

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

DEFAULT_FILE = Path(__file__).parent / "data" / "tassonomia.json"
CODE_RE = re.compile(r"^([6789])/(\d{2})(\d{2})(\d{3})(IM|TS|SP|SA|AP)/$")


class TaxonomyError(ValueError):
    """A taxonomy code is malformed, unknown or no longer in force."""


@dataclass(frozen=True, slots=True)
class TaxonomyEntry:
    """One service type of the taxonomy."""

    code: str
    creditor_type: str
    area: str
    service: str
    valid_from: date
    valid_to: date


def _date(text: str) -> date:
    # The official file writes dates month first (mm/dd/yyyy: "02/15/2021", "02/27/2023"; no row has a first
    # field above 12, and read day first one row would end before it starts). Day first is only a fallback.
    try:
        return datetime.strptime(text, "%m/%d/%Y").date()
    except ValueError:
        return datetime.strptime(text, "%d/%m/%Y").date()


@lru_cache(maxsize=4)
def load(path: str | None = None) -> dict[str, TaxonomyEntry]:
    """Read the taxonomy file once, keyed by its ``9/...`` code."""
    rows = json.loads(Path(path or DEFAULT_FILE).read_text(encoding="utf-8"))
    entries = {}
    for row in rows:
        entry = TaxonomyEntry(
            code=row["DATI SPECIFICI DI INCASSO"],
            creditor_type=row["TIPO ENTE CREDITORE"],
            area=row["NOME MACRO AREA"],
            service=row["TIPO SERVIZIO"],
            valid_from=_date(row["DATA INIZIO VALIDITA"]),
            valid_to=_date(row["DATA FINE VALIDITA"]),
        )
        entries[entry.code] = entry
    return entries


def validate(code: str, *, on: date | None = None, path: str | None = None) -> str:
    """Return the normalised code if it exists and is in force on ``on`` (today by default).

    :raise TaxonomyError: with an Italian message for the form field.
    """
    return _validate(code, on or date.today(), path)


@lru_cache(maxsize=1024)
def _validate(code: str, day: date, path: str | None) -> str:
    """:func:`validate`, cached per code and day (every transfer of a bill run names one of a few codes)."""
    code = (code or "").strip().upper()
    match = CODE_RE.match(code)
    if not match:
        raise TaxonomyError("Codice tassonomico non valido: formato atteso 9/0101101IM/.")
    entry = load(path).get("9/" + code[2:])
    if entry is None:
        raise TaxonomyError(f"Il codice tassonomico {code} non esiste nella tassonomia pagoPA.")
    if not entry.valid_from <= day < entry.valid_to:
        raise TaxonomyError(f"Il codice tassonomico {code} non è più in vigore.")
    return code


def choices(creditor_type: str | None = "01", *, path: str | None = None) -> list[TaxonomyEntry]:
    """Codes in force for a type of creditor (``01`` = Comuni), for select boxes."""
    today = date.today()
    return sorted(
        (
            e
            for e in load(path).values()
            if e.valid_from <= today < e.valid_to and (creditor_type is None or e.code[2:4] == creditor_type)
        ),
        key=lambda e: e.code,
    )
