"""Browser: the citizen's journeys on the demo Comune, in Debian's chromium, with axe-core on every page.

Pay "Certificato anagrafico" (first with errors) on the sandbox's Checkout, land on the receipt, download the PDF,
and see it as the officer does; pay two notices in one cart; an officer builds a form from a template and a
citizen pays with it; the whole form by keyboard only.
"""

import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from portal import demo
from portal.extensions import db
from portal.ledger.models import Position
from portal.ledger.status import PositionStatus
from tests.accessibility import check_page
from tests.browser_support import sign_in
from tests.citizen_support import deliver_receipts

pytestmark = pytest.mark.browser

CF = "RSSMRA80A01H501U"


def settled(page) -> None:
    """Wait until htmx has finished swapping and settling (its settle step rewrites attributes for a moment)."""
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, "
                           ".htmx-added')")
    expect(page.locator("#form-errors")).to_be_focused()


@pytest.fixture
def demo_comune(app, ctx, pagopa):
    demo.load(db.session, positions=30)
    db.session.commit()
    return pagopa


def test_a_citizen_pays_a_certificate_and_the_officer_sees_it(app, page, demo_comune):
    page.goto("/")
    expect(page.get_by_role("heading", name="Pagamenti pagoPA")).to_be_visible()
    check_page(page, "citizen-home")
    page.get_by_role("link", name="Certificato anagrafico").click()
    expect(page.get_by_role("heading", name="Certificato anagrafico", level=1)).to_be_visible()
    check_page(page, "citizen-service")

    page.get_by_role("button", name="Continua").click()
    expect(page.locator("#form-errors")).to_be_visible()
    expect(page.locator("#f-codice_fiscale-error")).to_have_text("Campo obbligatorio.")
    expect(page.locator("#form-errors")).to_be_focused()
    settled(page)
    check_page(page, "citizen-service-errors")

    page.get_by_label("Codice fiscale").fill("RSSMRA80A01H501X")
    page.get_by_label("Nome e cognome").fill("Mario Rossi")
    page.get_by_label("E-mail").fill("mario.rossi@example.it")
    page.get_by_label("Tipo di certificato").select_option("Residenza")
    page.locator("label[for=f-_voce-1]").click()
    page.get_by_role("button", name="Continua").click()
    expect(page.locator("#f-codice_fiscale-error")).to_contain_text("non valido")
    settled(page)
    page.get_by_label("Codice fiscale").fill(CF)
    page.get_by_role("button", name="Continua").click()

    page.wait_for_url(re.compile(r".*/pagamento/[^/]+$"))
    expect(page.locator("[data-element=amount]")).to_have_text("0,52\u00a0€")
    check_page(page, "citizen-summary")
    page.get_by_role("button", name="Paga con pagoPA").click()

    page.wait_for_url(re.compile(r".*/checkout/pay/.*"))
    page.get_by_role("button", name=re.compile("^Paga")).click()
    page.wait_for_url(re.compile(r".*/pagamento/[^/]+$"))
    expect(page.get_by_text("attendiamo la ricevuta")).to_be_visible()
    check_page(page, "citizen-waiting")

    deliver_receipts(demo_comune.sandbox_url)
    expect(page.get_by_text("Pagamento eseguito")).to_be_visible(timeout=10_000)
    check_page(page, "citizen-receipt")
    with page.expect_download() as download:
        page.get_by_role("link", name="Scarica la ricevuta (PDF)").click()
    assert download.value.path().read_bytes()[:4] == b"%PDF"

    with app.app_context():
        position = db.session.scalars(sa.select(Position).where(Position.source == "citizen")).one()
        assert position.status == PositionStatus.PAID
        position_id = position.id
        db.session.remove()
    sign_in(page, "admin", "admin-valleverde")
    page.goto(f"/officer/positions/{position_id}")
    expect(page.get_by_test_id("position-source")).to_contain_text("citizen")
    answers = page.get_by_test_id("citizen-form")
    expect(answers).to_contain_text("Residenza")
    expect(answers).to_contain_text("Mario Rossi")
    expect(page.locator("main")).to_contain_text("Pagata")


