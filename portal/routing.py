"""Row ids read from URLs and query strings, kept within what the databases hold.

Werkzeug's ``int`` converter and ``str.isdigit`` take any number (and ``isdigit`` takes "²", which ``int`` refuses):
an id past a BIGINT made PostgreSQL and SQLite fail, a 500. Ids here are ASCII digits from 1 to 2⁶³-1.
"""

from werkzeug.routing import IntegerConverter

#: The largest id a BIGINT column (PostgreSQL) or an INTEGER primary key (SQLite) can hold.
MAX_ID = 2**63 - 1
#: The largest id of a table with a 32-bit INTEGER key on PostgreSQL (bill runs, imports, users, services, ...):
#: their routes say ``<id32:...>``.
MAX_ID_32 = 2**31 - 1


def parse_id(text: str | None) -> int | None:
    """The id written in ``text`` (a query-string value), or ``None`` if it is not one a row could have."""
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


class IdConverter(IntegerConverter):
    """``<int:...>`` in every route: ASCII digits from 1 to :data:`MAX_ID`, anything else does not match (404)."""

    regex = r"[0-9]+"

    def __init__(self, map, fixed_digits: int = 0, min: int | None = 1, max: int | None = MAX_ID,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


class Id32Converter(IdConverter):
    """``<id32:...>``: the ids of tables with a 32-bit key, from 1 to :data:`MAX_ID_32` (anything else is a 404)."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = 1, max: int | None = MAX_ID_32,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def register(app) -> None:
    """Make ``int`` in route rules the bounded :class:`IdConverter`, and add ``id32`` (before any blueprint adds
    its rules)."""
    app.url_map.converters["int"] = IdConverter
    app.url_map.converters["id32"] = Id32Converter
