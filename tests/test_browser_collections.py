"""Browser: an operator reminds overdue positions, then sends the still-unpaid ones to litigation, from the back
office, reading the preview and the engine's breakdown, and following each batch to its end; pagoPA is the sandbox
(over HTTP), which ends with the old positions INVALID and the new ones published for the amount the preview said."""

import re
from datetime import date, timedelta

import pytest
import requests
import sqlalchemy as sa
from playwright.sync_api import expect

from portal.collections import batches, overdue
from portal.collections.models import CollectionPolicy, Reminder
from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.models import Position
from portal.ledger.status import PositionStatus
from tests.browser_support import sign_in
from tests.conftest import CF_COMUNE, position_input
from tests.test_sync import API_KEY, gpd_url, jobs, sandbox, sandbox_server, sandbox_state  # noqa: F401

pytestmark = pytest.mark.browser

S = PositionStatus
EURO = re.compile(r"(\d{1,3}(?:\.\d{3})*,\d{2})\u00a0€")


def cents(text: str) -> int:
    """The cents of the first ``1.234,56 €`` in ``text``."""
    match = EURO.search(text)
    assert match, text
    return int(match.group(1).replace(".", "").replace(",", ""))


def remote(sandbox_base: str, iupd: str) -> dict:
    response = requests.get(f"{gpd_url(sandbox_base)}/v1/organizations/{CF_COMUNE}/debtpositions/{iupd}",
                            headers={"Ocp-Apim-Subscription-Key": API_KEY}, timeout=5)
    response.raise_for_status()
    return response.json()


def published_then_overdue(creditor, service, jobs, *, fiscal_code, name, email=None):  # noqa: F811
    """A position published on the sandbox whose due date then passed 400 days ago (unpaid)."""
    data = position_input(service, amount=25000, fiscal_code=fiscal_code, name=name)
    data.debtor.email = email
    position, _ = ledger.create_position(db.session, creditor, data, actor="test")
    db.session.commit()
    jobs.run_pending()
    db.session.expire_all()
    assert position.status == S.PUBLISHED
    position.due_date = position.options[0].due_date = date.today() - timedelta(days=400)
    db.session.commit()
    return position.id


