"""The creditor's logo on the notice: checked and normalised on upload, prepared once for the PDFs.

:func:`prepare_logo` takes what an admin uploads (untrusted bytes), checks it is really a PNG or JPEG of sensible
size and shape, and re-encodes it as a clean PNG (no metadata, at most 600×600 px, transparency kept): that is
what ``Creditor.logo_png`` stores.

:func:`pdf_image` turns a stored logo into the streams of a PDF image XObject, sized for the notice's 30×30 mm
box at 300 dpi (the pagoPA guide's resolution). The colour and alpha streams are the PNG's own deflate data with
PNG predictors (PDF ``/Predictor 15``), so they are as small as a PNG and nothing is re-compressed per document;
the result is cached per process, so a bill run of any size decodes a logo once.

Plain Python and Pillow: nothing here needs Flask.
"""

import io
import logging
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

#: Largest upload accepted (1 MiB).
MAX_BYTES = 1024 * 1024
#: The stored PNG fits in MAX_SIDE × MAX_SIDE pixels (the notice prints 30 mm: 354 px at 300 dpi).
MAX_SIDE = 600
#: Below this short side a logo would print blurred.
MIN_SIDE = 50
#: Longest side over shortest side: beyond it the logo would be a thin strip in its square box.
MAX_RATIO = 6
#: Pixels decoded at most (a 1 MB file claiming more is a decompression bomb, or at least no logo). Pillow's own
#: limit (``Image.MAX_IMAGE_PIXELS``, left as it is: it is process-wide) stops far larger images earlier.
MAX_PIXELS = 25_000_000
#: Pixels of the image embedded in the PDF: the 30 mm box at 300 dpi.
PDF_SIDE = 354

#: What Pillow reports for the accepted formats (MPO is the multi-picture JPEG some cameras write).
_FORMATS = {"PNG", "JPEG", "MPO"}
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

MSG_EMPTY = "Scegliere il file del logo."
MSG_TOO_BIG = "Il file del logo supera 1 MB."
MSG_FORMAT = "Il logo deve essere un'immagine PNG o JPEG."
MSG_BOMB = "L'immagine del logo ha troppi pixel (al massimo 25 milioni): ridurla prima di caricarla."
MSG_BROKEN = "Il file del logo è danneggiato o incompleto: non può essere letto."
MSG_TOO_SMALL = f"Il logo è troppo piccolo: il lato corto deve essere di almeno {MIN_SIDE} pixel."
MSG_RATIO = f"Il logo è troppo allungato: il lato lungo può essere al massimo {MAX_RATIO} volte quello corto."


class LogoError(ValueError):
    """The upload is not an acceptable logo; the message (Italian) says why."""


# --- Upload -----------------------------------------------------------------------------------------------------


def prepare_logo(data: bytes) -> bytes:
    """Check an uploaded logo and return it re-encoded as the PNG to store.

    The format is read from the content, never from the file name. The result has no metadata, fits in
    :data:`MAX_SIDE` × :data:`MAX_SIDE` pixels (aspect ratio kept, never enlarged), is turned upright when a JPEG
    says it was taken rotated, and keeps its transparency (an alpha channel that is fully opaque is dropped).

    :raise LogoError: with an Italian message for the admin: empty, over 1 MB, not PNG/JPEG, too many pixels,
        damaged, too small or too elongated.
    """
    if not data:
        raise LogoError(MSG_EMPTY)
    if len(data) > MAX_BYTES:
        raise LogoError(MSG_TOO_BIG)
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as image:
            _check_header(image)
            image = _normalise(image)
    except LogoError:
        raise
    except UnidentifiedImageError as exc:
        raise LogoError(MSG_FORMAT) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning is an exception only where warnings are errors (the tests); either way: refused.
        raise LogoError(MSG_BOMB) from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, MemoryError) as exc:
        raise LogoError(MSG_BROKEN) from exc
    return _png(image, optimize=True)


