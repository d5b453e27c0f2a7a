"""Envelopes for the print vendor: the Poste address lines, which debtors can be mailed, and sheets per envelope.

Poste's "Standard di composizione indirizzi" (domain digest §4.5): 3 to 6 lines with fixed roles (DEST name,
AGG c/o, EDIF building, IND street and civic number, LOC CAP + locality + province, EST foreign country), in
capital letters without punctuation or accents. The same rule decides in SQL (:func:`has_postal_address_sql`, the
bill run's selection) and in Python (:func:`postal_address`), and a test keeps the two in step.
"""

import math
import re
import unicodedata
from dataclasses import dataclass

import sqlalchemy as sa

#: Line lengths of Poste's address standard (characters).
LINE_MAX = 44

_PUNCTUATION = re.compile(r"[^A-Z0-9/ ]+")
_SPACES = re.compile(r"\s+")


def poste_text(value: str | None, *, limit: int = LINE_MAX) -> str:
    """``value`` in capitals, without accents or punctuation (apostrophes become spaces), cut to ``limit``."""
    if not value:
        return ""
    text = unicodedata.normalize("NFKD", value)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).upper()
    text = _SPACES.sub(" ", _PUNCTUATION.sub(" ", text)).strip()
    return text[:limit].rstrip()


@dataclass(frozen=True)
class PostalAddress:
    """A debtor's address as Poste's lines (empty strings for the lines that do not apply)."""

    name: str
    street: str
    postal_code: str
    locality: str
    province: str
    country: str

    @property
    def locality_line(self) -> str:
        """The LOC line: CAP, locality and province."""
        return " ".join(p for p in (self.postal_code, self.locality, self.province) if p)

    @property
    def lines(self) -> list[str]:
        """DEST, IND, LOC and (abroad) EST, in order."""
        return [line for line in (self.name, self.street, self.locality_line, self.country) if line]


def _blank(value: str | None) -> bool:
    return not (value or "").strip()


def has_postal_address(debtor) -> bool:
    """Whether a letter can be addressed to ``debtor``: street and city, and a 5-digit CAP in Italy."""
    if _blank(debtor.street) or _blank(debtor.city):
        return False
    if (debtor.country or "IT") != "IT":
        return True
    # Italian CAPs are checked (5 digits) when the debtor is saved; here, as in SQL, only their presence.
    return len((debtor.postal_code or "").strip()) == 5


def has_postal_address_sql(debtor_table) -> sa.ColumnElement[bool]:
    """:func:`has_postal_address` as a SQL condition on the debtors table (used to split a bill run)."""
    d = debtor_table
    # Every operand is made non-NULL: a NULL would make both this condition and its negation unknown, and the
    # bill run (which selects on each) would lose the row.
    return sa.and_(
        sa.func.coalesce(sa.func.trim(d.street), "") != "",
        sa.func.coalesce(sa.func.trim(d.city), "") != "",
        sa.or_(
            sa.func.coalesce(d.country, "IT") != "IT",
            sa.func.length(sa.func.trim(sa.func.coalesce(d.postal_code, ""))) == 5,
        ),
    )


def postal_address(debtor) -> PostalAddress | None:
    """The Poste lines of ``debtor``'s address, or ``None`` when it is not complete enough to be mailed."""
    if not has_postal_address(debtor):
        return None
    abroad = (debtor.country or "IT") != "IT"
    street = " ".join(p for p in (debtor.street, debtor.civic_number) if p)
    return PostalAddress(
        name=poste_text(debtor.name),
        street=poste_text(street),
        postal_code=poste_text(debtor.postal_code, limit=16),
        locality=poste_text(debtor.city, limit=35),
        province="" if abroad else poste_text(debtor.province, limit=2),
        country=poste_text(debtor.country, limit=2) if abroad else "",
    )


def sheets(pages: int, *, duplex: bool) -> int:
    """Sheets of paper for ``pages`` printed pages (both sides of the sheet when ``duplex``)."""
    return math.ceil(pages / 2) if duplex else pages


def envelope_order(debtor_table):
    """The print order: Italian addresses by CAP (Poste's bulk-mail sorting), then abroad; then street and name."""
    d = debtor_table
    return (
        sa.case((sa.func.coalesce(d.country, "IT") == "IT", 0), else_=1),
        d.postal_code,
        d.city,
        d.street,
        d.civic_number,
        d.name,
    )
