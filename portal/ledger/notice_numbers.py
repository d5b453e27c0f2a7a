"""IUV and notice numbers (NAV / codice avviso) as SACI 3.x defines them for aux digit 3.

NAV = ``3`` + segregation code (2) + IUV base (13) + check digits (2), where the check digits are the
remainder mod 93 of the first 16 digits. The IUV is the NAV without the leading ``3`` (17 digits).
"""

from dataclasses import dataclass

AUX_DIGIT = "3"
BASE_DIGITS = 13
MAX_BASE = 10**BASE_DIGITS - 1
#: Segregation codes pagoPA reserves for centralised services (SACI Tabella 1); never ours to use.
RESERVED_SEGREGATION_CODES = frozenset({47} | set(range(81, 100)))


class NoticeNumberError(ValueError):
    """A segregation code, IUV or notice number is malformed or not allowed."""


@dataclass(frozen=True, slots=True)
class NoticeNumber:
    """One allocated number in both of its forms."""

    iuv: str
    nav: str

    @property
    def nav_grouped(self) -> str:
        """The NAV in groups of four digits, as printed on the notice."""
        return format_nav(self.nav)


def validate_segregation_code(code: str | int) -> str:
    """Return the segregation code as two digits.

    :raise NoticeNumberError: if it is not two digits or is one reserved by pagoPA (47, 81–99).
    """
    text = f"{code:02d}" if isinstance(code, int) else str(code).strip()
    if len(text) != 2 or not text.isdigit():
        raise NoticeNumberError("Il codice di segregazione deve essere di due cifre.")
    if int(text) in RESERVED_SEGREGATION_CODES:
        raise NoticeNumberError(
            f"Il codice di segregazione {text} è riservato da pagoPA (47 e 81–99 non sono utilizzabili)."
        )
    return text


def check_digits(first16: str) -> str:
    """The two mod-93 check digits of ``aux digit + segregation code + IUV base``."""
    return f"{int(first16) % 93:02d}"


def build(segregation_code: str | int, base: int) -> NoticeNumber:
    """Compose the IUV and NAV for one 13-digit sequence value.

    :raise NoticeNumberError: if the segregation code is not allowed or the base is out of range.
    """
    seg = validate_segregation_code(segregation_code)
    if not 0 < base <= MAX_BASE:
        raise NoticeNumberError(f"Sequenza IUV fuori intervallo: {base}")
    return _compose(AUX_DIGIT + seg, base)


def build_many(segregation_code: str | int, bases: range) -> list[NoticeNumber]:
    """:func:`build` for a block of consecutive sequence values (bulk allocation): the segregation code and the
    range are checked once, not once per number.

    :raise NoticeNumberError: as :func:`build`.
    """
    seg = validate_segregation_code(segregation_code)
    if bases and not (bases[0] > 0 and bases[-1] <= MAX_BASE):
        raise NoticeNumberError(f"Sequenza IUV fuori intervallo: {bases[0]}-{bases[-1]}")
    prefix = AUX_DIGIT + seg
    return [_compose(prefix, base) for base in bases]


def _compose(prefix: str, base: int) -> NoticeNumber:
    """The IUV and NAV of an already checked ``aux digit + segregation code`` and sequence value."""
    first16 = f"{prefix}{base:0{BASE_DIGITS}d}"
    nav = first16 + check_digits(first16)
    return NoticeNumber(iuv=nav[1:], nav=nav)


def is_valid_nav(nav: str) -> bool:
    """Whether ``nav`` is an 18-digit aux-3 notice number with correct check digits."""
    return (
        len(nav) == 18
        and nav.isdigit()
        and nav[0] == AUX_DIGIT
        and check_digits(nav[:16]) == nav[16:]
    )


def nav_from_iuv(iuv: str) -> str:
    """The aux-3 NAV of a 17-digit IUV (GPD's own rule: ``3`` + IUV)."""
    return AUX_DIGIT + iuv


def normalize_nav(text: str) -> str:
    """Strip the spaces and dashes a person types when copying a grouped notice number."""
    return "".join(ch for ch in (text or "") if ch.isdigit())


def format_nav(nav: str) -> str:
    """Group a NAV in fours (``3012 5000 0001 2345 29``)."""
    return " ".join(nav[i : i + 4] for i in range(0, len(nav), 4))
