"""Geometry, texts and text fitting of the notice (pagoPA "Avviso di pagamento" guide 3.x, A4 portrait).

All lengths are PDF points (1/72 in); ``mm`` converts. Every variable text goes through :func:`fit_lines`,
which wraps, shrinks and finally cuts with an ellipsis, so nothing ever leaves its box whatever the data.
"""

import functools
import unicodedata
from dataclasses import dataclass

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth

PAGE_W, PAGE_H = A4
MARGIN = 10 * mm
CONTENT_W = PAGE_W - 2 * MARGIN
#: Header: the subject's box leaves room for the creditor logo (30×30 mm) at the top right.
HEADER_H = 34 * mm
LOGO = 30 * mm
SUBJECT_X0 = MARGIN
SUBJECT_X1 = PAGE_W - MARGIN - LOGO - 5 * mm
SUBJECT_MAX_CHARS = 90

FONT = "Helvetica"
BOLD = "Helvetica-Bold"
#: Colours: dark text, the pagoPA blue for section titles, light grey bands, 70% black for the authorisation.
INK = (0.055, 0.06, 0.075)
BLUE = (0.0, 0.4, 0.8)
BAND = (0.93, 0.95, 0.965)
LINE = (0.75, 0.78, 0.82)
GREY70 = (0.3, 0.3, 0.3)


# --- Texts --------------------------------------------------------------------------------------------------

IT = {
    "notice": "AVVISO DI PAGAMENTO",
    "creditor": "ENTE CREDITORE",
    "recipient": "DESTINATARIO AVVISO",
    "how_much": "QUANTO E QUANDO PAGARE?",
    "where": "DOVE PAGARE?",
    "within": "entro il",
    "euro": "Euro",
    "cf": "Cod. Fiscale",
    "rate_full": "Puoi pagare per intero oppure in {n} rate",
    "rate_only": "Puoi pagare in {n} rate",
    "amount_note": ("L'importo è aggiornato automaticamente dal sistema e potrebbe subire variazioni per eventuali "
                    "sgravi, note di credito, indennità di mora, sanzioni o interessi, ecc. Un operatore, il sito o "
                    "l'app che userai ti potrebbero quindi chiedere una cifra diversa da quella qui indicata."),
    "app_title": "PAGA CON L'APP IO",
    "app_text": ("oppure dal tuo Home Banking, con la tua app di pagamento o con gli altri canali abilitati."),
    "local_title": "PAGA SUL TERRITORIO",
    "local_text": ("presso Banche e Sportelli ATM, negli Uffici Postali e Punti Postali, nei Bar, Edicole, "
                   "Ricevitorie, Supermercati, Tabaccherie, e altri Esercenti Convenzionati."),
    "choose": "Utilizza la porzione di avviso relativa alla rata e al canale di pagamento che preferisci.",
    "bank": "BANCHE E ALTRI CANALI",
    "single": "RATA UNICA",
    "installment": "RATA {n}",
    "bank_text": ("Qui accanto trovi il codice QR e il codice interbancario CBILL per pagare attraverso il circuito "
                  "bancario e gli altri canali di pagamento abilitati."),
    "to": "Destinatario",
    "ec": "Ente Creditore",
    "subject": "Oggetto del pagamento",
    "cbill": "Codice CBILL",
    "code": "Codice Avviso",
    "ec_cf": "Cod. Fiscale Ente Creditore",
    "postal": "BOLLETTINO POSTALE PA",
    "postal_text": ("Bollettino Postale pagabile in tutti gli Uffici Postali e sui canali fisici o digitali "
                    "abilitati di Poste Italiane e dell'Ente Creditore"),
    "account": "sul C/C n.",
    "holder": "Intestato a",
    "doc_type": "Tipo",
}

