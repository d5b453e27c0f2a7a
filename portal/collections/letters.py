"""The letters of collections as PDFs: the reminder (sollecito) and the assessment act, each followed by the
position's pagoPA notice (same NAV, QR and data as a bill run prints), so the citizen pays from the letter itself.

Drawn with ReportLab on the notice document's canvas: one PDF, letter page first, then the notice pages.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date

from reportlab.lib.units import mm

from portal.formatting import format_date
from portal.ledger.notice_numbers import format_nav
from portal.money import format_euro
from portal.notices.layout import BLUE, BOLD, CONTENT_W, FONT, MARGIN, PAGE_H, PAGE_W, text_block
from portal.notices.render import NoticeDocument, unpaid_options

LETTER_W = CONTENT_W - 10 * mm
LEFT = MARGIN + 5 * mm


@dataclass(frozen=True)
class LetterLine:
    """A line of the amounts table: label, amount, and how it was computed (may be empty)."""

    label: str
    cents: int
    explanation: str = ""


def _address(debtor) -> list[str]:
    street = " ".join(p for p in (debtor.street, debtor.civic_number) if p)
    place = " ".join(p for p in (debtor.postal_code, debtor.city, f"({debtor.province})" if debtor.province else "")
                     if p)
    return [line for line in (debtor.name, street, place) if line]


def _paragraph(c, text: str, y: float, *, size: float = 10, font: str = FONT) -> float:
    return text_block(c, text, LEFT, y, LETTER_W, font=font, size=size, max_lines=12, leading=1.35) - 3 * mm


def _draw_letter(document: NoticeDocument, position, creditor, *, title: str, on: date, paragraphs: list[str],
                 lines: list[LetterLine], total_label: str) -> None:
    c = document.canvas
    document.pages += 1
    y = PAGE_H - MARGIN - 5 * mm
    y = text_block(c, creditor.name, LEFT, y, LETTER_W / 2, font=BOLD, size=11, max_lines=2)
    if creditor.department:
        y = text_block(c, creditor.department, LEFT, y, LETTER_W / 2, size=9)
    y = text_block(c, f"C.F. {creditor.fiscal_code}", LEFT, y, LETTER_W / 2, size=9)
    top = PAGE_H - MARGIN - 35 * mm
    for line in _address(position.debtor):
        top = text_block(c, line, PAGE_W / 2, top, LETTER_W / 2, size=10, max_lines=2)
    y = min(y, top) - 12 * mm
    y = text_block(c, f"{creditor.city or ''}, {format_date(on)}".lstrip(", "), LEFT, y, LETTER_W, size=10) - 4 * mm
    y = text_block(c, title, LEFT, y, LETTER_W, font=BOLD, size=14, colour=BLUE, max_lines=2) - 2 * mm
    y = text_block(c, f"Oggetto: {position.subject}", LEFT, y, LETTER_W, font=BOLD, size=10, max_lines=2) - 4 * mm
    for text in paragraphs:
        y = _paragraph(c, text, y)
    if lines:
        y -= 2 * mm
        for line in lines:
            text_block(c, line.label, LEFT, y, LETTER_W * 0.6, size=10, font=BOLD)
            y = text_block(c, format_euro(line.cents), LEFT, y, LETTER_W, size=10, right=True)
            if line.explanation:
                y = text_block(c, line.explanation, LEFT + 4 * mm, y, LETTER_W * 0.8, size=7.5, max_lines=3)
            y -= 1.5 * mm
        c.setLineWidth(0.6)
        c.line(LEFT, y, LEFT + LETTER_W, y)
        y -= 2 * mm
        text_block(c, total_label, LEFT, y, LETTER_W * 0.6, size=11, font=BOLD)
        y = text_block(c, format_euro(sum(line.cents for line in lines)), LEFT, y, LETTER_W, size=11, font=BOLD,
                       right=True) - 6 * mm
    options = unpaid_options(position)
    if options:
        navs = ", ".join(format_nav(o.notice_number) for o in options)
        y = _paragraph(c, f"Codice avviso pagoPA: {navs} - Codice fiscale dell'ente: {creditor.fiscal_code}. "
                          "L'avviso di pagamento è nelle pagine seguenti.", y, size=9)
    c.showPage()


def _pdf(position, creditor, **letter) -> bytes:
    out = io.BytesIO()
    document = NoticeDocument(out, title=f"{letter['title']} - {position.subject}"[:80])
    _draw_letter(document, position, creditor, **letter)
    document.add(position, creditor=creditor)
    document.close()
    return out.getvalue()


def reminder_pdf(position, creditor, *, on: date, due_date: date, deadline: date, cost_cents: int,
                 sequence: int = 1) -> bytes:
    """The sollecito: what is still owed for ``due_date``, the new deadline, and the notice to pay it with."""
    owed = sum(o.amount_cents for o in unpaid_options(position) if o.kind == "single") or \
        sum(o.amount_cents for o in unpaid_options(position))
    lines = [LetterLine("Importo non pagato", owed - cost_cents, f"scaduto il {format_date(due_date)}")]
    if cost_cents:
        lines.append(LetterLine("Spese del sollecito", cost_cents))
    paragraphs = [
        f"Gentile {position.debtor.name},",
        f"dalle nostre verifiche non risulta ancora pagato quanto dovuto a {creditor.name} per l'oggetto "
        f"indicato, scaduto il {format_date(due_date)}.",
        f"La invitiamo a pagare entro il {format_date(deadline)} con l'avviso pagoPA allegato: con l'app IO, "
        "sul sito o nell'app della sua banca, o presso gli sportelli abilitati a pagoPA.",
        "Trascorso inutilmente questo termine, l'ente procederà con l'avviso di accertamento esecutivo, con "
        "l'aggiunta di sanzioni, interessi e spese di notifica (art. 1, commi 792 e 795, L. 160/2019).",
        "Se ha già pagato, non tenga conto di questa lettera.",
    ]
    title = "Sollecito di pagamento" if sequence == 1 else f"Sollecito di pagamento n. {sequence}"
    return _pdf(position, creditor, title=title, on=on, paragraphs=paragraphs, lines=lines,
                total_label=f"Da pagare entro il {format_date(deadline)}")


def assessment_pdf(position, old_position, creditor, *, on: date, deadline: date, breakdown: list[dict]) -> bytes:
    """The *avviso di accertamento esecutivo*: the breakdown line by line, the enforcement notice, the new notice."""
    lines = [LetterLine(item["label"], item["cents"], item.get("explanation") or "") for item in breakdown]
    paragraphs = [
        f"Gentile {position.debtor.name},",
        f"non risultando pagato quanto dovuto per «{old_position.subject}» nemmeno dopo il sollecito, con il "
        "presente atto si accerta l'importo dovuto, comprensivo di sanzione, interessi e spese, come segue.",
        f"L'importo va pagato entro il {format_date(deadline)} con l'avviso pagoPA allegato, che sostituisce il "
        "precedente (annullato). Entro lo stesso termine è possibile presentare ricorso.",
        "Decorso il termine, il presente atto costituisce titolo esecutivo (art. 1, c.792, L. 160/2019) e si "
        "procederà alla riscossione coattiva, con gli interessi di mora (c.802) e gli oneri di riscossione "
        "(c.803).",
    ]
    return _pdf(position, creditor, title="Avviso di accertamento esecutivo", on=on, paragraphs=paragraphs,
                lines=lines, total_label=f"Totale da pagare entro il {format_date(deadline)}")
