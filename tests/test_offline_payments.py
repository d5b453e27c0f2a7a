"""Payments outside pagoPA (cash at the counter, bank transfer, F24) in the ledger, on PostgreSQL: recording pays the
option with an event and asks for the sync; a different amount is flagged; a reversal puts everything back, only
while pagoPA has not been told (the schema holds that too); the export, the webhooks and reconciliation see them."""

import threading
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from portal import outbox
from portal.extensions import db
from portal.ledger import offline_payments as offline
from portal.ledger import reporting
from portal.ledger import services as ledger
from portal.ledger.anomalies import AnomalyError
from portal.ledger.errors import ValidationFailed
from portal.ledger.models import Event, OfflinePayment, PaymentOption, Position
from portal.ledger.payments import CreditorRef, record_receipt
from portal.ledger.status import OptionStatus, PositionStatus
from portal.ledger.sync_state import next_action
from portal.ledger.types import utcnow
from tests.test_ledger_payments import receipt_for

S = PositionStatus
TODAY = datetime.now(ZoneInfo("Europe/Rome")).date()  # the service's today (UTC lags an hour or two)


def pay(position, option=None, *, amount=None, channel="cash", reference="Quietanza 12/2027", paid_on=TODAY,
        accept=False, actor="user:1"):
    option = option or position.single_option or position.installments[0]
    data = offline.OfflinePaymentInput(option_id=option.id, paid_on=paid_on, channel=channel, reference=reference,
                                       amount_cents=option.amount_cents if amount is None else amount,
                                       accept_amount_mismatch=accept)
    payment = offline.record(db.session, position.id, data, actor=actor)
    db.session.commit()
    return payment


def fresh(position_id) -> Position:
    db.session.expire_all()
    return db.session.get(Position, position_id)


def kinds(position_id) -> list[str]:
    return list(db.session.scalars(sa.select(Event.kind).where(Event.position_id == position_id).order_by(Event.id)))


def told(payment):
    """What the sync does once GPD confirmed the option paid."""
    position = db.session.get(Position, payment.position_id)
    offline.confirm_told(db.session, position, {payment.option_id})
    db.session.commit()


def test_a_counter_payment_pays_the_option_with_an_event_and_asks_for_the_sync(ctx, published):
    position = published(amount=12000)
    payment = pay(position, reference="  Quietanza   12/2027 ")
    position = fresh(position.id)
    assert position.status == S.PAID
    assert position.paid_cents == 12000
    assert position.single_option.status == OptionStatus.PAID
    assert position.single_option.paid_at.astimezone(offline.ROME).date() == TODAY
    assert (payment.channel, payment.reference, payment.flag, payment.previous_status) == (
        "cash", "Quietanza 12/2027", None, "published")
    [event] = db.session.scalars(sa.select(Event).where(Event.position_id == position.id, Event.kind == "paid"))
    assert event.actor == "user:1"
    assert {k: event.details[k] for k in ("payment_channel", "reference", "amount_cents", "payment_date",
                                           "offline_payment_id")} == {
        "payment_channel": "cash", "reference": "Quietanza 12/2027", "amount_cents": 12000,
        "payment_date": TODAY.isoformat(), "offline_payment_id": payment.id}
    # pagoPA must hear of it: the position is pending with a "mark paid" to do, its sync job asked for.
    assert position.pagopa_paid_pending
    assert position.sync_pending
    assert next_action(position) == "create"  # never confirmed published here: the create marks it paid too
    position.pagopa_synced_target, position.pagopa_synced_version = "published", position.pagopa_version
    assert next_action(position) == "mark_paid"
    db.session.rollback()


def test_the_sync_job_is_asked_for_in_the_same_transaction(ctx, published):
    position = published(amount=5000)
    option = position.single_option
    offline.record(db.session, position.id, offline.OfflinePaymentInput(
        option_id=option.id, paid_on=TODAY, channel="f24", reference="F24 prot. 77", amount_cents=5000),
        actor="user:1")
    assert f"sync-position-{position.id}" in [p.job_id for p in outbox.pending(db.session)]
    db.session.rollback()
    assert fresh(position.id).status == S.PUBLISHED  # nothing without the commit


def test_every_field_error_is_named_at_once(ctx, published):
    position = published(amount=5000)
    data = offline.OfflinePaymentInput(option_id=10**9, paid_on=TODAY + timedelta(days=1), channel="bitcoin",
                                       reference="  ", amount_cents=0)
    with pytest.raises(ValidationFailed) as info:
        offline.record(db.session, position.id, data, actor="user:1")
    assert set(info.value.by_field()) == {"option", "channel", "reference", "paid_on", "amount"}
    assert "futura" in info.value.by_field()["paid_on"][0]
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OfflinePayment)) == 0


