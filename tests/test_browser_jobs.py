"""Browser: the jobs page shows long jobs advancing (a bill run's chunk, a bulk publication done one by one)."""

import threading
import time

import pytest

from portal.extensions import db
from portal.jobs.queue import ManualBackend
from portal.ledger import queries, sync_state
from portal.ledger import services as ledger
from portal.notices import billrun
from tests.browser_support import sign_in
from tests.conftest import position_input
from tests.test_sync import API_KEY, fault, gpd_url, sandbox, sandbox_server  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture
def jobs_page(app, page, make_user, monkeypatch):
    """An admin on the jobs page, which polls every second; returns a function reading a kind's progress bars."""
    monkeypatch.setitem(app.config, "JOBS_PAGE_POLL_SECONDS", 1)
    make_user("amministratore", role="admin")
    sign_in(page, "amministratore")

    def progress(kind: str) -> dict[str, tuple[int, int]]:
        """Job row id → (done, total) of each progress bar of that kind on the page now."""
        rows = page.locator(f'tr[data-job-kind="{kind}"]:has([role="progressbar"])')
        found = {}
        for row in rows.all():
            bar = row.locator('[role="progressbar"]')
            found[row.get_attribute("data-job-id")] = (int(bar.get_attribute("aria-valuenow")),
                                                       int(bar.get_attribute("aria-valuemax")))
        return found

    return progress


def run_in_background(app, backend: ManualBackend) -> threading.Thread:
    """The workers: run the waiting jobs (and those they ask for) in another thread."""
    def work():
        with app.app_context():
            backend.run_pending()
            db.session.remove()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def watch(page, progress, kind: str, worker: threading.Thread, *, total: int, seconds: float = 30) -> list[int]:
    """Open the jobs page and note every value the bar of the job of ``kind`` with ``total`` items shows, until
    the work is over."""
    page.goto("/officer/jobs")
    seen: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        bars = [done for done, of in progress(kind).values() if of == total]
        if bars and (not seen or seen[-1] != bars[0]):
            seen.append(bars[0])
        if not worker.is_alive() and seen and seen[-1] == total:
            break
        time.sleep(0.2)
    return seen


def test_a_bill_run_chunk_moves_its_bar(app, page, jobs_page, billable, settings, creditor, monkeypatch):
    backend = ManualBackend(app)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    monkeypatch.setitem(app.config, "NOTICES_CHUNK_SIZE", 6)
    real = billrun.unpaid_options

    def slow(position):  # each notice takes a while, as a thousand would
        time.sleep(0.7)
        return real(position)

    monkeypatch.setattr(billrun, "unpaid_options", slow)
    billrun.start_bill_run(db.session, creditor, queries.PositionFilter(), title="TARI 2027", mode="merged",
                           settings=billrun.BillRunSettings.from_config(app.config))
    db.session.commit()
    db.session.remove()

    worker = run_in_background(app, backend)
    # The chunk with the five notices of the positions with a postal address (the sixth has none).
    seen = watch(page, jobs_page, "billrun_chunk", worker, total=5)
    worker.join(30)

    # The bar went through intermediate values, upwards, to the end.
    assert [v for v in seen if 0 < v < 5], seen
    assert len({v for v in seen if v < 5}) >= 2, seen
    assert seen == sorted(seen)
    assert seen[-1] == 5


def test_a_long_publication_moves_its_bar(app, page, jobs_page, sandbox, creditor, service, monkeypatch):  # noqa: F811
    backend = ManualBackend(app)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    monkeypatch.setitem(app.config, "PAGOPA_GPD_URL", gpd_url(sandbox))
    monkeypatch.setitem(app.config, "PAGOPA_API_KEY", API_KEY)
    for _ in range(8):
        ledger.create_position(db.session, creditor, position_input(service), actor="test", enqueue_sync=False)
    db.session.commit()
    # GPD refuses the bulk call, so the batch goes one position at a time, each answered slowly.
    fault(sandbox, "POST /gpd/debt-positions-service/v2/", status=400, count=1)
    fault(sandbox, "POST /gpd/debt-positions-service/v1/", delay_seconds=0.6, count=8)
    sync_state.sweep(db.session)
    db.session.commit()
    db.session.remove()

    worker = run_in_background(app, backend)
    seen = watch(page, jobs_page, "publish_batch", worker, total=8)
    worker.join(30)

    assert len({v for v in seen if 0 < v < 8}) >= 2, seen
    assert seen == sorted(seen)
    assert seen[-1] == 8
