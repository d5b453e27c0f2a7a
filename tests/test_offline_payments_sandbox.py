"""Payments outside pagoPA end to end on the sandbox: an officer records one, the durable sync tells GPD
(``paymentoptions/paids``) and the option is PO_PAID there; reversed before the sync, GPD never hears of it; once
told, the reversal is refused; pagoPA unreachable delays the telling without losing it."""

from datetime import date

import requests
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger import offline_payments
from portal.ledger import services as ledger
from portal.ledger.models import Event, OfflinePayment, Position
from portal.ledger.status import PositionStatus
from tests import test_sync
from tests.conftest import CF_COMUNE
from tests.test_sync import fault

# The sandbox, the GPD client and the manual job backend of the sync tests.
sandbox_server, sandbox, gpd, jobs, new_position = (test_sync.sandbox_server, test_sync.sandbox, test_sync.gpd,
                                                    test_sync.jobs, test_sync.new_position)

TODAY = date.today()


def on_gpd(jobs, new_position, **kwargs) -> Position:
    """A position the sync job published on the sandbox."""
    position = new_position(**kwargs)
    assert jobs.run_pending() == 1
    db.session.expire_all()
    position = db.session.get(Position, position.id)
    assert (position.status, position.sync_pending) == (PositionStatus.PUBLISHED, False)
    return position


def record(client, position, option, **overrides):
    data = {"option": str(option.id), "channel": "cash", "paid_on": TODAY.isoformat(), "reference": "Quietanza 5",
            "amount": f"{option.amount_cents // 100},{option.amount_cents % 100:02d}", **overrides}
    response = client.post(f"/officer/positions/{position.id}/offline-payments/new", data=data)
    assert response.status_code == 303, response.get_data(as_text=True)
    db.session.expire_all()
    return db.session.scalars(sa.select(OfflinePayment).order_by(OfflinePayment.id.desc())).first()


def reverse(client, payment, reason="Registrato per errore"):
    return client.post(f"/officer/positions/{payment.position_id}/offline-payments/{payment.id}/reverse",
                       data={"reason": reason}, follow_redirects=True)


def test_recorded_at_the_counter_the_option_becomes_paid_on_gpd_and_can_no_longer_be_reversed(
        ctx, client, login, make_user, jobs, gpd, new_position):
    login(make_user())
    position = on_gpd(jobs, new_position, amount=0, installments=(4000, 6000))
    first = position.installments[0]
    payment = record(client, position, first, channel="bank_transfer", reference="TRN 0001")
    assert [job.task for job in jobs.pending] == ["sync_position"]
    assert jobs.run_pending() == 1

    remote = gpd.get(CF_COMUNE, position.iupd)
    assert remote.option(first.iuv).status == "PO_PAID"
    assert remote.option(position.installments[1].iuv).status == "PO_UNPAID"
    assert remote.status == "PARTIALLY_PAID"
    db.session.expire_all()
    payment = db.session.get(OfflinePayment, payment.id)
    position = db.session.get(Position, position.id)
    assert payment.pagopa_notified_at is not None
    assert (position.pagopa_paid_pending, position.sync_pending, position.sync_error) == (False, False, None)
    assert db.session.scalar(sa.select(Event.details).where(Event.kind == "pagopa_paid_marked"))[
        "offline_payment_id"] == payment.id

    refused = reverse(client, payment)
    assert "pagoPA è stato informato del pagamento il" in refused.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(OfflinePayment, payment.id).reversed_at is None
    assert db.session.get(Position, position.id).status == PositionStatus.PARTIALLY_PAID

    # The second installment too: GPD's position is then paid.
    record(client, position, db.session.get(Position, position.id).installments[1], channel="f24",
           reference="F24 prot. 9")
    jobs.run_pending()
    assert gpd.get(CF_COMUNE, position.iupd).status == "PAID"
    assert db.session.get(Position, position.id).status == PositionStatus.PAID


def test_reversed_before_the_sync_gpd_never_hears_of_it(ctx, client, login, make_user, jobs, gpd,
                                                        new_position):
    login(make_user())
    position = on_gpd(jobs, new_position, amount=5000)
    payment = record(client, position, position.single_option)
    assert "Pagamento annullato" in reverse(client, payment).get_data(as_text=True)
    jobs.run_pending()
    assert gpd.get(CF_COMUNE, position.iupd).option(position.single_option.iuv).status == "PO_UNPAID"
    db.session.expire_all()
    position = db.session.get(Position, position.id)
    assert (position.status, position.sync_pending, position.pagopa_paid_pending) == (
        PositionStatus.PUBLISHED, False, False)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event).where(
        Event.kind == "pagopa_paid_marked")) == 0


def test_a_position_not_yet_on_gpd_is_created_with_the_option_already_paid(ctx, client, login, make_user, jobs,
                                                                           gpd, new_position):
    login(make_user())
    position = new_position(amount=5000, enqueue_sync=False)
    # Published for us (e.g. a receipt said so) while the creation on GPD is still to be done.
    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test")
    db.session.commit()
    payment = record(client, position, position.single_option)
    jobs.run_pending()
    remote = gpd.get(CF_COMUNE, position.iupd)
    assert remote.option(position.single_option.iuv).status == "PO_PAID"
    db.session.expire_all()
    assert db.session.get(OfflinePayment, payment.id).pagopa_notified_at is not None
    assert db.session.get(Position, position.id).sync_pending is False


def test_pagopa_unreachable_delays_the_telling_and_the_payment_stays_reversible(
        ctx, client, login, make_user, jobs, gpd, sandbox, new_position):
    login(make_user())
    position = on_gpd(jobs, new_position, amount=5000)
    fault(sandbox, f"POST /gpd/debt-positions-service/v1/organizations/{CF_COMUNE}/paymentoptions/paids",
          status=503, count=1)
    payment = record(client, position, position.single_option)
    jobs.run_pending()
    db.session.expire_all()
    position = db.session.get(Position, position.id)
    assert position.sync_pending
    assert position.pagopa_paid_pending
    assert "503" in position.sync_error
    assert db.session.get(OfflinePayment, payment.id).pagopa_notified_at is None
    assert offline_payments.reversal_refusal(db.session.get(OfflinePayment, payment.id)) is None
    assert gpd.get(CF_COMUNE, position.iupd).option(position.single_option.iuv).status == "PO_UNPAID"
    # The next attempt (the sweep's, here at once) tells GPD.
    from portal.pagopa import sync

    assert sync.sync_position(db.session, position.id, gpd).result == "synced"
    db.session.commit()
    assert gpd.get(CF_COMUNE, position.iupd).option(position.single_option.iuv).status == "PO_PAID"
    requests.delete(f"{sandbox}/sandbox/faults", timeout=5)