def follow_to_the_end(page, app, jobs, *, total: int, outcome: str):  # noqa: F811
    """The batch page follows the job by itself (HTMX polling): one chunk, then the rest."""
    status = page.get_by_test_id("batch-status")
    expect(status).to_contain_text(f"In corso: 0 / {total}")
    with app.app_context():
        jobs.run_pending(limit=1)  # the first chunk (one position)
        db.session.remove()
    expect(status).to_contain_text(f"In corso: 1 / {total}", timeout=10_000)
    progress = page.get_by_role("progressbar", name="Avanzamento del lotto")
    expect(progress).to_have_attribute("aria-valuenow", str(100 // total))
    with app.app_context():
        jobs.run_pending()  # the other chunks, the syncs with pagoPA, the letters
        db.session.remove()
    expect(status).to_contain_text(f"Concluso: {total} / {total}", timeout=10_000)
    expect(status).to_contain_text(f"{outcome}: {total}")
    expect(progress).to_have_attribute("aria-valuenow", "100")


def test_operator_reminds_then_litigates_from_the_back_office(app, page, make_user, creditor, service, legal_rates,
                                                               jobs, sandbox, monkeypatch):  # noqa: F811
    monkeypatch.setattr(batches, "CHUNK", 1)  # one position per job, so the bar moves in steps
    tax_code = service.taxonomy_code
    db.session.add(CollectionPolicy(service_id=service.id, reminder_days=30, penalty_taxonomy_code="9/0101106SA/"))
    db.session.commit()
    ids = [published_then_overdue(creditor, service, jobs, fiscal_code="RSSMRA80A01H501U", name="Mario Rossi",
                                  email="mario.rossi@example.org"),
           published_then_overdue(creditor, service, jobs, fiscal_code="RSSMRA85T10A562S", name="Luigi Verdi")]
    overdue.scan(db.session, today=date.today())  # the daily job
    db.session.commit()
    make_user("operatore", role="operator")
    db.session.remove()

    # --- The reminders: from the dashboard's alert to a finished batch --------------------------------------------
    sign_in(page, "operatore")
    expect(page.get_by_test_id("overdue-alert")).to_contain_text("2 posizioni scadute da sollecitare")
    page.get_by_test_id("overdue-alert").get_by_role("link", name="Prepara i solleciti").click()
    expect(page.get_by_test_id("preview-summary")).to_contain_text("2 posizioni, da incassare 500,00\u00a0€")
    rows = page.get_by_test_id("preview-table").locator("tbody tr")
    expect(rows).to_have_count(2)
    deadline = (date.today() + timedelta(days=30)).strftime("%d/%m/%Y")
    mario, luigi = rows.filter(has_text="Mario Rossi"), rows.filter(has_text="Luigi Verdi")
    for row in (mario, luigi):
        expect(row).to_contain_text("250,00\u00a0€")
        expect(row).to_contain_text(deadline)
    expect(mario).to_contain_text("e-mail")
    expect(luigi).to_contain_text("posta (stampa)")
    page.get_by_label("Descrizione del lotto").fill("Solleciti TARI")
    page.get_by_role("button", name="Avvia il lotto di 2 posizioni").click()
    page.wait_for_url("**/officer/collections/*")
    expect(page.get_by_role("heading", level=1)).to_have_text("Solleciti TARI")
    follow_to_the_end(page, app, jobs, total=2, outcome="sollecitata")
    items = page.get_by_test_id("batch-items")
    expect(items.get_by_role("link", name="Sollecito (PDF)")).to_have_count(2)
    expect(page.get_by_role("link", name="Scarica il pacchetto di stampa (ZIP)")).to_be_visible()

    with app.app_context():
        assert {p.status for p in db.session.scalars(sa.select(Position))} == {S.REMINDED}
        # The reminder's 30 days go by, unpaid (same notice: nothing changed on pagoPA).
        db.session.execute(sa.update(Reminder).values(deadline=date.today() - timedelta(days=1)))
        db.session.commit()
        db.session.remove()

    # --- The litigation: preview with the engine's breakdown, start, to the end -----------------------------------
    page.get_by_role("navigation", name="Menu principale").get_by_role("link", name="Solleciti e contenzioso").click()
    page.get_by_role("link", name="Nuovo lotto di accertamenti").click()
    expect(page.get_by_test_id("preview-summary")).to_contain_text("2 posizioni, da incassare 500,00\u00a0€")
    row = page.get_by_test_id("preview-table").locator("tbody tr").filter(has_text="Mario Rossi")
    lines = {}
    for item in row.get_by_test_id("breakdown").locator("li").all():
        label, _, rest = item.inner_text().partition(":")
        lines[label.strip()] = cents(rest)
    assert list(lines) == ["Imposta non versata", "Sanzione", "Interessi", "Spese di notifica"]
    assert lines["Imposta non versata"] == 25000
    assert lines["Sanzione"] == 6250  # 25% of the tax, for a violation after 1 September 2024
    assert lines["Interessi"] > 0
    assert lines["Spese di notifica"] == 783
    total = cents(row.locator("td.amount").inner_text())
    assert total == sum(lines.values())
    page.get_by_role("button", name="Avvia il lotto di 2 posizioni").click()
    page.wait_for_url("**/officer/collections/*")
    follow_to_the_end(page, app, jobs, total=2, outcome="passata al contenzioso")
    expect(page.get_by_test_id("batch-items").get_by_role("link", name="Atto (PDF)")).to_have_count(2)

    # --- pagoPA: the old positions invalidated, the new ones published for the amount the preview showed ---------
    with app.app_context():
        for old_id in ids:
            old = db.session.get(Position, old_id)
            new = db.session.scalar(sa.select(Position).where(Position.replaces_id == old_id))
            assert old.status == S.IN_LITIGATION
            assert remote(sandbox, old.iupd)["status"] == "INVALID"
            published = remote(sandbox, new.iupd)
            assert published["status"] == "VALID"
            [option] = published["paymentOption"]
            assert option["amount"] == new.amount_cents == total
            transfers = {t["category"]: t["amount"] for t in option["transfer"]}
            assert transfers == {tax_code: 25000 + 783,
                                 "9/0101106SA/": lines["Sanzione"] + lines["Interessi"]}
        db.session.remove()
    assert sandbox_state(sandbox)["positions_by_status"] == {"INVALID": 2, "VALID": 2}

    # The new position's timeline links it to the one it replaces.
    page.get_by_test_id("batch-items").get_by_role("link", name="Nuova posizione").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Avviso di accertamento esecutivo")
    expect(page.locator("main")).to_contain_text("sostituisce una posizione non pagata")
