"""Payment notice PDFs: barcodes decoded from the rendered pages, texts and their boxes, the route and the CLI.

Pages are rasterised with ``pdftoppm`` (poppler-utils) and decoded with zxing-cpp; texts and their positions come
from ``pdftotext -bbox``.
"""

import html
import re
import shutil
import subprocess
from datetime import date

import pytest
from PIL import Image

from portal.extensions import db
from portal.formatting import format_date
from portal.ledger.notice_numbers import format_nav
from portal.money import format_euro
from portal.notices import NoticeError, barcodes, render, render_notice
from portal.notices.layout import (
    HEADER_H,
    MARGIN,
    PAGE_W,
    SUBJECT_MAX_CHARS,
    SUBJECT_X1,
    cut_text,
    fit_lines,
)
from portal.notices.render import installments_per_row
from tests.conftest import CF_COMUNE, CF_PERSON
from tests.prerequisites import require

zxingcpp = pytest.importorskip("zxingcpp", reason="zxing-cpp is needed to decode the barcodes")

@pytest.fixture(autouse=True)
def _poppler_installed():
    require("pdftoppm", "pdftotext")


LONG_SUBJECT = ("Tassa sui rifiuti TARI anno 2027 utenza domestica di Via Giuseppe Garibaldi 123 e relative "
                "pertinenze, acconto e saldo con conguaglio")  # 130 characters, above the guide's 90


def poppler(tool: str, *args: str) -> str:
    """Run a poppler-utils tool on our own temporary files; return its standard output (skips without it)."""
    require(tool)
    return subprocess.run([shutil.which(tool), *args], check=True, capture_output=True, text=True).stdout  # noqa: S603


def decode_pages(pdf: bytes, tmp_path, dpi: int = 300) -> list[tuple[str, str]]:
    """(format, text) of every barcode on every page."""
    source = tmp_path / "notice.pdf"
    source.write_bytes(pdf)
    poppler("pdftoppm", "-png", "-gray", "-r", str(dpi), str(source), str(tmp_path / "page"))
    found = []
    for page in sorted(tmp_path.glob("page-*.png")):
        with Image.open(page) as image:
            for result in zxingcpp.read_barcodes(image):
                found.append((result.format.name, result.text))
    return found


def words(pdf: bytes, tmp_path) -> list[dict]:
    """Every word with its page and box (points, origin top-left) as pdftotext -bbox reports it."""
    source = tmp_path / "words.pdf"
    source.write_bytes(pdf)
    out = poppler("pdftotext", "-bbox", str(source), "-")
    result = []
    for page_no, page in enumerate(out.split("<page ")[1:], start=1):
        for m in re.finditer(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>',
                             page):
            result.append({"page": page_no, "x0": float(m[1]), "y0": float(m[2]), "x1": float(m[3]),
                           "y1": float(m[4]), "text": html.unescape(m[5])})
    return result


def plain_text(pdf: bytes, tmp_path) -> str:
    source = tmp_path / "text.pdf"
    source.write_bytes(pdf)
    return poppler("pdftotext", "-layout", str(source), "-")


def expected_qr(option) -> str:
    return f"PAGOPA|002|{option.notice_number}|{CF_COMUNE}|{option.amount_cents}"


# --- Pure helpers -------------------------------------------------------------------------------------------


def test_qr_payload_pads_small_amounts_and_uses_version_4_m():
    assert barcodes.qr_payload("301000000000000144", CF_COMUNE, 5) == f"PAGOPA|002|301000000000000144|{CF_COMUNE}|05"
    payload = barcodes.qr_payload("301000000000000144", CF_COMUNE, 99_999_999_999)
    assert len(barcodes.qr_matrix(payload)) == 33
    symbol = zxingcpp.create_barcode(payload, zxingcpp.BarcodeFormat.QRCode, ec_level="M", version=4)
    assert symbol.ec_level == "M"
    # What is drawn decodes back to the payload, with level M (read from the symbol's format information).
    matrix = barcodes.qr_matrix(payload)
    image = Image.new("L", (len(matrix) + 8, len(matrix) + 8), 255)
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if dark:
                image.putpixel((c + 4, r + 4), 0)
    result = zxingcpp.read_barcode(image.resize((image.width * 8, image.height * 8), Image.NEAREST))
    assert result.text == payload
    assert result.ec_level == "M"


