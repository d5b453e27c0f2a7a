"""Browser: an officer starts a bill run, watches it complete without reloading, and downloads the package."""

import zipfile

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.jobs.queue import get_backend
from tests.browser_support import sign_in

pytestmark = pytest.mark.browser


def test_officer_runs_a_bill_run_and_downloads_the_zip(app, page, make_user, billable, settings, tmp_path):
    make_user("operatore", role="operator")
    db.session.remove()
    sign_in(page, "operatore")

    page.get_by_role("navigation", name="Menu principale").get_by_role("link", name="Bollettazioni").click()
    page.get_by_role("link", name="Nuova bollettazione").click()
    page.get_by_label("Descrizione").fill("TARI 2027 - acconto")
    page.get_by_label("Servizio").select_option(label="TARI - Tassa rifiuti (TARI)")
    page.get_by_role("button", name="Calcola quanti avvisi").click()
    expect(page.get_by_test_id("billrun-preview")).to_contain_text("6 avvisi, di cui 1 senza indirizzo")
    page.get_by_text("Un PDF per busta (CF_IUV.pdf)").click()  # Bootstrap Italia draws the radio on its label
    page.get_by_role("button", name="Avvia la bollettazione").click()
    page.wait_for_url("**/officer/billruns/*")
    expect(page.get_by_test_id("billrun-status")).to_have_text("Selezione in corso")

    # The workers do their part; the page follows by itself (HTMX polling), with no reload.
    with app.app_context():
        get_backend(app).run_pending()
        db.session.remove()
    expect(page.get_by_test_id("billrun-status")).to_have_text("Completata", timeout=10_000)
    expect(page.get_by_test_id("billrun-progress")).to_contain_text("Avvisi stampati: 6 di 6")
    with page.expect_download() as download:
        page.get_by_test_id("billrun-download").click()
    path = tmp_path / "package.zip"
    download.value.save_as(path)
    with zipfile.ZipFile(path) as package:
        assert sum(1 for n in package.namelist() if n.startswith("avvisi/")) == 5
