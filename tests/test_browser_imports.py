"""Browser: an officer uploads a bill run with errors, reads the row report, uploads the fixed file, confirms, and
watches the progress bar reach the end; the positions then reach the pagoPA sandbox through the sync jobs."""

import time

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.imports import bulk
from portal.imports import services as imports
from tests.browser_support import sign_in
from tests.import_support import CF_OTHER, rows_csv, single
from tests.test_browser_jobs import run_in_background
from tests.test_sync import jobs, sandbox, sandbox_server, sandbox_state  # noqa: F401

pytestmark = pytest.mark.browser

POSITIONS = 12


def bill_run(*, broken: bool) -> bytes:
    rows = [single(f"TARI-{n:03d}", f"{100 + n},00", cf=CF_OTHER if n % 2 else "RSSMRA80A01H501U",
                   name="Luisa Verdi" if n % 2 else "Mario Rossi") for n in range(1, POSITIONS + 1)]
    if broken:
        rows[2]["importo"] = "-5"            # row 4
        rows[6]["scadenza"] = "31/02/2027"   # row 8
    return rows_csv(rows)


def upload(page, data: bytes, name: str) -> None:
    page.get_by_role("navigation", name="Menu principale").get_by_role("link", name="Importazioni").click()
    page.get_by_label("Servizio").select_option(label="TARI - Tassa rifiuti (TARI)")
    page.get_by_label("File CSV o XLSX").set_input_files({"name": name, "mimeType": "text/csv", "buffer": data})
    page.get_by_role("button", name="Carica e verifica").click()
    page.wait_for_url("**/officer/imports/*")


def work(app, backend):
    """Run the waiting jobs (and those they ask for) in the background, as the workers would."""
    db.session.remove()
    return run_in_background(app, backend)


def test_officer_fixes_a_file_imports_it_and_the_positions_reach_pagopa(app, page, make_user, service, jobs,  # noqa: F811
                                                                        sandbox, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setitem(app.config, "IMPORTS_DIR", str(tmp_path / "imports"))
    monkeypatch.setitem(app.config, "IMPORTS_PAGE_POLL_SECONDS", 1)
    make_user("operatore", role="operator")
    sign_in(page, "operatore")

    # 1. A file with two bad rows: the dry run lists them, with row, column and message; nothing can be imported.
    upload(page, bill_run(broken=True), "tari-2027.csv")
    expect(page.get_by_test_id("import-status")).to_have_text("In attesa di verifica")
    work(app, jobs).join(30)
    expect(page.get_by_test_id("import-status")).to_have_text("Verificata", timeout=10_000)
    errors = page.get_by_test_id("import-errors")
    expect(errors.get_by_role("row")).to_have_count(3)  # header and two errors
    expect(errors.get_by_role("row").nth(1)).to_contain_text("4")
    expect(errors.get_by_role("row").nth(1)).to_contain_text("importo")
    expect(errors.get_by_role("row").nth(1)).to_contain_text("L'importo non può essere negativo.")
    expect(errors.get_by_role("row").nth(2)).to_contain_text("scadenza")
    expect(errors.get_by_role("row").nth(2)).to_contain_text("31/02/2027")
    expect(page.get_by_test_id("import-refusal")).to_contain_text("nulla viene importato")
    expect(page.get_by_test_id("import-confirm")).to_have_count(0)
    with page.expect_download() as download:
        page.get_by_test_id("import-report-csv").click()
    assert "L'importo non può essere negativo." in download.value.path().read_text(encoding="utf-8-sig")

    # 2. The fixed file: no errors, twelve new positions.
    upload(page, bill_run(broken=False), "tari-2027-corretto.csv")
    work(app, jobs).join(30)
    expect(page.get_by_test_id("import-status")).to_have_text("Verificata", timeout=10_000)
    expect(page.get_by_test_id("positions-new")).to_have_text(str(POSITIONS))
    expect(page.get_by_test_id("import-errors")).to_have_count(0)

    # 3. Confirm: the import writes a few positions at a time, each batch taking a while, as a large file would.
    monkeypatch.setattr(imports, "BATCH", 2)
    real = bulk.write_new_positions

    def slow(*args, **kwargs):
        time.sleep(0.7)
        return real(*args, **kwargs)

    monkeypatch.setattr(bulk, "write_new_positions", slow)
    page.get_by_test_id("import-confirm").click()
    expect(page.get_by_test_id("import-status")).to_have_text("Importazione in corso")
    worker = work(app, jobs)
    bar = page.get_by_test_id("import-progress")
    seen: list[int] = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if bar.count():
            value = int(bar.get_attribute("aria-valuenow"))
            if not seen or seen[-1] != value:
                seen.append(value)
            if value == 100 and page.get_by_test_id("import-status").inner_text() == "Importata":
                break
        time.sleep(0.2)
    worker.join(40)
    assert seen[-1] == 100, seen
    assert [v for v in seen if 0 < v < 100], seen  # the bar moved through intermediate values...
    assert seen == sorted(seen), seen                # ...only forwards
    expect(page.get_by_test_id("import-done")).to_contain_text(f"Importate {POSITIONS} posizioni")
    # Once done, the block no longer polls.
    expect(page.get_by_test_id("import-live")).not_to_have_attribute("hx-trigger", "every 1s")

    # 4. The import asked for a sync sweep: the positions went to the sandbox (GPD bulk calls).
    assert sandbox_state(sandbox)["positions"] == POSITIONS
    page.reload()
    expect(page.get_by_test_id("import-on-pagopa")).to_have_text(str(POSITIONS))
    page.get_by_test_id("import-positions").click()
    expect(page.get_by_text("Luisa Verdi").first).to_be_visible()