def test_poste_payload_offsets_match_the_digest():
    text = barcodes.poste_payload(nav="301000000000000144", postal_account="1234567", amount_cents=15000,
                                  creditor_fiscal_code="01234567890", debtor_fiscal_code=CF_PERSON,
                                  debtor_name="Mario Rossi", subject="TARI 2025 rata unica")
    assert len(text) == 256
    assert text.startswith("codfase=NBPA;18301000000000000144120000012345671000000150003896" "1P1" "01234567890")
    assert text[15:33] == "301000000000000144"
    assert text[49:59] == "0000015000"
    assert text[66:77] == "01234567890"
    assert text[77:93] == CF_PERSON
    assert text[93:133].rstrip() == "Mario Rossi"
    assert text[133:243].rstrip() == "TARI 2025 rata unica"
    assert text[243:255] == " " * 12
    assert text[255] == "A"


def test_poste_payload_refuses_amounts_beyond_its_field():
    with pytest.raises(ValueError, match="bollettino postale"):
        barcodes.poste_payload(nav="301000000000000144", postal_account="1", amount_cents=10_000_000_000,
                               creditor_fiscal_code=CF_COMUNE, debtor_fiscal_code=CF_PERSON, debtor_name="A",
                               subject="B")


def test_poste_payload_cuts_long_fields_and_drops_accents():
    text = barcodes.poste_payload(nav="301000000000000144", postal_account="1234567", amount_cents=1,
                                  creditor_fiscal_code=CF_COMUNE, debtor_fiscal_code=CF_PERSON,
                                  debtor_name="Niccolò Àlvarez " * 10, subject="x" * 200)
    assert len(text) == 256
    assert text.isascii()
    assert text[93:100] == "Niccolo"


def test_cut_text_and_fit_lines():
    cut = cut_text(LONG_SUBJECT, SUBJECT_MAX_CHARS)
    assert len(cut) <= SUBJECT_MAX_CHARS
    assert cut.endswith("…")
    assert not cut[:-1].endswith(" ")
    assert LONG_SUBJECT.startswith(cut[:-1])
    assert cut_text("TARI 2027", 90) == "TARI 2027"
    lines, size = fit_lines("parola " * 100, "Helvetica", 10, 100, max_lines=2, min_size=8)
    assert len(lines) == 2
    assert size == 8
    assert lines[-1].endswith("…")
    from reportlab.pdfbase.pdfmetrics import stringWidth
    assert all(stringWidth(line, "Helvetica", size) <= 100 for line in lines)


@pytest.mark.parametrize(("count", "per"), [(2, 2), (3, 3), (4, 2), (5, 3), (6, 3), (7, 3), (8, 2)])
def test_installments_per_row(count, per):
    assert installments_per_row(count) == per


# --- Rendered notices ---------------------------------------------------------------------------------------


def test_single_payment_notice_qr_and_texts(make_position, creditor, tmp_path):
    position = make_position(amount=15000, due=date(2027, 1, 31))
    pdf = render_notice(position, creditor=creditor)
    assert pdf.startswith(b"%PDF")
    option = position.single_option
    found = decode_pages(pdf, tmp_path)
    assert found == [("QRCode", expected_qr(option))]
    text = plain_text(pdf, tmp_path)
    assert format_nav(option.notice_number) in text
    assert "150,00 Euro" in text
    assert "31/01/2027" in text
    assert "AVVISO DI PAGAMENTO" in text
    assert "PAGA CON L'APP IO" in text
    assert "Mario Rossi" in text
    assert CF_PERSON in text
    assert "Comune di Prova" in text
    assert "BOLLETTINO POSTALE PA" not in text


def test_installments_each_have_their_own_qr(make_position, creditor, tmp_path):
    position = make_position(amount=150000, installments=(50000, 50000, 50001), due=date(2027, 1, 31))
    pdf = render_notice(position, creditor=creditor)
    found = decode_pages(pdf, tmp_path)
    assert sorted(t for f, t in found if f == "QRCode") == sorted(expected_qr(o) for o in position.options)
    assert len(found) == 4
    text = plain_text(pdf, tmp_path)
    assert "Puoi pagare per intero oppure in 3 rate" in text
    for option in position.options:
        assert format_nav(option.notice_number) in text
    assert "1.500,00 Euro" in text
    assert "500,01 Euro" in text
    assert "RATA 3" in text
    assert format_date(position.installments[2].due_date) in text


def postal_iban(account: str) -> str:
    """The IBAN of the postal current account ``account`` (Poste Italiane, ABI 07601, CAB 03200)."""
    from schwifty import IBAN

    return str(IBAN.generate("IT", bank_code="0760103200", account_code=account.zfill(12)))


def credit_postal_account(position, account: str) -> None:
    """Make every option of ``position`` credit the postal account (its first transfer)."""
    for option in position.options:
        option.transfers[0].iban = postal_iban(account)
    db.session.commit()


