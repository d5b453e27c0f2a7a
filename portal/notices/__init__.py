"""pagoPA payment notices ("avviso di pagamento") as PDF, drawn with the ReportLab canvas.

Why ReportLab's canvas and not the HTML renderers used elsewhere: issue 4 measured xhtml2pdf at ~15 notices/s
and WeasyPrint at ~7/s, while a ReportLab canvas whose static parts are drawn once per document (PDF form
XObjects reused on every page) and whose barcodes are single vector paths reaches a few hundred per second,
which a 100,000-notice bill run needs. One visual design, one code path: the single download and the bill runs
(to come) both go through :class:`portal.notices.render.NoticeDocument`.

- :mod:`portal.notices.barcodes`: the pagoPA QR payload and symbol (ECC M, version 4), the Poste Data Matrix
  payload (256 characters) and symbol (ECC200), both from ``zxing-cpp``'s C++ encoders and drawn as vector paths.
- :mod:`portal.notices.layout`: page geometry, the Italian/German texts, and text fitting (cut, wrap, shrink)
  so that no text leaves its box.
- :mod:`portal.notices.render`: the document (several notices per PDF) and :func:`render_notice`, one PDF for
  one position. Nothing here needs Flask.
"""

from portal.notices.render import NoticeDocument, NoticeError, render_notice

__all__ = ["NoticeDocument", "NoticeError", "render_notice"]
