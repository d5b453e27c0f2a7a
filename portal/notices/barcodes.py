"""The two barcodes of a notice: the pagoPA QR code and the Poste "Bollettino PA" Data Matrix.

Both symbols come from zxing-cpp's C++ encoders (ECC200 for the Data Matrix, which holds the 256 characters).

Both are drawn as ONE vector path of filled rectangles (runs of dark modules merged per row), which keeps the
PDF small and fast to write. ReportLab's own ``ECC200DataMatrix`` widget is deliberately not used: its fixed
44×44 size cannot hold the 256-character Poste payload and it mis-encodes ``: ; < = > ? @``.
"""

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

import zxingcpp

#: Printed side of both symbols (pagoPA guide: 25×25 mm).
SYMBOL_MM = 25.0
POSTE_PAYLOAD_LENGTH = 256
#: The Poste amount field has 10 digits: a larger amount (pagoPA allows 11) cannot go on a postal slip.
POSTE_MAX_CENTS = 9_999_999_999


def qr_payload(nav: str, creditor_fiscal_code: str, amount_cents: int) -> str:
    """``PAGOPA|002|<NAV>|<CF ente>|<cents>`` as pagoPA's generator builds it (cents at least 2 digits)."""
    return f"PAGOPA|002|{nav.rjust(18, '0')}|{creditor_fiscal_code.rjust(11, '0')}|{amount_cents:02d}"


@dataclass(frozen=True)
class Symbol:
    """A barcode's modules, one byte string per row from the top: ``1`` dark, ``0`` light.

    Iterating gives each row as booleans (True = dark); drawing reads the byte rows directly.
    """

    rows: tuple[bytes, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple[bool, ...]]:
        return (tuple(module == 49 for module in row) for row in self.rows)


#: Grey level of each pixel → ``1`` (dark, below 128) or ``0``.
_DARK = bytes(49 if level < 128 else 48 for level in range(256))
_DARK_RUN = re.compile(rb"1+")
#: Module coordinates as text (the largest Data Matrix is 144 modules wide): formatting ints was most of the time.
_NUMBERS = [str(n) for n in range(145)]


def qr_matrix(payload: str) -> Symbol:
    """The QR modules (True = dark): ECC level M, version 4 (33×33) as the guide asks.

    zxing-cpp's C++ encoder, not segno: segno's pure-Python mask selection took ~8 ms per symbol, 80% of the
    time of a whole single notice; zxing-cpp takes ~0.05 ms for the same standard symbol.
    """
    return _modules(zxingcpp.create_barcode(payload, zxingcpp.BarcodeFormat.QRCode, ec_level="M", version=4))


def _modules(barcode) -> Symbol:
    image = memoryview(barcode.to_image(scale=1, add_quiet_zones=False))
    height, width = image.shape
    data = image.tobytes().translate(_DARK)
    return Symbol(tuple(data[r * width:(r + 1) * width] for r in range(height)))


def ascii_text(text: str) -> str:
    """Accents dropped and anything else outside printable ASCII replaced: the Poste readers expect ASCII."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    out = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        out.append(ch if " " <= ch <= "~" else "?")
    return "".join(out)


def poste_payload(*, nav: str, postal_account: str, amount_cents: int, creditor_fiscal_code: str,
                  debtor_fiscal_code: str, debtor_name: str, subject: str) -> str:
    """The 256-character Poste Data Matrix string (digest §2.2); too-long fields are cut, never overflow.

    :raise ValueError: if the amount exceeds the 10 digits of the Poste field (:data:`POSTE_MAX_CENTS`).
    """
    if not 0 < amount_cents <= POSTE_MAX_CENTS:
        raise ValueError(f"Importo non ammesso sul bollettino postale: {amount_cents} centesimi")
    account = "".join(ch for ch in postal_account if ch.isdigit())
    text = (
        "codfase=NBPA;"
        + "18" + nav.rjust(18, "0")
        + "12" + account.rjust(12, "0")[-12:]
        + "10" + f"{amount_cents:010d}"
        + "3" + "896"
        + "1P1"
        + ascii_text(creditor_fiscal_code)[:11].ljust(11)
        + ascii_text(debtor_fiscal_code).upper()[:16].ljust(16)
        + ascii_text(debtor_name)[:40].ljust(40)
        + ascii_text(subject)[:110].ljust(110)
        + " " * 12
        + "A"
    )
    if len(text) != POSTE_PAYLOAD_LENGTH:  # pragma: no cover - the widths above add up to 256
        raise ValueError(f"Poste payload of {len(text)} characters")
    return text


def datamatrix_matrix(payload: str) -> Symbol:
    """The ECC200 Data Matrix modules (True = dark), square symbol chosen by zxing-cpp for the payload."""
    return _modules(zxingcpp.create_barcode(payload, zxingcpp.BarcodeFormat.DataMatrix))


def draw_matrix(canvas, symbol: Symbol, x: float, y: float, size: float) -> None:
    """Draw ``symbol`` as one filled path, ``size`` points wide, bottom-left corner at (x, y).

    The path is written in module units (integers) under one scale: each run of dark modules in a row is one
    ``re`` operator, found by a regular expression over the row's bytes. Compared with ReportLab's path object
    with float coordinates and a Python loop over modules, a notice with the postal slip went from 4.6 to
    2.4 ms and its PDF from 6.0 to 4.0 MB per 1,000 notices.
    """
    rows, cols = len(symbol.rows), len(symbol.rows[0])
    ops = []
    for r, row in enumerate(symbol.rows):
        bottom = f" {rows - r - 1} "
        for match in _DARK_RUN.finditer(row):
            start, end = match.span()
            ops.append(_NUMBERS[start] + bottom + _NUMBERS[end - start] + " 1 re")
    ops.append("f")
    canvas.saveState()
    canvas.translate(x, y)
    canvas.scale(size / cols, size / rows)
    canvas.addLiteral("\n".join(ops))
    canvas.restoreState()