def test_postal_slip_only_for_options_crediting_the_postal_account():
    assert render.pays_postal_account(postal_iban("1234567"), "1234567")
    assert render.pays_postal_account(postal_iban("1234567").lower(), "000001234567")
    assert not render.pays_postal_account(postal_iban("7654321"), "1234567")  # another postal account
    assert not render.pays_postal_account("IT60X0542811101000000123456", "1234567")  # a bank account
    assert not render.pays_postal_account(None, "1234567")
    assert not render.pays_postal_account(postal_iban("1234567"), None)


def test_a_bank_iban_gets_no_poste_slip_even_when_the_creditor_has_a_postal_account(make_position, creditor,
                                                                                     tmp_path):
    creditor.postal_account = "1234567"
    creditor.postal_authorization = "AUT. DB/SSIC/E 12345 DEL 01/01/2025"
    db.session.commit()
    position = make_position(amount=12000)  # its transfer credits the treasury's bank IBAN
    pdf = render_notice(position, creditor=creditor)
    assert [f for f, _ in decode_pages(pdf, tmp_path)] == ["QRCode"]
    assert "BOLLETTINO POSTALE PA" not in plain_text(pdf, tmp_path)
    credit_postal_account(position, "1234567")
    pdf = render_notice(position, creditor=creditor)
    assert sorted(f for f, _ in decode_pages(pdf, tmp_path)) == ["DataMatrix", "QRCode"]
    assert "BOLLETTINO POSTALE PA" in plain_text(pdf, tmp_path)


def test_postal_account_adds_the_poste_data_matrix(make_position, creditor, tmp_path):
    creditor.postal_account = "1234567"
    creditor.postal_authorization = "AUT. DB/SSIC/E 12345 DEL 01/01/2025"
    creditor.cbill_code = "A1B2C"
    db.session.commit()
    position = make_position(amount=0, installments=(7000, 8000), due=date(2027, 3, 31))
    credit_postal_account(position, "1234567")
    pdf = render_notice(position, creditor=creditor)
    found = decode_pages(pdf, tmp_path)
    matrices = sorted(t for f, t in found if f == "DataMatrix")
    expected = sorted(
        barcodes.poste_payload(nav=o.notice_number, postal_account="1234567", amount_cents=o.amount_cents,
                               creditor_fiscal_code=CF_COMUNE, debtor_fiscal_code=CF_PERSON,
                               debtor_name="Mario Rossi", subject="TARI 2027")
        for o in position.options
    )
    assert matrices == expected
    assert all(len(m) == 256 for m in matrices)
    assert sorted(t for f, t in found if f == "QRCode") == sorted(expected_qr(o) for o in position.options)
    text = plain_text(pdf, tmp_path)
    assert "Puoi pagare in 2 rate" in text
    assert "BOLLETTINO POSTALE PA" in text
    assert "AUT. DB/SSIC/E 12345 DEL 01/01/2025" in text
    assert "A1B2C" in text


@pytest.mark.parametrize("bilingual", [False, True])
def test_longest_texts_are_cut_and_stay_in_their_boxes(make_position, creditor, tmp_path, bilingual):
    creditor.bilingual_notices = bilingual
    creditor.name = ("Comune di " + "Sant'Agata de' Goti e Frazioni Unite " * 4)[:140]
    creditor.postal_account = "123456789012"
    creditor.postal_authorization = ("AUT. DB/SSIC/E 12345 DEL 01/01/2025 " * 5)[:140]
    creditor.email, creditor.website = "ufficio.tributi@" + "a" * 60 + ".it", "https://www." + "b" * 60 + ".it"
    db.session.commit()
    position = make_position(amount=99_999_999_999, installments=(1000, 1000, 1000, 1000, 1000), name="X" * 140)
    position.subject = LONG_SUBJECT
    credit_postal_account(position, "123456789012")
    pdf = render_notice(position, creditor=creditor)
    found = words(pdf, tmp_path)
    assert found
    for word in found:
        assert word["x0"] >= MARGIN - 0.5, word
        assert word["x1"] <= PAGE_W - MARGIN + 0.5, word
    # The subject: at most 90 characters, cut at a word with an ellipsis, inside its box next to the logo.
    cut = cut_text(LONG_SUBJECT, SUBJECT_MAX_CHARS)
    # Words of the header band (title and subject): the whole subject must be among them.
    header = [w for w in found if w["page"] == 1 and w["y1"] <= MARGIN + HEADER_H]
    header_text = " ".join(w["text"] for w in header)
    assert cut in header_text, header_text
    assert all(w["x1"] <= SUBJECT_X1 + 0.5 for w in header), header
    text = plain_text(pdf, tmp_path)
    assert "999.999.999,99 Euro" in text
    if bilingual:
        assert "ZAHLUNGSMITTEILUNG" in text
        assert "WO ZAHLEN?" in text
    else:
        assert "ZAHLUNGSMITTEILUNG" not in text
    codes = decode_pages(pdf, tmp_path, dpi=300)
    assert len([c for c in codes if c[0] == "QRCode"]) == 6
    # 999.999.999,99 does not fit the 10-digit Poste amount: that option has no postal slip.
    assert len([c for c in codes if c[0] == "DataMatrix"]) == 5


