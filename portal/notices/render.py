"""Draw notices on a ReportLab canvas: :class:`NoticeDocument` (many notices, one PDF) and :func:`render_notice`.

Speed: every fixed part of a block (bands, frames, labels, the guide's fixed paragraphs) is a PDF form XObject
drawn once per document and placed on every page; only the data and the barcodes are drawn per notice. The
creditor's logo is one image XObject per document (prepared once per process by :func:`portal.notices.logo.pdf_image`)
placed in the header of every page.
"""

import io
from dataclasses import dataclass
from datetime import date

from reportlab import rl_config
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfdoc import PDFDictionary, PDFName, PDFStream
from reportlab.pdfgen.canvas import Canvas

from portal.formatting import format_date
from portal.ledger.notice_numbers import format_nav
from portal.money import format_euro
from portal.notices import barcodes, logo
from portal.notices.layout import (
    BAND,
    BLUE,
    BOLD,
    CONTENT_W,
    FONT,
    GREY70,
    HEADER_H,
    INK,
    LINE,
    LOGO,
    MARGIN,
    PAGE_H,
    PAGE_W,
    SUBJECT_MAX_CHARS,
    SUBJECT_X0,
    SUBJECT_X1,
    Texts,
    cut_text,
    printable,
    text_block,
)

# Plain binary streams: ASCII85 only makes them ~25% bigger (issue 4 measured ~20% fewer bytes without it).
rl_config.useA85 = 0

QR = barcodes.SYMBOL_MM * mm
BAND_H = 9 * mm
LABEL_SIZE = 6.5
GREY = (0.35, 0.38, 0.42)


class NoticeError(ValueError):
    """The position cannot have a notice (nothing left to pay)."""


@dataclass(frozen=True)
class Payable:
    """One option as the notice shows it."""

    label_key: str
    number: int | None
    nav: str
    amount_cents: int
    due_date: date
    #: The IBAN its first transfer credits (the Poste slip is printed only when it is the postal account's).
    iban: str | None = None


def unpaid_options(position) -> list:
    """The options still to pay, in order (what a notice prints)."""
    return [o for o in position.options if getattr(o.status, "value", o.status) == "unpaid"]


def _payables(position) -> tuple[Payable | None, list[Payable]]:
    """The unpaid single payment and installments of ``position`` (paid or cancelled options are not printed)."""
    single, installments = None, []
    for option in unpaid_options(position):
        first = min(option.transfers, key=lambda t: t.index) if option.transfers else None
        item = Payable("single" if option.kind == "single" else "installment", option.installment_number,
                       option.notice_number, option.amount_cents, option.due_date, first.iban if first else None)
        if option.kind == "single":
            single = item
        else:
            installments.append(item)
    installments.sort(key=lambda p: p.number or 0)
    return single, installments


#: The ABI code of Poste Italiane: a postal current account's IBAN carries it, then the 12-digit account number.
POSTE_ABI = "07601"


def pays_postal_account(iban: str | None, postal_account: str | None) -> bool:
    """Whether ``iban`` is the IBAN of the postal current account ``postal_account``.

    pagoPA's notice guide allows the "Bollettino postale PA" part only for an option whose (first) transfer credits
    the creditor's postal account: a slip paid at the post office credits that account, whatever the option says.
    """
    if not iban or not postal_account:
        return False
    compact = iban.replace(" ", "").upper()
    return (compact.startswith("IT") and len(compact) == 27 and compact[5:10] == POSTE_ABI
            and compact[-12:] == postal_account.strip().zfill(12))


def installments_per_row(count: int) -> int:
    """The guide's modules: rows of 3 when the count divides by 3, else rows of 2 when it divides by 2, else 3."""
    if count % 3 == 0:
        return 3
    if count % 2 == 0:
        return 2
    return 3


def _address_lines(debtor) -> list[str]:
    street = " ".join(p for p in (debtor.street, debtor.civic_number) if p)
    place = " ".join(p for p in (debtor.postal_code, debtor.city, f"({debtor.province})" if debtor.province else "")
                     if p)
    country = debtor.country if debtor.country and debtor.country != "IT" else ""
    return [line for line in (street, place, country) if line]


