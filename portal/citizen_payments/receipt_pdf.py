"""The citizen's receipt (ricevuta) as a PDF, made with xhtml2pdf from the HTML the portal renders.

The HTML carries no external resource (no image, no stylesheet link), so rendering never reaches the network.
"""

from __future__ import annotations

import io


class ReceiptPdfError(RuntimeError):
    """xhtml2pdf could not render the receipt."""


def html_to_pdf(html: str) -> bytes:
    """Render ``html`` (a complete, self-contained document) into PDF bytes.

    :raise ReceiptPdfError: when xhtml2pdf reports errors.
    """
    from xhtml2pdf import pisa

    out = io.BytesIO()
    status = pisa.CreatePDF(html, dest=out, encoding="utf-8", link_callback=_no_links)
    if status.err:
        raise ReceiptPdfError(f"xhtml2pdf: {status.err} errori")
    return out.getvalue()


def _no_links(uri: str, rel: str) -> str:
    """Refuse every external resource: the receipt is self-contained."""
    return ""