def test_two_notices_in_one_cart_and_the_ones_that_cannot_be_paid(app, page, demo_comune):
    with app.app_context():
        from portal.ledger.models import Creditor, PaymentOption
        from portal.ledger.status import OptionStatus

        creditor_id = db.session.scalar(sa.select(Creditor.id))
        rows = db.session.execute(
            sa.select(PaymentOption.notice_number, Position.status, Position.id, PaymentOption.status)
            .join(Position).where(Position.creditor_id == creditor_id, PaymentOption.kind == "single")
            .order_by(PaymentOption.id)).all()
        open_ids = [r[2] for r in rows if r[1] == PositionStatus.PUBLISHED and r[3] == OptionStatus.UNPAID]
        paid_nav = next(r[0] for r in rows if r[3] == OptionStatus.PAID)
        cancelled_nav = next(r[0] for r in rows if r[1] == PositionStatus.CANCELLED)
        # The sandbox gets the demo's open positions (the sweep would do it in bulk when the demo starts).
        from portal.jobs.tasks import gpd_client
        from portal.pagopa.sync import sync_position

        chosen = []
        for position_id in open_ids[:2]:
            assert sync_position(db.session, position_id, gpd_client()).result == "synced"
            position = db.session.get(Position, position_id)
            chosen.append((position.options[0].notice_number, position.debtor.fiscal_code))
        db.session.commit()
        cf_of = {nav: db.session.scalar(sa.select(Position).join(PaymentOption).where(
            PaymentOption.notice_number == nav)).debtor.fiscal_code for nav in (paid_nav, cancelled_nav)}
        db.session.remove()

    page.goto("/avviso")
    check_page(page, "citizen-notice")
    for nav, cf in chosen:
        page.get_by_label("Codice avviso").fill(nav)
        page.get_by_label("Codice fiscale dell'intestatario").fill(cf)
        page.get_by_role("button", name="Cerca l'avviso").click()
        page.get_by_role("button", name="Aggiungi al carrello").click()
        expect(page.get_by_text("Avviso aggiunto al carrello.")).to_be_visible()
    check_page(page, "citizen-cart")

    page.get_by_label("Codice avviso").fill(paid_nav)
    page.get_by_label("Codice fiscale dell'intestatario").fill(cf_of[paid_nav])
    page.get_by_role("button", name="Cerca l'avviso").click()
    expect(page.locator("[data-element=notice-explanation]")).to_contain_text("già pagato")
    check_page(page, "citizen-notice-paid")
    page.get_by_label("Codice avviso").fill(cancelled_nav)
    page.get_by_label("Codice fiscale dell'intestatario").fill(cf_of[cancelled_nav])
    page.get_by_role("button", name="Cerca l'avviso").click()
    expect(page.locator("[data-element=notice-explanation]")).to_contain_text(re.compile("annullato|sostituito"))
    page.get_by_label("Codice avviso").fill(chosen[0][0])
    page.get_by_label("Codice fiscale dell'intestatario").fill("VRDLGU85M01F205Z")
    page.get_by_role("button", name="Cerca l'avviso").click()
    expect(page.locator("[data-element=lookup-error]")).to_contain_text("Nessun avviso corrisponde")
    check_page(page, "citizen-notice-not-found")

    page.get_by_role("button", name="Paga con pagoPA").click()
    page.wait_for_url(re.compile(r".*/checkout/pay/.*"))
    page.get_by_role("button", name=re.compile("^Paga")).click()
    page.wait_for_url(re.compile(r".*/pagamento/[^/]+$"))
    deliver_receipts(demo_comune.sandbox_url)
    expect(page.get_by_text("Pagamento eseguito")).to_be_visible(timeout=10_000)
    expect(page.locator("[data-element=receipt]")).to_have_count(2)


def test_an_officer_builds_a_form_from_a_template_and_a_citizen_pays_with_it(app, page, demo_comune):
    sign_in(page, "admin", "admin-valleverde")
    page.goto("/officer/settings/services")
    page.get_by_role("link", name="Modulo di pagamento CUP").click()
    page.get_by_role("button", name="Canone per occupazione occasionale di suolo pubblico").click()
    expect(page.get_by_label("Titolo del modulo")).to_have_value("Occupazione occasionale di suolo pubblico")
    page.get_by_label("Importo fisso o prezzo unitario (€)").fill("4,50")
    page.get_by_label("Importo fisso o prezzo unitario (€)").dispatch_event("change")
    preview = page.get_by_test_id("form-preview")
    expect(preview).to_contain_text("4,50")
    page.get_by_role("button", name="Pubblica").click()
    expect(page.get_by_text("Modulo pubblicato (versione 1)")).to_be_visible()

    page.goto("/servizi/CUP")
    page.get_by_label("Codice fiscale").fill(CF)
    page.get_by_label("Nome e cognome").fill("Mario Rossi")
    page.get_by_label("Via e numero civico dell'occupazione").fill("Via Roma 10")
    page.get_by_label("Primo giorno di occupazione").fill("2027-05-02")
    page.get_by_label("Numero di giorni").fill("3")
    page.get_by_role("button", name="Continua").click()
    expect(page.locator("[data-element=amount]")).to_have_text("13,50\u00a0€")
    page.get_by_role("button", name="Paga con pagoPA").click()
    page.wait_for_url(re.compile(r".*/checkout/pay/.*"))
    page.get_by_role("button", name=re.compile("^Paga")).click()
    page.wait_for_url(re.compile(r".*/pagamento/[^/]+$"))
    deliver_receipts(demo_comune.sandbox_url)
    expect(page.get_by_text("Pagamento eseguito")).to_be_visible(timeout=10_000)


def test_the_whole_form_by_keyboard(page, demo_comune):
    page.goto("/servizi/CERTIFICATI")

    def tab_to(element_id: str, limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement && document.activeElement.id") == element_id:
                return
        raise AssertionError(f"#{element_id} cannot be reached with Tab")

    tab_to("f-codice_fiscale")
    page.keyboard.type(CF)
    page.keyboard.press("Tab")
    page.keyboard.type("Mario Rossi")
    tab_to("f-tipo_certificato")
    page.keyboard.press("ArrowDown")
    tab_to("f-_voce-0")
    page.keyboard.press("Space")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/pagamento/[^/]+$"))
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement && document.activeElement.textContent.trim()") \
                == "Paga con pagoPA":
            break
    else:
        raise AssertionError("the pay button cannot be reached with Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/checkout/pay/.*"))