@pytest.mark.parametrize(("paid_on", "amount", "field"), [
    (date(1999, 12, 31), 5000, "paid_on"), (None, 5000, "paid_on"), (TODAY, None, "amount"),
    (TODAY, -1, "amount"), (TODAY, 10**12, "amount"), (TODAY, True, "amount"),
])
def test_bad_dates_and_amounts_are_refused(ctx, published, paid_on, amount, field):
    position = published(amount=5000)
    data = offline.OfflinePaymentInput(option_id=position.single_option.id, paid_on=paid_on, channel="cash",
                                       reference="Q1", amount_cents=amount)
    with pytest.raises(ValidationFailed) as info:
        offline.record(db.session, position.id, data, actor="user:1")
    assert list(info.value.by_field()) == [field]
    db.session.rollback()


def test_a_different_amount_needs_confirming_and_is_then_flagged_as_an_anomaly(ctx, published):
    position = published(amount=10000)
    with pytest.raises(ValidationFailed, match="diverso dal dovuto"):
        pay(position, amount=9000)
    db.session.rollback()
    payment = pay(fresh(position.id), amount=9000, accept=True)
    position = fresh(position.id)
    # Like a receipt of a different amount: the notice is paid, what is missing is still owed, an officer checks.
    assert position.status == S.PARTIALLY_PAID
    assert position.paid_cents == 9000
    assert payment.flag == "amount_mismatch"
    assert "offline_payment_flagged" in kinds(position.id)
    assert offline.list_flagged(db.session, position.creditor_id) == [payment]
    assert offline.count_open_flagged(db.session, position.creditor_id) == 1
    assert offline.list_flagged(db.session, position.creditor_id, scope=frozenset()) == []
    with pytest.raises(AnomalyError):
        offline.resolve(db.session, payment, note=" ", actor="user:1", actor_user_id=None)
    offline.resolve(db.session, payment, note="Differenza incassata allo sportello", actor="user:1",
                    actor_user_id=None)
    db.session.commit()
    assert offline.count_open_flagged(db.session, position.creditor_id) == 0
    assert "offline_payment_resolved" in kinds(position.id)


def test_more_than_due_pays_in_full_and_is_flagged(ctx, published):
    position = published(amount=10000)
    payment = pay(position, amount=11000, accept=True)
    assert fresh(position.id).status == S.PAID
    assert payment.flag == "amount_mismatch"


@pytest.mark.parametrize("status", [S.DRAFT, S.CANCELLED])
def test_a_draft_or_a_closed_position_takes_no_payment(ctx, make_position, published, status):
    position = make_position(amount=5000) if status == S.DRAFT else published(amount=5000)
    if status == S.CANCELLED:
        ledger.cancel_position(db.session, position, reason="Errore", actor="test")
        db.session.commit()
    with pytest.raises(offline.OfflinePaymentRefused, match="bozza" if status == S.DRAFT else "annullata"):
        pay(position)
    db.session.rollback()
    assert offline.payable_options(fresh(position.id)) == []


def test_an_option_already_paid_by_pagopa_is_refused(ctx, published, creditor):
    position = published(amount=5000)
    record_receipt(db.session, CreditorRef.of(creditor), receipt_for(position.single_option), source="paSendRTV2",
                   raw_xml="<receipt/>")
    db.session.commit()
    with pytest.raises(offline.OfflinePaymentRefused):
        pay(fresh(position.id))
    db.session.rollback()


def test_an_installment_cancels_the_single_option_and_the_reversal_brings_everything_back(ctx, published):
    position = published(amount=10000, installments=(4000, 6000))
    due_before = position.due_date
    first = position.installments[0]
    payment = pay(position, first, channel="bank_transfer", reference="TRN 0001")
    position = fresh(position.id)
    assert position.status == S.PARTIALLY_PAID
    assert position.single_option.status == OptionStatus.CANCELLED
    assert payment.cancelled_option_ids == [position.single_option.id]

    reversed_ = offline.reverse(db.session, payment.id, reason="Bonifico di un'altra posizione", actor="user:2",
                                actor_user_id=None)
    db.session.commit()
    position = fresh(position.id)
    assert position.status == S.PUBLISHED
    assert position.paid_cents == 0
    assert position.paid_at is None
    assert position.due_date == due_before
    assert [o.status for o in position.options] == [OptionStatus.UNPAID] * 3
    assert position.installments[0].paid_at is None
    assert (reversed_.reversed_by, reversed_.reversal_reason) == ("user:2", "Bonifico di un'altra posizione")
    assert position.pagopa_paid_pending is False
    [event] = db.session.scalars(sa.select(Event).where(Event.kind == "offline_payment_reversed"))
    assert (event.details["previous"], event.details["position_status"]) == ("partially_paid", "published")
    # The option can be paid again, through pagoPA or here: the reversed payment no longer holds it.
    again = pay(position, position.installments[0], reference="Quietanza 13")
    assert again.id != payment.id