def test_paid_options_are_left_out_and_nothing_to_pay_is_an_error(make_position, creditor, tmp_path):
    from portal.ledger.status import OptionStatus

    position = make_position(amount=15000, installments=(7500, 7500))
    position.installments[0].status = OptionStatus.CANCELLED
    db.session.commit()
    found = decode_pages(render_notice(position, creditor=creditor), tmp_path)
    assert len(found) == 2
    for option in position.options:
        option.status = OptionStatus.CANCELLED
    db.session.commit()
    with pytest.raises(NoticeError):
        render_notice(position, creditor=creditor)


# --- Route and CLI ------------------------------------------------------------------------------------------


def published(position):
    from portal.ledger import services as ledger
    from portal.ledger.status import PositionStatus

    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test")
    position.pagopa_synced_target = "published"
    db.session.commit()
    return position


def test_route_downloads_the_notice(client, login, make_user, make_position, tmp_path):
    position = published(make_position(amount=15000))
    iuv = position.single_option.iuv
    login(make_user(role="viewer"))
    page = client.get(f"/officer/positions/{position.id}")
    assert f"/officer/positions/{position.id}/notice.pdf" in page.get_data(as_text=True)
    response = client.get(f"/officer/positions/{position.id}/notice.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")
    assert response.headers["Content-Disposition"] == f"attachment; filename={CF_PERSON}_{iuv}.pdf"
    option = db.session.get(type(position.single_option), position.single_option.id)
    assert decode_pages(response.data, tmp_path) == [("QRCode", expected_qr(option))]


def test_route_is_scoped(client, login, make_user, make_service, make_position):
    other = make_service(code="MENSA", name="Mensa scolastica")
    position = make_position(amount=15000)
    login(make_user(role="operator", services=[other]))
    assert client.get(f"/officer/positions/{position.id}/notice.pdf").status_code == 404
    assert client.get("/officer/positions/999999/notice.pdf").status_code == 404


def test_route_needs_login(client, make_position):
    position = make_position(amount=15000)
    response = client.get(f"/officer/positions/{position.id}/notice.pdf")
    assert response.status_code == 302


def test_cli_writes_the_pdf(app, make_position, tmp_path):
    position = make_position(amount=15000, installments=(7500, 7500))
    nav = position.installments[1].notice_number
    out = tmp_path / "avviso.pdf"
    result = app.test_cli_runner().invoke(args=["notices", "pdf", format_nav(nav), str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF")
    assert len(decode_pages(out.read_bytes(), tmp_path)) == 3
    missing = app.test_cli_runner().invoke(args=["notices", "pdf", "301000000000000000", str(tmp_path / "x.pdf")])
    assert missing.exit_code != 0
    assert "Nessuna posizione" in missing.output


def test_format_euro_is_what_the_notice_prints():
    assert format_euro(99_999_999_999, symbol=False) == "999.999.999,99"


def test_route_refuses_a_position_with_nothing_to_pay(client, login, make_user, make_position):
    from portal.ledger.status import OptionStatus

    position = published(make_position(amount=15000))
    position.single_option.status = OptionStatus.CANCELLED
    db.session.commit()
    login(make_user(role="admin"))
    response = client.get(f"/officer/positions/{position.id}/notice.pdf")
    assert response.status_code == 302
    assert "nessun avviso" in client.get(response.headers["Location"]).get_data(as_text=True)


@pytest.mark.parametrize(("state", "reason"), [
    ("draft", "è una bozza"), ("publishing", "in corso di caricamento"), ("cancelled", "è annullata"),
])
def test_the_notice_is_offered_only_where_pagopa_collects_it(client, login, make_user, make_position,
                                                             make_service, state, reason):
    from portal.ledger import services as ledger

    if state == "draft":
        position = make_position(service=make_service(code="IMU", name="IMU", draft_first=True))
    else:
        position = make_position()
    if state == "cancelled":
        ledger.cancel_position(db.session, published(position), reason="Errore", actor="test")
        db.session.commit()
    login(make_user(role="admin"))
    page = client.get(f"/officer/positions/{position.id}").get_data(as_text=True)
    assert "notice.pdf" not in page
    assert 'data-testid="notice-email"' not in page
    assert reason in page.split('data-testid="notice-unavailable"')[1].split("</p>")[0]
    download = client.get(f"/officer/positions/{position.id}/notice.pdf")
    assert download.status_code == 302
