"""Signed webhooks to a real local HTTP receiver: written with the change, signed, retried from the database,
ordered per position, never lost (not even when the worker is killed mid-burst)."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.payments import CreditorRef, record_receipt
from portal.ledger.status import PositionStatus
from portal.ledger.types import utcnow
from portal.webhooks import services
from portal.webhooks.delivery import DeliverySettings, check_url, deliver_due, sign, verify
from portal.webhooks.models import WebhookDelivery, WebhookEvent
from tests.test_ledger_payments import receipt_for
from tests.webhook_support import receiving

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_test_secret_0123456789"
FAST = DeliverySettings(timeout=1.0, allow_private=True, lease_seconds=1, base_delay=0.05, max_delay=0.2, threads=4)
#: Retries a minute later at least: a test makes them due (make_due) instead of waiting.
RETRY_LATER = DeliverySettings(timeout=5.0, allow_private=True, lease_seconds=30, base_delay=120, max_delay=600,
                               threads=4)


def subscribe(creditor, url, **kwargs):
    subscriber, secret = services.add_subscriber(db.session, creditor, url=url, secret=kwargs.pop("secret", SECRET),
                                                 allow_private=True, **kwargs)
    db.session.commit()
    return subscriber


def pay(creditor, make_position, amount=4250):
    position = make_position(amount=amount)
    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test")
    db.session.commit()
    record_receipt(db.session, CreditorRef.of(creditor), receipt_for(position.single_option), source="paSendRTV2",
                   raw_xml="<receipt/>")
    db.session.commit()
    return position


def deliveries():
    db.session.expire_all()
    return db.session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)).all()


def run(settings=FAST, **kwargs):
    counts = deliver_due(db.session, settings, max_seconds=kwargs.pop("max_seconds", 10), **kwargs)
    db.session.expire_all()
    return counts


def make_due():
    db.session.execute(sa.update(WebhookDelivery).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def test_a_payment_is_delivered_signed_with_its_ids_and_receipt(ctx, creditor, make_position):
    with receiving() as (receiver, url):
        subscribe(creditor, url + "/hook")
        position = pay(creditor, make_position)
        [delivery] = deliveries()
        assert delivery.status == "pending"
        assert run()["delivered"] == 1
        [call] = receiver.calls
    headers, body = call["headers"], call["body"]
    assert headers["Paybox-Event"] == "position.paid"
    event = db.session.scalar(sa.select(WebhookEvent))
    assert headers["Paybox-Event-Id"] == event.event_id
    assert verify(SECRET, headers["Paybox-Signature"], body)
    assert not verify("another-secret-0000", headers["Paybox-Signature"], body)
    payload = json.loads(body)
    assert payload["type"] == "position.paid"
    assert payload["data"]["position"]["iupd"] == position.iupd
    assert payload["data"]["position"]["paid_cents"] == 4250
    assert payload["data"]["receipt"]["receipt_id"]
    assert deliveries()[0].status == "delivered"
    assert deliveries()[0].last_status_code == 200


def test_the_signature_is_hmac_sha256_of_timestamp_and_body():
    header = sign("s3cret-s3cret-s3cret", 1700000000, '{"a":1}')
    assert header == ("t=1700000000,v1=" + __import__("hmac").new(
        b"s3cret-s3cret-s3cret", b'1700000000.{"a":1}', "sha256").hexdigest())
    assert not verify("s3cret-s3cret-s3cret", header, '{"a":1}', now=1700000000 + 3600)  # too old: replay


def test_nothing_is_written_when_the_change_rolls_back(ctx, creditor, make_position):
    subscribe(creditor, "http://127.0.0.1:9/hook")
    position = make_position(amount=1000)
    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test")
    db.session.commit()
    record_receipt(db.session, CreditorRef.of(creditor), receipt_for(position.single_option), source="paSendRTV2",
                   raw_xml="<receipt/>")
    db.session.flush()
    db.session.rollback()
    assert deliveries() == []


def test_a_500_is_retried_with_backoff_until_it_is_accepted(ctx, creditor, make_position):
    with receiving() as (receiver, url):
        receiver.script = [500, 500]
        subscribe(creditor, url)
        pay(creditor, make_position)
        assert run(RETRY_LATER)["pending"] == 1
        [delivery] = deliveries()
        assert (delivery.status, delivery.last_status_code, delivery.attempts) == ("pending", 500, 1)
        assert delivery.next_attempt_at > utcnow() + timedelta(seconds=RETRY_LATER.base_delay * 0.5 - 5)
        assert "500" in delivery.last_error
        assert run(RETRY_LATER)["delivered"] == 0  # not due yet: the backoff holds it
        make_due()
        run(RETRY_LATER)
        [delivery] = deliveries()
        assert (delivery.status, delivery.attempts) == ("pending", 2)
        make_due()
        run(RETRY_LATER)
        [delivery] = deliveries()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    assert [c["status"] for c in receiver.calls] == [500, 500, 200]
    assert len({c["headers"]["Paybox-Event-Id"] for c in receiver.calls}) == 1


def test_nothing_is_lost_while_the_receiver_is_down(ctx, creditor, make_position):
    with receiving() as (_, url):
        pass  # the port is free again: nobody listens there
    subscribe(creditor, url)
    for _ in range(3):
        pay(creditor, make_position, amount=1000)
    run(max_seconds=0.01)
    assert {d.status for d in deliveries()} == {"pending"}
    assert all("Connessione non riuscita" in d.last_error for d in deliveries())
    with receiving() as (receiver, url2):
        db.session.execute(sa.text("UPDATE webhook_subscribers SET url = :u"), {"u": url2})
        make_due()
        run()
    assert {d.status for d in deliveries()} == {"delivered"}
    assert len(receiver.calls) == 3


def test_a_delivery_that_keeps_failing_is_given_up_then_sent_again(ctx, creditor, make_position):
    with receiving(default=500) as (receiver, url):
        subscriber = subscribe(creditor, url)
        pay(creditor, make_position)
        db.session.execute(sa.update(WebhookDelivery).values(retry_until=utcnow()))
        db.session.commit()
        run()
        [delivery] = deliveries()
        assert delivery.status == "failed"
        receiver.default = 200
        assert services.send_failed_again(db.session, subscriber) == 1
        db.session.commit()
        run()
        assert deliveries()[0].status == "delivered"
        services.send_again(db.session, deliveries()[0])
        db.session.commit()
        run()
    assert len(receiver.ok_calls()) == 2  # sent again on request: the receiver deduplicates on the event id


def test_a_slow_receiver_times_out_and_a_redirect_is_not_followed(ctx, creditor, make_position):
    with receiving() as (receiver, url), receiving() as (elsewhere, other_url):
        receiver.script = [("sleep", 1.5), ("redirect", other_url)]
        subscribe(creditor, url)
        pay(creditor, make_position)
        run(max_seconds=0.01)
        assert "Nessuna risposta entro" in deliveries()[0].last_error
        make_due()
        run(max_seconds=0.01)
        delivery = deliveries()[0]
        assert delivery.last_status_code == 302
        assert "Reindirizzamento non seguito" in delivery.last_error
        assert elsewhere.calls == []


def test_private_and_loopback_addresses_are_refused_unless_allowed(ctx, creditor):
    for url in ("http://127.0.0.1:8080/hook", "http://10.0.0.1/hook", "http://[::1]/hook", "http://169.254.169.254/"):
        with pytest.raises(services.SubscriberError, match="non pubblico"):
            services.add_subscriber(db.session, creditor, url=url, allow_private=False)
    with pytest.raises(services.SubscriberError, match="https://"):
        services.add_subscriber(db.session, creditor, url="ftp://example.org/x", allow_private=True)
    check_url("http://127.0.0.1:8080/hook", allow_private=True)


def test_a_subscriber_on_loopback_is_refused_at_send_time_in_production(ctx, creditor, make_position):
    with receiving() as (receiver, url):
        subscribe(creditor, url)
        pay(creditor, make_position)
        run(DeliverySettings(allow_private=False, timeout=1), max_seconds=0.01)
    assert receiver.calls == []
    assert "non pubblico" in deliveries()[0].last_error


def test_a_rotated_secret_signs_the_pending_deliveries(ctx, creditor, make_position):
    with receiving() as (receiver, url):
        subscriber = subscribe(creditor, url)
        pay(creditor, make_position)
        new = services.rotate_secret(db.session, subscriber)
        db.session.commit()
        run()
    [call] = receiver.calls
    assert verify(new, call["headers"]["Paybox-Signature"], call["body"])
    assert not verify(SECRET, call["headers"]["Paybox-Signature"], call["body"])


def test_events_and_services_filter_what_a_subscriber_gets(ctx, creditor, make_position, make_service):
    other = make_service(code="MENSA", name="Mensa")
    with receiving() as (receiver, url):
        subscribe(creditor, url, events=["position.cancelled"])
        subscribe(creditor, url + "/mensa", service_codes=["MENSA"])
        position = pay(creditor, make_position)
        mensa = make_position(amount=500, service=other)
        ledger.cancel_position(db.session, mensa, reason="Errore", actor="test")
        db.session.commit()
        run()
    got = sorted((c["headers"]["Paybox-Event"], json.loads(c["body"])["data"]["position"]["id"])
                 for c in receiver.calls)
    assert got == sorted([("position.cancelled", mensa.id), ("position.cancelled", mensa.id)])
    assert position.id not in [p for _, p in got]


def test_a_positions_events_arrive_in_order(ctx, creditor, make_position):
    from portal.ledger import reporting

    with receiving() as (receiver, url):
        subscribe(creditor, url)
        position = pay(creditor, make_position)
        receipt = db.session.scalar(sa.text("SELECT receipt_id FROM receipts"))
        line = reporting.FlowLine(index=1, iuv=position.single_option.iuv, iur=receipt, id_transfer=1,
                                  amount_cents=4250)
        reporting.record_flow(db.session, creditor, reporting.FlowHeader(
            fdr="2027-01-12BCITITMM-0001", revision=1, psp_id="BCITITMM", total_payments=1, sum_cents=4250,
            regulation="SCT-1"), [line])
        db.session.commit()
        # The first delivery fails: the second must wait for it, not overtake it.
        receiver.script = [500]
        run(RETRY_LATER)
        assert [c["headers"]["Paybox-Event"] for c in receiver.calls] == ["position.paid"]
        make_due()
        run(RETRY_LATER)
    assert [c["headers"]["Paybox-Event"] for c in receiver.calls] == ["position.paid", "position.paid",
                                                                      "position.reported"]
    flow = json.loads(receiver.calls[-1]["body"])["data"]["flow"]
    assert flow["flow_id"] == "2027-01-12BCITITMM-0001"


def test_the_cli_adds_a_subscriber(app, ctx, creditor):
    result = app.test_cli_runner().invoke(args=["webhooks", "add", "http://127.0.0.1:9/h", "--secret", SECRET,
                                                "--event", "position.paid", "--event", "position.reported"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == SECRET
    [subscriber] = services.list_subscribers(db.session, creditor.id)
    assert subscriber.events == ["position.paid", "position.reported"]
    bad = app.test_cli_runner().invoke(args=["webhooks", "add", "http://127.0.0.1:9/h", "--event", "nope"])
    assert bad.exit_code != 0
    assert "Evento sconosciuto" in bad.output


def test_a_worker_killed_mid_burst_loses_nothing(app, ctx, creditor, make_position, database_url):
    burst = 40
    with receiving(delay=0.05) as (receiver, url):
        subscribe(creditor, url)
        for n in range(burst):
            pay(creditor, make_position, amount=1000 + n)
        env = {**os.environ, "DATABASE_URL": database_url, "PAYBOX_ENV": "development", "WEBHOOKS_LEASE_SECONDS": "1",
               "WEBHOOKS_THREADS": "2", "WEBHOOKS_BATCH": "10", "PAYBOX_JOBS_MODE": "manual"}
        worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "webhooks", "deliver"], cwd=ROOT,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 30
        while len(receiver.calls) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(worker.pid, signal.SIGKILL)  # mid-burst, with calls in flight
        worker.communicate(timeout=10)
        received_before = len(receiver.calls)
        assert 0 < received_before < burst
        make_due()  # the killed worker's lease ends (without waiting for it)
        run(DeliverySettings(allow_private=True, lease_seconds=1, timeout=2), max_seconds=30)
    event_ids = set(db.session.scalars(sa.select(WebhookEvent.event_id)))
    received = {c["headers"]["Paybox-Event-Id"] for c in receiver.calls}
    assert len(event_ids) == burst
    assert received == event_ids  # every event at least once
    assert {d.status for d in deliveries()} == {"delivered"}


def test_an_admin_adds_a_subscriber_sees_the_secret_once_and_sends_a_failed_delivery_again(
        ctx, client, login, make_user, creditor, make_position):
    login(make_user("admin", role="admin"))
    with receiving(default=500) as (receiver, url):
        page = client.post("/officer/settings/webhooks", data={"url": url + "/hook", "events": ["position.paid"]})
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert 'data-testid="webhook-secret"' in html
        assert page.headers["Cache-Control"] == "no-store"
        assert 'data-testid="webhook-secret"' not in client.get("/officer/settings/webhooks").get_data(as_text=True)
        [subscriber] = services.list_subscribers(db.session, creditor.id)
        assert subscriber.events == ["position.paid"]
        refused = client.post("/officer/settings/webhooks", data={"url": "gopher://x"})
        assert refused.status_code == 422
        pay(creditor, make_position)
        db.session.execute(sa.update(WebhookDelivery).values(retry_until=utcnow()))
        db.session.commit()
        run()
        log = client.get(f"/officer/settings/webhooks/deliveries?subscriber={subscriber.id}").get_data(as_text=True)
        assert 'data-status="failed"' in log
        assert "HTTP 500" in log
        receiver.default = 200
        assert client.post(f"/officer/settings/webhooks/{subscriber.id}/resend-failed").status_code == 303
        run()
    assert deliveries()[0].status == "delivered"
    viewer = make_user("consulta", role="viewer")
    client.post("/officer/logout")
    login(viewer)
    assert client.get("/officer/settings/webhooks").status_code == 403