def _creditor_info(creditor) -> str:
    website = (creditor.website or "").removeprefix("https://").removeprefix("http://").rstrip("/")
    parts = [website, creditor.email, creditor.pec, creditor.phone]
    return " · ".join(p for p in parts if p)


class NoticeDocument:
    """A PDF with one or more notices, written to a binary stream; call :meth:`close` at the end."""

    def __init__(self, out, *, title: str = "Avviso di pagamento pagoPA"):
        self.canvas = Canvas(out, pagesize=(PAGE_W, PAGE_H), pageCompression=1, initialFontName=FONT)
        self.canvas.setTitle(title)
        self.canvas.setCreator("Pay Box")
        self.pages = 0
        self._forms: set[str] = set()
        self._page_open = False
        #: The logo of each creditor seen (by id): (XObject name, pixel width, pixel height), or None without one.
        self._logos: dict = {}

    # --- Infrastructure -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Finish the PDF (the stream then holds the whole document)."""
        if self.pages == 0:
            raise NoticeError("Documento senza avvisi.")
        self.canvas.save()

    def _static(self, name: str, width: float, height: float, draw, x: float, y: float) -> None:
        """Place the form ``name`` at (x, y), drawing it with ``draw(canvas)`` the first time."""
        c = self.canvas
        if name not in self._forms:
            c.beginForm(name, 0, 0, width, height)
            draw(c)
            c.endForm()
            self._forms.add(name)
        c.saveState()
        c.translate(x, y)
        c.doForm(name)
        c.restoreState()

    def _logo(self, creditor) -> tuple[str, int, int] | None:
        """The creditor's logo as an image XObject of this document, embedded the first time it is asked for."""
        key = getattr(creditor, "id", None)
        if key is None:
            key = ("object", id(creditor))
        if key not in self._logos:
            png = getattr(creditor, "logo_png", None)
            image = logo.pdf_image(bytes(png)) if png else None
            self._logos[key] = self._embed_image(image, f"logo{len(self._logos)}") if image else None
        return self._logos[key]

    def _embed_image(self, image: logo.PdfImage, name: str) -> tuple[str, int, int]:
        """Register ``image`` (deflate data with PNG predictors, used as they are) as the XObject ``name``."""
        doc = self.canvas._doc

        def stream(data: bytes, colour_space: str, colours: int) -> PDFStream:
            return PDFStream(PDFDictionary({
                "Type": PDFName("XObject"), "Subtype": PDFName("Image"), "Width": image.width,
                "Height": image.height, "ColorSpace": PDFName(colour_space), "BitsPerComponent": 8,
                "Filter": PDFName("FlateDecode"),
                "DecodeParms": PDFDictionary({"Predictor": 15, "Colors": colours, "BitsPerComponent": 8,
                                              "Columns": image.width}),
            }), content=data)

        xobject = stream(image.data, image.colour_space, image.colours)
        if image.alpha is not None:
            xobject.dictionary["SMask"] = doc.Reference(stream(image.alpha, "DeviceGray", 1))
        doc.addForm(name, xobject)
        return name, image.width, image.height

    def _draw_logo(self, creditor, top: float) -> None:
        """The logo fitted in its LOGO × LOGO box at the top right of the header, touching the box's corner."""
        found = self._logo(creditor)
        if found is None:
            return
        name, width, height = found
        scale = min(LOGO / width, LOGO / height)
        w, h = width * scale, height * scale
        c = self.canvas
        c.saveState()
        c.translate(PAGE_W - MARGIN - w, top - h)
        c.scale(w, h)
        c.doForm(name)
        c.restoreState()

    # --- One notice --------------------------------------------------------------------------------------

    def add(self, position, *, creditor) -> int:
        """Draw the notice of ``position`` on new pages; return how many pages it took.

        :raise NoticeError: if the position has nothing left to pay.
        """
        single, installments = _payables(position)
        if single is None and not installments:
            raise NoticeError("La posizione non ha importi da pagare: nessun avviso da stampare.")
        t = Texts(bilingual=bool(creditor.bilingual_notices))
        subject = cut_text(position.subject, SUBJECT_MAX_CHARS)
        ctx = _Notice(position=position, creditor=creditor, texts=t, subject=subject)
        first_page = self.pages
        y = self._new_page(ctx)
        y = self._info(ctx, y)
        y = self._amount_and_where(ctx, y, single, installments)
        y = self._choose(ctx, y)
        blocks = []
        if single:
            blocks.append((self._single_height(t), lambda top, p=single: self._single(ctx, top, p)))
        if installments:
            per = installments_per_row(len(installments))
            for i in range(0, len(installments), per):
                row = installments[i : i + per]
                blocks.append((_ROW_H, lambda top, row=row, per=per: self._installment_row(ctx, top, row, per)))
        if creditor.postal_account:
            # Only options crediting the postal account get a slip; above the 10-digit Poste amount field an option
            # is payable on pagoPA only.
            for item in [p for p in ([single] if single else []) + installments
                         if p.amount_cents <= barcodes.POSTE_MAX_CENTS
                         and pays_postal_account(p.iban, creditor.postal_account)]:
                blocks.append((self._postal_height(t), lambda top, p=item: self._postal(ctx, top, p)))
        for height, draw in blocks:
            if y - height < MARGIN:
                self.canvas.showPage()
                y = self._new_page(ctx)
            draw(y)
            y -= height + 4 * mm
        self.canvas.showPage()
        return self.pages - first_page

    def _new_page(self, ctx) -> float:
        """Start a page with the header (the notice title, the subject and the logo); return the y below it."""
        self.pages += 1
        c = self.canvas
        t = ctx.texts
        top = PAGE_H - MARGIN
        name = f"header-{int(t.bilingual)}"

        def static(c):
            c.setFillColorRGB(*BLUE)
            c.setFont(BOLD, 9)
            c.drawString(0, HEADER_H - 9, t.label("notice"))
            c.setStrokeColorRGB(*LINE)
            c.setLineWidth(0.6)
            c.line(0, 0.5, CONTENT_W, 0.5)

        self._static(name, CONTENT_W, HEADER_H, static, MARGIN, top - HEADER_H)
        text_block(c, ctx.subject, SUBJECT_X0, top - 14, SUBJECT_X1 - SUBJECT_X0, font=BOLD, size=16,
                   max_lines=2, min_size=11, leading=1.18)
        self._draw_logo(ctx.creditor, top)
        return top - HEADER_H - 5 * mm

    def _info(self, ctx, top: float) -> float:
        c, t = self.canvas, ctx.texts
        height = 34 * mm
        half = CONTENT_W / 2
        col_w = half - 6 * mm

        def static(c):
            c.setFillColorRGB(*BLUE)
            c.setFont(BOLD, 8)
            c.drawString(0, height - 8, t.label("creditor"))
            c.drawString(half, height - 8, t.label("recipient"))
            _label(c, t.label("cf"), 0, height - 20, col_w)
            _label(c, t.label("cf"), half, height - 20, col_w)
            c.setStrokeColorRGB(*LINE)
            c.line(half - 3 * mm, 2 * mm, half - 3 * mm, height - 2 * mm)

        self._static(f"info-{int(t.bilingual)}", CONTENT_W, height, static, MARGIN, top - height)
        cr, debtor = ctx.creditor, ctx.position.debtor
        y = top - 20 - LABEL_SIZE - 1
        text_block(c, cr.fiscal_code, MARGIN, y, col_w, font=BOLD, size=8)
        text_block(c, debtor.fiscal_code, MARGIN + half, y, col_w, font=BOLD, size=8)
        y = top - 40
        y1 = text_block(c, cr.name, MARGIN, y, col_w, font=BOLD, size=10, max_lines=2, min_size=8)
        if cr.department:
            y1 = text_block(c, cr.department, MARGIN, y1, col_w, size=8)
        info = cut_text(_creditor_info(cr), 100)
        if info:
            text_block(c, info, MARGIN, y1, col_w, size=7, max_lines=2, min_size=6, colour=GREY)
        y2 = text_block(c, debtor.name, MARGIN + half, y, col_w, font=BOLD, size=10, max_lines=2, min_size=8)
        for line in _address_lines(debtor):
            y2 = text_block(c, line, MARGIN + half, y2, col_w, size=8)
        return top - height - 3 * mm

    def _amount_and_where(self, ctx, top, single, installments) -> float:
        c, t = self.canvas, ctx.texts
        extra = 16 * mm if t.bilingual else 0
        height = 50 * mm + extra
        half = CONTENT_W / 2
        col_w = half - 6 * mm

        def static(c):
            c.setFillColorRGB(*BAND)
            c.rect(0, 0, CONTENT_W, height, stroke=0, fill=1)
            c.setFillColorRGB(*BLUE)
            c.setFont(BOLD, 8)
            c.drawString(3 * mm, height - 4 * mm - 8, t.label("how_much"))
            c.drawString(half + 3 * mm, height - 4 * mm - 8, t.label("where"))
            y = height - 33 * mm
            for text in t.paragraphs("amount_note"):
                y = text_block(c, text, 3 * mm, y, col_w - 3 * mm, size=6.5, max_lines=6, colour=GREY) - 1.5 * mm
            y = height - 10 * mm
            for title, body in (("app_title", "app_text"), ("local_title", "local_text")):
                y = text_block(c, t.label(title), half + 3 * mm, y, col_w, font=BOLD, size=7.5, max_lines=2)
                for text in t.paragraphs(body):
                    y = text_block(c, text, half + 3 * mm, y, col_w, size=7, max_lines=4) - 1 * mm
                y -= 2 * mm

        self._static(f"amount-{int(t.bilingual)}", CONTENT_W, height, static, MARGIN, top - height)
        if single:
            cents, due = single.amount_cents, single.due_date
        else:
            cents, due = sum(p.amount_cents for p in installments), min(p.due_date for p in installments)
        x = MARGIN + 3 * mm
        amount = f"{format_euro(cents, symbol=False)} {t.label('euro') if not t.bilingual else 'Euro'}"
        text_block(c, amount, x, top - 10 * mm, col_w - 3 * mm, font=BOLD, size=18, min_size=12)
        text_block(c, f"{t.label('within')} {format_date(due)}", x, top - 19 * mm, col_w - 3 * mm, size=10)
        if len(installments) >= 2:
            key = "rate_full" if single else "rate_only"
            text_block(c, t.label(key, n=len(installments)), x, top - 25 * mm, col_w - 3 * mm, font=BOLD,
                       size=8, min_size=6.5, max_lines=2, colour=BLUE)
        return top - height - 4 * mm

    def _choose(self, ctx, top) -> float:
        t = ctx.texts
        self.canvas.setFillColorRGB(*INK)
        lines = t.paragraphs("choose")
        y = top
        for line in lines:
            y = text_block(self.canvas, line, MARGIN, y, CONTENT_W, font=BOLD if y == top else FONT, size=7.5)
        return y - 2 * mm

    # --- Payment blocks ----------------------------------------------------------------------------------

    @staticmethod
    def _single_height(t) -> float:
        return (60 + (8 if t.bilingual else 0)) * mm

    def _single(self, ctx, top, item: Payable) -> None:
        t, creditor = ctx.texts, ctx.creditor
        self._slip(
            ctx, top, name="single", height=self._single_height(t), extra=8 * mm if t.bilingual else 0,
            title="bank", intro="bank_text", intro_lines=3, amount_cents=item.amount_cents,
            band=f"{t.label('single')}  {t.label('within')} {format_date(item.due_date)}",
            left=[("to", 25, ctx.position.debtor.name, {}), ("ec", 33, creditor.name, {}),
                  ("subject", 41, ctx.subject, {"lines": 2})],
            right=[("cbill", 30, creditor.cbill_code or "—", {}), ("code", 38, format_nav(item.nav), {"size": 10}),
                   ("ec_cf", 46, creditor.fiscal_code, {})],
        )
        self._qr(ctx, item, MARGIN + 4 * mm, top - BAND_H - 4 * mm - QR)

    def _slip(self, ctx, top, *, name: str, height: float, extra: float, title: str, intro: str,
              intro_lines: int, band: str, amount_cents: int, left: list, right: list) -> None:
        """A payment slip (bank or postal): frame and title band, the intro text, the amount, and two columns of
        labelled values ``(label key, offset in mm, value, _value options)``; the symbol is the caller's."""
        c, t = self.canvas, ctx.texts
        col1, col1_w = 34 * mm, 84 * mm
        col2, col2_w = 122 * mm, CONTENT_W - 125 * mm

        def static(c):
            _frame(c, CONTENT_W, height)
            c.setFillColorRGB(*BLUE)
            c.setFont(BOLD, 9)
            c.drawString(3 * mm, height - 6 * mm, t.label(title))
            y = height - BAND_H - 3 * mm
            for text in t.paragraphs(intro):
                y = text_block(c, text, col1, y, col1_w, size=6.5, max_lines=intro_lines, colour=GREY)
            for x, width, column in ((col1, col1_w, left), (col2, col2_w, right)):
                for key, offset, _, _ in column:
                    _label(c, t.label(key), x, height - offset * mm - extra, width)

        x0 = MARGIN
        self._static(f"{name}-{int(t.bilingual)}", CONTENT_W, height, static, x0, top - height)
        text_block(c, band, x0 + col2 - 20 * mm, top - 3.2 * mm, col2_w + 20 * mm, font=BOLD, size=9,
                   min_size=6.5, right=True)
        text_block(c, f"{format_euro(amount_cents, symbol=False)} Euro", x0 + col2, top - BAND_H - 4 * mm, col2_w,
                   font=BOLD, size=16, min_size=10, right=True)
        for x, width, column in ((col1, col1_w, left), (col2, col2_w, right)):
            for _, offset, value, options in column:
                _value(c, value, x0 + x, top - offset * mm - extra, width, **options)

    def _installment_row(self, ctx, top, row: list[Payable], per: int) -> None:
        c, t = self.canvas, ctx.texts
        height = _ROW_H
        cell_w = CONTENT_W / per
        filled = len(row)
        # Beside the QR: bilingual labels take up to 3 (CF) and 2 (CBILL) lines, so the values move down.
        cf_label = 24 * mm
        cf_value = cf_label + (4.7 * mm if t.bilingual else 0)
        cbill_label = cf_value + 9 * mm
        cbill_value = cbill_label + (2.3 * mm if t.bilingual else 0)

        def static(c):
            _frame(c, CONTENT_W, height)
            c.setFillColorRGB(*BLUE)
            c.setFont(BOLD, 9)
            c.drawString(3 * mm, height - 6 * mm, t.label("bank"))
            c.setStrokeColorRGB(*LINE)
            # A last row with fewer installments keeps the module's cell width but shows only its cells.
            for i in range(1, filled):
                c.line(i * cell_w, 3 * mm, i * cell_w, height - BAND_H - 2 * mm)
            for i in range(filled):
                x = i * cell_w + 3 * mm
                side = x + QR + 3 * mm
                side_w = cell_w - QR - 9 * mm
                text_block(c, t.label("ec_cf"), side, height - cf_label, side_w, size=LABEL_SIZE - 0.5,
                           max_lines=3, min_size=4.5, leading=1.1, colour=GREY)
                text_block(c, t.label("cbill"), side, height - cbill_label, side_w, size=LABEL_SIZE - 0.5,
                           max_lines=2, min_size=4.5, leading=1.1, colour=GREY)
                _label(c, t.label("code"), x, height - 52 * mm, cell_w - 6 * mm)

        x0 = MARGIN
        self._static(f"row{per}-{filled}-{int(t.bilingual)}", CONTENT_W, height, static, x0, top - height)
        for i, item in enumerate(row):
            x = x0 + i * cell_w + 3 * mm
            w = cell_w - 6 * mm
            head = f"{t.label('installment', n=item.number)}  {t.label('within')} {format_date(item.due_date)}"
            text_block(c, head, x, top - BAND_H - 2 * mm, w, font=BOLD, size=8.5, min_size=6)
            text_block(c, f"{format_euro(item.amount_cents, symbol=False)} Euro", x, top - BAND_H - 7 * mm, w,
                       font=BOLD, size=13, min_size=9)
            self._qr(ctx, item, x, top - 23 * mm - QR)
            side = x + QR + 3 * mm
            side_w = cell_w - QR - 9 * mm
            _value(c, ctx.creditor.fiscal_code, side, top - cf_value, side_w)
            _value(c, ctx.creditor.cbill_code or "—", side, top - cbill_value, side_w)
            _value(c, format_nav(item.nav), x, top - 52 * mm, w, size=10)

    @staticmethod
    def _postal_height(t) -> float:
        return (62 + (6 if t.bilingual else 0)) * mm

    def _postal(self, ctx, top, item: Payable) -> None:
        t, creditor = ctx.texts, ctx.creditor
        height = self._postal_height(t)
        debtor = ctx.position.debtor
        which = t.label("single") if item.label_key == "single" else t.label("installment", n=item.number)
        self._slip(
            ctx, top, name="postal", height=height, extra=6 * mm if t.bilingual else 0,
            title="postal", intro="postal_text", intro_lines=2, amount_cents=item.amount_cents,
            band=f"{which}  {t.label('within')} {format_date(item.due_date)}",
            left=[("account", 22, creditor.postal_account, {}), ("holder", 30, creditor.name, {}),
                  ("to", 38, debtor.name, {}), ("subject", 46, ctx.subject, {"lines": 2})],
            right=[("code", 30, format_nav(item.nav), {"size": 10}), ("doc_type", 38, "P1", {}),
                   ("ec_cf", 46, creditor.fiscal_code, {})],
        )
        payload = barcodes.poste_payload(
            nav=item.nav, postal_account=creditor.postal_account, amount_cents=item.amount_cents,
            creditor_fiscal_code=creditor.fiscal_code, debtor_fiscal_code=debtor.fiscal_code,
            debtor_name=debtor.name, subject=ctx.position.subject,
        )
        c = self.canvas
        c.setFillColorRGB(0, 0, 0)
        barcodes.draw_matrix(c, barcodes.datamatrix_matrix(payload), MARGIN + 4 * mm, top - BAND_H - 4 * mm - QR, QR)
        if creditor.postal_authorization:
            text_block(c, creditor.postal_authorization, MARGIN + 3 * mm, top - height + 5 * mm,
                       CONTENT_W - 6 * mm, size=6.5, min_size=5, colour=GREY70)

    def _qr(self, ctx, item: Payable, x: float, y: float) -> None:
        payload = barcodes.qr_payload(item.nav, ctx.creditor.fiscal_code, item.amount_cents)
        self.canvas.setFillColorRGB(0, 0, 0)
        barcodes.draw_matrix(self.canvas, barcodes.qr_matrix(payload), x, y, QR)