DE = {
    "notice": "ZAHLUNGSMITTEILUNG",
    "creditor": "GLÄUBIGERKÖRPERSCHAFT",
    "recipient": "EMPFÄNGER",
    "how_much": "WIE VIEL UND BIS WANN?",
    "where": "WO ZAHLEN?",
    "within": "bis zum",
    "euro": "Euro",
    "cf": "Steuernummer",
    "rate_full": "Sie können den Gesamtbetrag oder in {n} Raten zahlen",
    "rate_only": "Sie können in {n} Raten zahlen",
    "amount_note": ("Der Betrag wird vom System automatisch aktualisiert und kann sich durch Nachlässe, Gutschriften, "
                    "Verzugsentschädigungen, Strafen oder Zinsen ändern. Ein Schalter, die Website oder die App "
                    "könnten daher einen anderen als den hier angegebenen Betrag verlangen."),
    "app_title": "ZAHLE MIT DER APP IO",
    "app_text": ("oder über dein Home Banking, mit deiner Zahlungs-App oder über die anderen zugelassenen Kanäle."),
    "local_title": "ZAHLE VOR ORT",
    "local_text": ("bei Banken und Geldautomaten, in Post- und Postannahmestellen, in Bars, Zeitungskiosken, "
                   "Annahmestellen, Supermärkten, Tabakläden und anderen Vertragspartnern."),
    "choose": "Verwende den Abschnitt für die Rate und den Zahlungskanal, die du bevorzugst.",
    "bank": "BANKEN UND ANDERE KANÄLE",
    "single": "EINMALZAHLUNG",
    "installment": "RATE {n}",
    "bank_text": ("Hier findest du den QR-Code und den CBILL-Code, um über das Bankennetz und die anderen "
                  "zugelassenen Zahlungskanäle zu zahlen."),
    "to": "Empfänger",
    "ec": "Gläubigerkörperschaft",
    "subject": "Zahlungsgrund",
    "cbill": "CBILL-Kodex",
    "code": "Mitteilungskodex",
    "ec_cf": "Steuernummer Gläubigerkörperschaft",
    "postal": "POSTZAHLSCHEIN PA",
    "postal_text": ("Postzahlschein zahlbar in allen Postämtern und über die physischen oder digitalen Kanäle von "
                    "Poste Italiane und der Gläubigerkörperschaft"),
    "account": "auf K/K Nr.",
    "holder": "Lautend auf",
    "doc_type": "Typ",
}


@dataclass(frozen=True)
class Texts:
    """The notice's fixed texts in Italian, or Italian and German (bilingual areas)."""

    bilingual: bool = False

    def label(self, key: str, **values) -> str:
        """A short label: ``Italiano / Deutsch`` when bilingual."""
        it = IT[key].format(**values)
        return f"{it} / {DE[key].format(**values)}" if self.bilingual else it

    def paragraphs(self, key: str, **values) -> list[str]:
        """A long text: the Italian one, then the German one when bilingual."""
        out = [IT[key].format(**values)]
        if self.bilingual:
            out.append(DE[key].format(**values))
        return out


# --- Text fitting -------------------------------------------------------------------------------------------

ELLIPSIS = "…"


def printable(text: str | None) -> str:
    """Text the standard PDF fonts can show (WinAnsi): other characters lose their accents or become ``?``."""
    text = " ".join((text or "").split())
    try:
        text.encode("cp1252")
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for ch in text:
        try:
            ch.encode("cp1252")
            out.append(ch)
        except UnicodeEncodeError:
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            out.append(base if base and base.isascii() else "?")
    return "".join(out)


def cut_text(text: str | None, limit: int) -> str:
    """``text`` at most ``limit`` characters, cut at a word boundary with an ellipsis when longer."""
    text = printable(text)
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    if " " in head[limit // 2 :]:
        head = head[: head.rfind(" ")]
    return head.rstrip(" ,;:.-–") + ELLIPSIS


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if stringWidth(candidate, font, size) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        # A single word wider than the box is broken by characters.
        while stringWidth(word, font, size) > width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and stringWidth(word[:cut], font, size) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    return lines


def _ellipsize(line: str, font: str, size: float, width: float) -> str:
    if stringWidth(line, font, size) <= width:
        return line
    while line and stringWidth(line + ELLIPSIS, font, size) > width:
        line = line[:-1]
    return line.rstrip() + ELLIPSIS


@functools.lru_cache(maxsize=8192)
def fit_lines(text: str | None, font: str, size: float, width: float, *, max_lines: int = 1,
              min_size: float | None = None) -> tuple[tuple[str, ...], float]:
    """Lines of ``text`` that fit ``width``: wrapped, shrunk down to ``min_size``, then cut with an ellipsis.

    Cached: the guide's fixed paragraphs and labels, and names repeated across a bill run, are measured once
    per process instead of once per notice.

    :return: the lines and the font size to draw them with.
    """
    text = printable(text)
    if not text:
        return (), size
    min_size = min_size or size
    current = size
    while True:
        lines = _wrap(text, font, current, width)
        if len(lines) <= max_lines:
            return tuple(lines), current
        if current - 0.5 < min_size:
            break
        current -= 0.5
    kept = lines[:max_lines]
    rest = " ".join(lines[max_lines - 1 :])
    kept[-1] = _ellipsize(rest, font, current, width)
    return tuple(kept), current


def text_block(canvas, text, x: float, top: float, width: float, *, font: str = FONT, size: float = 8,
               leading: float = 1.2, max_lines: int = 1, min_size: float | None = None, colour=INK,
               right: bool = False) -> float:
    """Draw fitted text from ``top`` (baseline of the first line below it); return the y below the block."""
    lines, used = fit_lines(text, font, size, width, max_lines=max_lines, min_size=min_size)
    canvas.setFillColorRGB(*colour)
    canvas.setFont(font, used)
    y = top - used
    for line in lines:
        if right:
            canvas.drawRightString(x + width, y, line)
        else:
            canvas.drawString(x, y, line)
        y -= used * leading
    return top - len(lines) * used * leading