def test_reversing_one_of_two_installments_leaves_the_position_partly_paid(ctx, published):
    position = published(amount=0, installments=(4000, 6000))
    first = pay(position, position.installments[0], reference="Q1")
    pay(fresh(position.id), fresh(position.id).installments[1], reference="Q2")
    assert fresh(position.id).status == S.PAID
    offline.reverse(db.session, first.id, reason="Errore", actor="user:1")
    db.session.commit()
    position = fresh(position.id)
    assert position.status == S.PARTIALLY_PAID
    assert position.paid_cents == 6000
    assert position.paid_at is None
    assert position.pagopa_paid_pending is True  # the second one still has to reach pagoPA


def test_a_reversal_needs_a_reason_and_happens_once(ctx, published):
    payment = pay(published(amount=5000))
    with pytest.raises(ValueError, match="motivo"):
        offline.reverse(db.session, payment.id, reason="  ", actor="user:1")
    offline.reverse(db.session, payment.id, reason="Doppio", actor="user:1")
    db.session.commit()
    with pytest.raises(offline.OfflinePaymentRefused, match="già stato annullato"):
        offline.reverse(db.session, payment.id, reason="Doppio", actor="user:1")
    db.session.rollback()
    with pytest.raises(LookupError):
        offline.reverse(db.session, 10**9, reason="x", actor="user:1")


def test_once_pagopa_is_told_the_reversal_is_refused_and_the_schema_agrees(ctx, published):
    payment = pay(published(amount=5000))
    told(payment)
    position = fresh(payment.position_id)
    assert position.pagopa_paid_pending is False
    assert "pagopa_paid_marked" in kinds(position.id)
    with pytest.raises(offline.OfflinePaymentRefused, match="pagoPA è stato informato del pagamento il"):
        offline.reverse(db.session, payment.id, reason="Errore", actor="user:1")
    db.session.rollback()
    assert fresh(payment.position_id).status == S.PAID
    with pytest.raises(IntegrityError):
        db.session.execute(sa.update(OfflinePayment).where(OfflinePayment.id == payment.id).values(
            reversed_at=utcnow(), reversal_reason="a mano"))
    db.session.rollback()


def test_one_active_payment_per_option_in_the_schema(ctx, published):
    payment = pay(published(amount=5000))
    copy = {c.name: getattr(payment, c.key) for c in OfflinePayment.__table__.c if c.name != "id"}
    with pytest.raises(IntegrityError):
        db.session.execute(sa.insert(OfflinePayment).values(**copy))
    db.session.rollback()


def test_a_reversal_waits_for_a_sync_holding_the_position_and_then_refuses(app, ctx, published):
    """The sync locks the position while it tells GPD: a reversal meanwhile waits, then sees pagoPA told."""
    payment = pay(published(amount=5000))
    locked, outcome = threading.Event(), {}

    def sync_in_another_transaction():
        with app.app_context():
            session = db.session
            position = session.scalar(sa.select(Position).where(Position.id == payment.position_id)
                                      .with_for_update())
            locked.set()
            time.sleep(0.5)  # the GPD call
            offline.confirm_told(session, position, {payment.option_id})
            session.commit()
            db.session.remove()

    worker = threading.Thread(target=sync_in_another_transaction)
    worker.start()
    assert locked.wait(5)
    started = time.monotonic()
    try:
        offline.reverse(db.session, payment.id, reason="Errore", actor="user:1")
    except offline.OfflinePaymentRefused as exc:
        outcome["refused"] = str(exc)
    db.session.rollback()
    worker.join(5)
    assert time.monotonic() - started >= 0.3
    assert "pagoPA è stato informato" in outcome["refused"]


def test_a_pagopa_receipt_for_the_same_notice_is_flagged_and_blocks_the_reversal(ctx, published, creditor):
    position = published(amount=5000)
    payment = pay(position)
    outcome = record_receipt(db.session, CreditorRef.of(creditor), receipt_for(fresh(position.id).single_option),
                             source="paSendRTV2", raw_xml="<receipt/>")
    db.session.commit()
    assert outcome.flag == "already_paid"  # money twice: the receipt waits for a refund
    with pytest.raises(offline.OfflinePaymentRefused, match="ricevuta pagoPA"):
        offline.reverse(db.session, payment.id, reason="Errore", actor="user:1")
    db.session.rollback()


