"""Browser: drafts published one by one and as a selection up to the sandbox; the positions list says its total and
pages with the filters in the URL; the jobs page hides periodic no-op runs until asked."""

import re

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.jobs.models import JobRecord
from portal.ledger.types import utcnow
from tests.browser_support import sign_in
from tests.test_sync import jobs, sandbox, sandbox_server, sandbox_state  # noqa: F401

pytestmark = pytest.mark.browser


def test_drafts_are_published_from_their_page_and_as_a_selection(app, page, make_user, make_service, make_position,
                                                                  station, jobs, sandbox):  # noqa: F811
    imu = make_service(code="IMU", name="IMU", taxonomy_code="9/0101100IM/", draft_first=True)
    drafts = [make_position(service=imu, amount=20000 + n) for n in range(4)]
    ids = [p.id for p in drafts]
    imu_id = imu.id
    make_user("operatore", role="operator")
    sign_in(page, "operatore")
    page.goto(f"/officer/positions/{ids[0]}")
    page.get_by_test_id("publish").click()
    expect(page.get_by_text("in corso di caricamento").first).to_be_visible()
    with app.app_context():
        jobs.run_pending()
        db.session.remove()
    assert sandbox_state(sandbox)["positions"] == 1

    page.goto("/officer/positions")
    page.locator("#f-service_id").select_option(str(imu_id))
    page.locator("#f-status").select_option("draft")
    page.get_by_role("button", name="Filtra").click()
    expect(page.locator("#positions-count")).to_contain_text("3 posizioni")
    page.get_by_test_id("publish-selection").click()
    expect(page.get_by_test_id("publish-count")).to_contain_text("3 bozze")
    page.get_by_role("button", name="Conferma la pubblicazione").click()
    expect(page.get_by_text("Pubblicazione richiesta per 3 bozze.")).to_be_visible()
    with app.app_context():
        jobs.run_pending()
        db.session.remove()
    assert sandbox_state(sandbox)["positions"] == 4


def test_the_list_counts_and_pages_keeping_the_filters(app, page, make_user, make_position):
    for n in range(55):
        make_position(amount=1000 + n)
    make_user("consulta", role="viewer")
    sign_in(page, "consulta")
    page.goto("/officer/positions?amount_min=10,00")
    expect(page.locator("#positions-count")).to_contain_text("55 posizioni: mostrate 50.")
    more = page.get_by_role("link", name="Carica altre")
    assert "amount_min=" in more.get_attribute("href")
    href = more.get_attribute("href")
    more.click()
    expect(page.locator("#positions-results tbody tr")).to_have_count(55)
    # Without JavaScript the same link is a page of its own, with the filters in its URL and the count of where it is.
    page.goto(href)
    expect(page.locator("#positions-results tbody tr")).to_have_count(5)
    expect(page.locator("#positions-count")).to_contain_text("55 posizioni: mostrate dalla 51 alla 55.")


def test_the_jobs_page_hides_periodic_no_op_runs(app, page, make_user, creditor):
    with app.app_context():
        now = utcnow()
        db.session.add_all([
            JobRecord(kind="sync_sweep", queue="sync", status="done", idle=True, message="Nessuna posizione",
                      created_at=now, finished_at=now),
            JobRecord(kind="sync_sweep", queue="sync", status="done", idle=True, message="Nessuna posizione",
                      created_at=now, finished_at=now),
            JobRecord(kind="sync_sweep", queue="sync", status="done", idle=False, message="3 posizioni sincronizzate",
                      created_at=now, finished_at=now),
        ])
        db.session.commit()
        db.session.remove()
    make_user("amministratore", role="admin")
    sign_in(page, "amministratore")
    page.goto("/officer/jobs")
    table = page.get_by_test_id("jobs-table")
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(page.get_by_test_id("jobs-hidden-idle")).to_contain_text("2 controlli periodici senza esito")
    page.locator("label[for=jobs-idle]").click()
    page.get_by_role("button", name="Filtra").click()
    expect(table.locator("tbody tr")).to_have_count(3)
    assert re.search(r"idle=1", page.url)