def _check_header(image: Image.Image) -> None:
    """Refuse on what the header says, before a single pixel is decoded."""
    if image.format not in _FORMATS:
        raise LogoError(MSG_FORMAT)
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise LogoError(MSG_BOMB)
    short, long = sorted((width, height))
    if short < MIN_SIDE:
        raise LogoError(MSG_TOO_SMALL)
    if long > short * MAX_RATIO:
        raise LogoError(MSG_RATIO)


def _normalise(image: Image.Image) -> Image.Image:
    """Decode, scale down to MAX_SIDE and convert to L, LA, RGB or RGBA (alpha only when it is used)."""
    # JPEG: let the decoder scale down by 1/2, 1/4 or 1/8 while decoding (cheaper, same result after resizing).
    image.draft(None, (MAX_SIDE * 2, MAX_SIDE * 2))
    image.load()
    image = ImageOps.exif_transpose(image)
    grey = image.mode in _GREY_MODES
    alpha = "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info
    if image.mode.startswith("I"):
        image = image.convert("I").point(lambda v: v * (1 / 257)).convert("L")  # 16 bits per sample
    target = ("LA" if alpha else "L") if grey else ("RGBA" if alpha else "RGB")
    if image.mode != target:
        image = image.convert(target)
    # Scaled after the conversion: palette images would otherwise be resized without interpolation.
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    if alpha and image.getchannel("A").getextrema()[0] == 255:
        image = image.convert(target[:-1])
    return image


def _png(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.info = {}  # no text chunks, ICC profile (a CMYK one would be wrong now), EXIF or transparency key
    image.save(out, "PNG", **options)
    return out.getvalue()


# --- PDF --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PdfImage:
    """What a PDF image XObject needs: deflate streams with PNG predictors (``/DecodeParms /Predictor 15``)."""

    width: int
    height: int
    #: 1 (DeviceGray) or 3 (DeviceRGB).
    colours: int
    data: bytes
    #: The soft mask (DeviceGray, same size), or ``None`` for an opaque logo.
    alpha: bytes | None

    @property
    def colour_space(self) -> str:
        return "DeviceRGB" if self.colours == 3 else "DeviceGray"


@lru_cache(maxsize=16)
def pdf_image(png: bytes) -> PdfImage | None:
    """The stored logo ready for the PDF, at most :data:`PDF_SIDE` pixels a side; cached per process.

    :return: ``None`` if the bytes cannot be read as an image (the notice is then printed without a logo: a bad
        row must not stop a bill run); the problem is logged.
    """
    try:
        with Image.open(io.BytesIO(png), formats=("PNG",)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise LogoError(MSG_BOMB)
            image.load()
            if image.mode not in ("L", "LA", "RGB", "RGBA"):
                has_alpha = "A" in image.getbands() or "transparency" in image.info
                image = image.convert("RGBA" if has_alpha else "RGB")
            image.thumbnail((PDF_SIDE, PDF_SIDE), Image.Resampling.LANCZOS)
            alpha = None
            if image.mode in ("LA", "RGBA"):
                mask = image.getchannel("A")
                if mask.getextrema()[0] < 255:
                    alpha = _idat(mask)
                image = image.convert(image.mode[:-1])
            return PdfImage(width=image.width, height=image.height, colours=len(image.getbands()),
                            data=_idat(image), alpha=alpha)
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, Image.DecompressionBombError,
            Image.DecompressionBombWarning):
        log.warning("creditor logo unreadable: printed without it", exc_info=True)
        return None


def _idat(image: Image.Image) -> bytes:
    """The zlib stream of ``image`` (L or RGB, 8 bits) encoded as a non-interlaced PNG, predictors included."""
    png = _png(image, optimize=True)
    pos, idat = 8, []
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        body = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            bit_depth, colour_type, interlace = body[8], body[9], body[12]
            if bit_depth != 8 or colour_type not in (0, 2) or interlace:
                raise ValueError(f"unexpected PNG layout {bit_depth=} {colour_type=} {interlace=}")
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    return b"".join(idat)


__all__ = ["MAX_BYTES", "LogoError", "PdfImage", "pdf_image", "prepare_logo"]
