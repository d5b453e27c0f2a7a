"""The whole path of a credit over real HTTP: created in Pay Box, published on the pagoPA sandbox by the sync job,
paid on the sandbox's Checkout page, and the paSendRTV2 receipt delivered back to Pay Box's SOAP endpoint.

Pay Box is served by ``live_server`` (the test app on a free port) so the sandbox can call it back.
"""

import pytest
import requests
import sqlalchemy as sa

from portal.extensions import db
from portal.jobs.queue import ManualBackend
from portal.ledger import services as ledger
from portal.ledger.models import Event, Position, Receipt
from portal.ledger.status import PositionStatus
from portal.pagopa.checkout import CartNotice, CheckoutClient, ReturnUrls
from tests.conftest import CF_COMUNE, position_input
from tests.servers import serving

API_KEY = "e2e-key"


@pytest.fixture(scope="module")
def sandbox_url(live_server, tmp_path_factory):
    from portal.pagopa.sandbox import create_app as create_sandbox

    sandbox = create_sandbox({
        "TESTING": True, "SECRET_KEY": "sandbox-e2e", "SANDBOX_API_KEY": API_KEY,
        "SANDBOX_DATABASE": str(tmp_path_factory.mktemp("e2e") / "sandbox.sqlite3"),
        "SANDBOX_PAYBOX_SOAP_URL": f"{live_server}/pagopa/paForNode",
        # Deliveries are triggered by the test (/sandbox/rt/deliver), so the order of events is deterministic.
        "SANDBOX_DELIVERY_WORKER": False,
    })
    with serving(sandbox, public_url_key="SANDBOX_PUBLIC_URL") as base:
        yield base


@pytest.fixture
def jobs(app, sandbox_url, monkeypatch):
    requests.post(f"{sandbox_url}/sandbox/reset", timeout=5).raise_for_status()
    for key, value in {"PAGOPA_GPD_URL": f"{sandbox_url}/gpd/debt-positions-service",
                       "PAGOPA_CHECKOUT_URL": f"{sandbox_url}/checkout/ec", "PAGOPA_API_KEY": API_KEY}.items():
        monkeypatch.setitem(app.config, key, value)
    backend = ManualBackend(app)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    return backend


def pay_on_checkout(app, sandbox_url: str, option, company: str) -> None:
    """What the citizen does: a cart for the notice, then "Paga" on the Checkout page."""
    client = CheckoutClient.from_config(app.config)
    location = client.create_cart(
        [CartNotice(option.notice_number, CF_COMUNE, option.amount_cents, company, option.description)],
        ReturnUrls("https://comune.example/ok", "https://comune.example/annullato", "https://comune.example/errore"),
    )
    paid = requests.post(location, data={"action": "pay"}, allow_redirects=False, timeout=10)
    assert paid.status_code == 302
    assert paid.headers["Location"] == "https://comune.example/ok"


def test_a_credit_goes_to_pagopa_is_paid_and_comes_back_once(app, ctx, jobs, sandbox_url, creditor, service):
    position, _ = ledger.create_position(db.session, creditor, position_input(service, amount=4250),
                                         actor="test")
    db.session.commit()
    assert position.status == PositionStatus.DRAFT
    assert position.sync_pending
    jobs.run_pending()

    db.session.expire_all()
    assert position.status == PositionStatus.PUBLISHED
    assert not position.sync_pending
    assert position.published_at is not None
    on_pagopa = requests.get(f"{sandbox_url}/gpd/debt-positions-service/v1/organizations/{CF_COMUNE}/debtpositions/"
                             f"{position.iupd}", headers={"Ocp-Apim-Subscription-Key": API_KEY}, timeout=5).json()
    assert on_pagopa["status"] == "VALID"

    option = position.options[0]
    # The node may deliver the same receipt twice at once (broadcast, re-send): only one payment may come of it.
    requests.post(f"{sandbox_url}/sandbox/rt/duplicate", json={"enabled": True}, timeout=5).raise_for_status()
    pay_on_checkout(app, sandbox_url, option, creditor.name)
    requests.post(f"{sandbox_url}/sandbox/rt/deliver", timeout=10).raise_for_status()

    db.session.expire_all()
    position = db.session.get(Position, position.id)
    assert position.status == PositionStatus.PAID
    assert position.paid_cents == 4250
    receipts = db.session.scalars(sa.select(Receipt).where(Receipt.position_id == position.id)).all()
    assert len(receipts) == 1
    receipt = receipts[0]
    assert (receipt.source, receipt.amount_cents, receipt.flag) == ("paSendRTV2", 4250, None)
    assert receipt.psp_id
    assert receipt.receipt_id
    assert "<receipt>" in receipt.raw_xml
    paid = db.session.scalars(sa.select(Event).where(Event.position_id == position.id, Event.kind == "paid")).one()
    assert paid.details["receipt_id"] == receipt.receipt_id
    assert paid.details["psp_id"] == receipt.psp_id
    state = requests.get(f"{sandbox_url}/sandbox/state", timeout=5).json()
    assert state["deliveries_by_status"] == {"delivered": 1}