def test_a_plan_paid_partly_through_pagopa_and_partly_at_the_counter_becomes_reported(ctx, published, creditor):
    from tests.test_reporting import header, lines_for

    position = published(amount=0, installments=(4000, 6000))
    first, second = position.installments
    receipt = record_receipt(db.session, CreditorRef.of(creditor), receipt_for(first), source="paSendRTV2",
                             raw_xml="<receipt/>").receipt
    db.session.commit()
    pay(fresh(position.id), db.session.get(PaymentOption, second.id), reference="Q7")
    assert fresh(position.id).status == S.PAID
    lines = lines_for((receipt, db.session.get(PaymentOption, first.id)))
    reporting.record_flow(db.session, creditor, header(lines), lines)
    db.session.commit()
    # The counter payment never comes back in a flow: it does not keep the position from being reported.
    assert fresh(position.id).status == S.REPORTED


def test_the_accounting_export_carries_the_channel_and_leaves_reversed_payments_out(ctx, published):
    from portal.reports import payments

    kept = pay(published(amount=4250), channel="bank_transfer", reference="TRN 42")
    dropped = pay(published(amount=1000, name="Anna Bianchi"), channel="cash", reference="Q9")
    offline.reverse(db.session, dropped.id, reason="Errore", actor="user:1")
    db.session.commit()
    rows = [dict(zip(payments.COLUMNS, row, strict=True))
            for row in payments.payment_rows(db.session, kept.creditor_id, TODAY, TODAY)]
    [payment] = [r for r in rows if r["row_type"] == "payment"]
    assert (payment["channel"], payment["payment_reference"], payment["amount_cents"]) == ("bank_transfer",
                                                                                           "TRN 42", 4250)
    assert (payment["receipt_id"], payment["flow_id"]) == ("", "")
    assert [(r["channel"], r["amount_cents"]) for r in rows if r["row_type"] == "channel_total"] == [
        ("bank_transfer", 4250)]
    # By regulation date: no flow reports money taken outside pagoPA.
    assert list(payments.payment_rows(db.session, kept.creditor_id, TODAY, TODAY, by="regulation")) == []
    italian = [payments.ITALIAN.convert(row, False) for row in
               payments.payment_rows(db.session, kept.creditor_id, TODAY, TODAY)]
    assert "bonifico bancario" in italian[0]


def test_the_webhook_of_the_payment_and_of_its_reversal_carry_the_channel(ctx, published, creditor):
    import json

    from portal.webhooks import services as webhooks
    from portal.webhooks.models import WebhookEvent

    webhooks.add_subscriber(db.session, creditor, url="http://127.0.0.1:9/hook", secret="whsec_offline_0000000000",
                            allow_private=True)
    db.session.commit()
    payment = pay(published(amount=5000), channel="f24", reference="F24 prot. 7")
    offline.reverse(db.session, payment.id, reason="Registrato due volte", actor="user:1")
    db.session.commit()
    events = {e.name: json.loads(e.body)["data"] for e in db.session.scalars(sa.select(WebhookEvent))}
    paid = events["position.paid"]
    assert paid["channel"] == "f24"
    assert paid["offline_payment"] == {"id": payment.id, "channel": "f24", "reference": "F24 prot. 7",
                                       "amount_cents": 5000, "payment_date": TODAY.isoformat(),
                                       "notice_number": payment.option.notice_number, "iuv": payment.option.iuv}
    assert "receipt" not in paid
    reversed_ = events["position.payment_reversed"]
    assert (reversed_["channel"], reversed_["reason"]) == ("f24", "Registrato due volte")
    assert reversed_["position"]["status"] == "published"


def test_a_pagopa_payment_webhook_says_pagopa(ctx, published, creditor):
    import json

    from portal.webhooks import services as webhooks
    from portal.webhooks.models import WebhookEvent

    webhooks.add_subscriber(db.session, creditor, url="http://127.0.0.1:9/hook", secret="whsec_offline_0000000000",
                            allow_private=True)
    position = published(amount=5000)
    record_receipt(db.session, CreditorRef.of(creditor), receipt_for(position.single_option), source="paSendRTV2",
                   raw_xml="<receipt/>")
    db.session.commit()
    body = json.loads(db.session.scalar(sa.select(WebhookEvent.body)))["data"]
    assert body["channel"] == "pagopa"
    assert "offline_payment" not in body
