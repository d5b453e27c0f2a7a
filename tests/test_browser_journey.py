"""Browser: the officer's main journey, end to end in Debian's chromium.

Log in, create a position with an installment plan through the form, find it in the list by fiscal code and by
notice number, and see it on the citizen page.
"""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from portal.extensions import db
from portal.ledger.models import Position
from portal.ledger.notice_numbers import format_nav
from tests.browser_support import sign_in

pytestmark = pytest.mark.browser

CF = "RCCMNL83S18D969H"


def test_officer_creates_installment_plan_and_finds_it_everywhere(app, page, make_user, service):
    make_user("operatore", role="operator")
    sign_in(page, "operatore")

    menu = page.get_by_role("navigation", name="Menu principale")
    menu.get_by_role("link", name="Nuova posizione").click()
    page.locator("#debtor_fiscal_code").fill(CF)
    page.get_by_label("Nome e cognome o ragione sociale").fill("Emanuele Riccardi")
    page.get_by_label("Causale").fill("TARI 2027 - utenza domestica")
    page.locator("label[for=mode-1]").click()
    page.get_by_label("Numero di rate").fill("3")
    page.get_by_label("Totale da rateizzare (€)").fill("300,00")
    page.get_by_label("Scadenza della prima rata").fill((date.today() + timedelta(days=20)).isoformat())
    page.get_by_role("button", name="Genera rate").click()
    expect(page.locator("#summary-table tbody tr")).to_have_count(3)
    page.get_by_role("button", name="Crea posizione").click()
    page.wait_for_url("**/officer/positions/*")
    expect(page.get_by_text("Posizione creata.")).to_be_visible()

    with app.app_context():
        position = db.session.scalars(sa.select(Position)).one()
        navs = [o.notice_number for o in position.options]
        assert [o.kind for o in position.options] == ["installment"] * 3
        db.session.remove()
    second_nav = format_nav(navs[1])
    expect(page.get_by_text(second_nav).first).to_be_visible()

    menu.get_by_role("link", name="Posizioni", exact=True).click()
    page.get_by_label("Contribuente").fill(CF.lower())
    page.get_by_role("button", name="Filtra").click()
    rows = page.locator("#positions-results tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Emanuele Riccardi")

    page.get_by_role("link", name="Azzera i filtri").click()
    page.get_by_label("IUV o codice avviso").fill(second_nav)
    page.get_by_role("button", name="Filtra").click()
    expect(page.locator("#positions-results tbody tr")).to_have_count(1)
    expect(page.locator("#positions-results")).to_contain_text("TARI 2027 - utenza domestica")

    menu.get_by_role("link", name="Contribuente", exact=True).click()
    page.get_by_label("Codice fiscale").fill(CF)
    page.get_by_label("Codice fiscale").press("Enter")
    expect(page.get_by_text("Emanuele Riccardi").first).to_be_visible()
    expect(page.get_by_text("TARI 2027 - utenza domestica")).to_be_visible()
    expect(page.locator("main")).to_contain_text("300,00")