_ROW_H = 64 * mm


@dataclass
class _Notice:
    position: object
    creditor: object
    texts: Texts
    subject: str


def _frame(c, width: float, height: float) -> None:
    c.setFillColorRGB(*BAND)
    c.rect(0, height - BAND_H, width, BAND_H, stroke=0, fill=1)
    c.setStrokeColorRGB(*LINE)
    c.setLineWidth(0.6)
    c.rect(0, 0, width, height, stroke=1, fill=0)


def _label(c, text: str, x: float, top: float, width: float) -> None:
    """A field label: one line, shrunk (and at worst cut) to ``width``."""
    text_block(c, text, x, top, width, size=LABEL_SIZE, min_size=4.5, colour=GREY)


def _value(c, text, x: float, top: float, width: float, *, size: float = 8.5, lines: int = 1) -> None:
    """A field value just under its label."""
    text_block(c, text, x, top - LABEL_SIZE - 1.2, width, font=BOLD, size=size, max_lines=lines,
               min_size=size - 2)


def notice_filename(position) -> str:
    """``<debtor CF>_<IUV>.pdf`` after the unpaid single payment (else the first unpaid installment): the name of
    the notice everywhere (download, e-mail attachment, bill-run envelope)."""
    options = unpaid_options(position) or list(position.options)
    first = next((o for o in options if o.kind == "single"), options[0])
    return f"{position.debtor.fiscal_code}_{first.iuv}.pdf"


def render_notice_with_pages(position, *, creditor) -> tuple[bytes, int]:
    """The notice of one position as a PDF, and its page count (for the bill-run index).

    :raise NoticeError: if the position has nothing left to pay.
    """
    out = io.BytesIO()
    document = NoticeDocument(out, title=f"Avviso di pagamento - {printable(position.subject)[:60]}")
    pages = document.add(position, creditor=creditor)
    document.close()
    return out.getvalue(), pages


def render_notice(position, *, creditor) -> bytes:
    """The notice of one position as a PDF (Flask-free; ``position.debtor`` and ``.options`` are read).

    :raise NoticeError: if the position has nothing left to pay.
    """
    return render_notice_with_pages(position, creditor=creditor)[0]


__all__ = ["NoticeDocument", "NoticeError", "installments_per_row", "notice_filename", "render_notice",
           "render_notice_with_pages"]
