"""Browser: edit an unpaid position's amount and due date and see the new version on the sandbox and on the new
notice; abate a partly paid plan from its page."""

import shutil
import subprocess
from datetime import date, timedelta

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.ledger.models import Position
from tests.browser_support import sign_in
from tests.conftest import CF_COMUNE
from tests.prerequisites import require
from tests.test_ledger_payments import receipt_for, record
from tests.test_sync import gpd, jobs, sandbox, sandbox_server  # noqa: F401

pytestmark = pytest.mark.browser


def test_edit_reaches_the_sandbox_and_the_notice(app, page, make_user, station, make_position, jobs, gpd,  # noqa: F811
                                                 tmp_path):
    position = make_position(amount=12000)
    jobs.run_pending()
    position_id = position.id
    make_user("operatore", role="operator")
    sign_in(page, "operatore")
    page.goto(f"/officer/positions/{position_id}")
    page.get_by_test_id("edit").click()
    expect(page.get_by_role("heading", name="Modifica della posizione")).to_be_visible()
    new_due = date.today() + timedelta(days=60)
    page.locator("#single_amount").fill("85,50")
    page.locator("#single_due_date").fill(new_due.isoformat())
    page.get_by_label("Motivo della modifica (facoltativo)").fill("Superficie rettificata")
    page.get_by_role("button", name="Salva le modifiche").click()
    page.wait_for_url(f"**/officer/positions/{position_id}")
    expect(page.get_by_text("Posizione modificata.")).to_be_visible()
    expect(page.get_by_text("La posizione è stata modificata.")).to_be_visible()

    with app.app_context():
        jobs.run_pending()
        stored = db.session.get(Position, position_id)
        assert (stored.amount_cents, stored.pagopa_synced_version) == (8550, 2)
        remote = gpd.get(CF_COMUNE, stored.iupd)
        db.session.remove()
    assert [o.amount_cents for o in remote.options] == [8550]
    assert remote.raw["paymentOption"][0]["dueDate"].startswith(new_due.isoformat())

    page.reload()
    expect(page.get_by_text("La nuova versione è stata inviata a pagoPA.")).to_be_visible()
    response = page.request.get(page.get_by_test_id("notice-pdf").get_attribute("href"))
    assert response.ok
    assert response.body().startswith(b"%PDF")
    require("pdftotext")
    pdf = tmp_path / "avviso.pdf"
    pdf.write_bytes(response.body())
    text = subprocess.run([shutil.which("pdftotext"), "-layout", str(pdf), "-"],  # noqa: S603
                          capture_output=True, text=True, check=True).stdout
    assert "85,50" in text
    assert new_due.strftime("%d/%m/%Y") in text


def test_abate_a_partly_paid_plan(app, page, make_user, published, creditor):
    position = published(amount=30000, installments=(10000, 10000, 10000))
    record(creditor, receipt_for(next(o for o in position.options if o.installment_number == 1)))
    position_id = position.id
    make_user("operatore", role="operator")
    sign_in(page, "operatore")
    page.goto(f"/officer/positions/{position_id}")
    page.get_by_test_id("abate").locator("summary").click()
    page.get_by_label("Importo da sgravare").fill("150,00")
    page.get_by_label("Motivo dello sgravio").fill("Riduzione per compostaggio")
    page.get_by_role("button", name="Conferma lo sgravio").click()
    expect(page.get_by_text("Sgravio di 150,00")).to_be_visible()
    expect(page.get_by_text("L'importo dovuto è stato ridotto (sgravio).")).to_be_visible()
    expect(page.get_by_test_id("amount-due")).to_contain_text("150,00")
    with app.app_context():
        assert db.session.get(Position, position_id).amount_cents == 15000
        db.session.remove()
