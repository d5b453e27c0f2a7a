"""Money is integer euro cents everywhere; these helpers parse and format it at the edges only."""

import re


class AmountError(ValueError):
    """An amount typed by a person or read from a file is not a valid positive euro amount."""


_PLAIN = re.compile(r"^\d+$")
_DOT_DECIMAL = re.compile(r"^(\d+)\.(\d+)$")
_IT = re.compile(r"^(\d{1,3}(?:\.\d{3})+|\d+)(?:,(\d+))?$")


def parse_euro(text: str, *, allow_zero: bool = False) -> int:
    """Parse an euro amount written the Italian way (``1.020,99``) or plainly (``1020.99``) into cents.

    A dot followed by exactly three digits and no comma (``1.020``) is a thousands separator, as an Italian
    reader means it. More than two decimals is an error, never a rounding.

    :raise AmountError: with an Italian message fit for the form field.
    """
    raw = (text or "").strip().replace(" ", "").replace("\u00a0", "").removesuffix("€").removeprefix("€")
    if not raw:
        raise AmountError("Indicare un importo.")
    if raw.startswith("-"):
        raise AmountError("L'importo non può essere negativo.")
    euros, decimals = None, ""
    if _PLAIN.match(raw):
        euros = raw
    elif "," not in raw and (m := _DOT_DECIMAL.match(raw)) and len(m.group(2)) != 3:
        euros, decimals = m.group(1), m.group(2)
    elif m := _IT.match(raw):
        euros, decimals = m.group(1).replace(".", ""), m.group(2) or ""
    if euros is None:
        raise AmountError("Importo non valido: usare il formato 1.234,56.")
    if len(decimals) > 2:
        raise AmountError("L'importo può avere al massimo due decimali.")
    cents = int(euros) * 100 + int(decimals.ljust(2, "0") or 0)
    if cents == 0 and not allow_zero:
        raise AmountError("L'importo deve essere maggiore di zero.")
    if cents > 99_999_999_999:
        raise AmountError("L'importo supera il massimo consentito da pagoPA (999.999.999,99 €).")
    return cents


def format_euro(cents: int | None, *, symbol: bool = True) -> str:
    """Format cents as ``1.020,99 €`` (Italian grouping)."""
    if cents is None:
        return ""
    sign = "-" if cents < 0 else ""
    euros, rest = divmod(abs(cents), 100)
    grouped = f"{euros:,}".replace(",", ".")
    text = f"{sign}{grouped},{rest:02d}"
    return f"{text}\u00a0€" if symbol else text


def cents_to_decimal_text(cents: int) -> str:
    """Cents as ``1020.99``: the plain form used in files for other systems and in SOAP messages."""
    sign = "-" if cents < 0 else ""
    euros, rest = divmod(abs(cents), 100)
    return f"{sign}{euros}.{rest:02d}"
