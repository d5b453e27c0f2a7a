"""Litigation against the pagoPA sandbox over HTTP: the old position is re-read, invalidated, the new one
published with the engine's amount and transfers; a citizen who just paid the old notice stops that one."""

from datetime import date, timedelta

import pytest
import requests
import sqlalchemy as sa

from portal.collections import batches
from portal.collections.models import CollectionPolicy
from portal.extensions import db
from portal.jobs.queue import ManualBackend
from portal.ledger import queries
from portal.ledger import services as ledger
from portal.ledger.models import Position
from portal.ledger.status import PositionStatus
from portal.pagopa.gpd import GPDClient
from tests.conftest import CF_COMUNE, position_input
from tests.test_end_to_end import API_KEY, pay_on_checkout, sandbox_url  # noqa: F401 - the sandbox fixture

S = PositionStatus


@pytest.fixture
def jobs(app, sandbox_url, monkeypatch):  # noqa: F811
    requests.post(f"{sandbox_url}/sandbox/reset", timeout=5).raise_for_status()
    for key, value in {"PAGOPA_GPD_URL": f"{sandbox_url}/gpd/debt-positions-service",
                       "PAGOPA_CHECKOUT_URL": f"{sandbox_url}/checkout/ec", "PAGOPA_API_KEY": API_KEY}.items():
        monkeypatch.setitem(app.config, key, value)
    backend = ManualBackend(app)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    return backend


def gpd_status(sandbox_url, iupd):  # noqa: F811
    return requests.get(f"{sandbox_url}/gpd/debt-positions-service/v1/organizations/{CF_COMUNE}/debtpositions/{iupd}",
                        headers={"Ocp-Apim-Subscription-Key": API_KEY}, timeout=5).json()


def published_then_overdue(creditor, service, jobs, fiscal_code="RSSMRA80A01H501U"):
    position, _ = ledger.create_position(db.session, creditor, position_input(service, amount=25000,
                                                                              fiscal_code=fiscal_code), actor="test")
    db.session.commit()
    jobs.run_pending()
    db.session.expire_all()
    assert position.status == S.PUBLISHED
    past = date.today() - timedelta(days=400)
    position.due_date = position.options[0].due_date = past
    ledger.transition(db.session, position, S.EXPIRED, actor="test")
    db.session.commit()
    return position


def test_litigation_invalidates_the_old_and_publishes_the_new_then_paying_closes_it(
        app, ctx, jobs, sandbox_url, creditor, service, legal_rates):  # noqa: F811
    db.session.add(CollectionPolicy(service_id=service.id, requires_reminder=False))
    db.session.commit()
    old = published_then_overdue(creditor, service, jobs)
    batch = batches.start(db.session, creditor, "litigation", queries.PositionFilter(), today=date.today(),
                          title="Accertamenti")
    db.session.commit()
    jobs.run_pending()  # the batch chunk, then the syncs (invalidate old, publish new) and the finish
    jobs.run_pending()
    db.session.expire_all()
    assert old.status == S.IN_LITIGATION
    assert gpd_status(sandbox_url, old.iupd)["status"] == "INVALID"
    new = db.session.scalar(sa.select(Position).where(Position.replaces_id == old.id))
    remote = gpd_status(sandbox_url, new.iupd)
    assert remote["status"] == "VALID"
    assert remote["paymentOption"][0]["amount"] == new.amount_cents > 25000
    assert sum(t["amount"] for t in remote["paymentOption"][0]["transfer"]) == new.amount_cents
    assert db.session.get(type(batch), batch.id).status == "done"
    pay_on_checkout(app, sandbox_url, new.options[0], creditor.name)
    requests.post(f"{sandbox_url}/sandbox/rt/deliver", timeout=10)
    db.session.expire_all()
    assert new.status == S.PAID


def test_a_citizen_who_just_paid_the_old_notice_stops_its_litigation(
        app, ctx, jobs, sandbox_url, creditor, service, legal_rates):  # noqa: F811
    db.session.add(CollectionPolicy(service_id=service.id, requires_reminder=False))
    db.session.commit()
    old = published_then_overdue(creditor, service, jobs)
    batch = batches.start(db.session, creditor, "litigation", queries.PositionFilter(), today=date.today(),
                          title="Accertamenti")
    db.session.commit()
    # Paid on pagoPA while the batch waits; the receipt has not reached Pay Box yet.
    pay_on_checkout(app, sandbox_url, old.options[0], creditor.name)
    outcome = batches.run_chunk(db.session, batch.id, today=date.today(), client=GPDClient.from_config(app.config))
    db.session.commit()
    assert outcome.startswith("1 posizioni lavorate")
    [item] = db.session.get(type(batch), batch.id).items
    assert item.outcome == "paid"
    assert "appena pagato" in item.message
    db.session.expire_all()
    assert old.status == S.EXPIRED
    assert db.session.scalar(sa.select(Position).where(Position.replaces_id == old.id)) is None
    requests.post(f"{sandbox_url}/sandbox/rt/deliver", timeout=10)
    db.session.expire_all()
    assert old.status == S.PAID  # collected once, on the old notice
