"""The REST API for the Comune's accounting: payments outside pagoPA (record, list, reverse, with Idempotency-Key),
the webhook delivery log (pages, filters, send again) and the accounting export (CSV or XLSX), on PostgreSQL."""

import csv
import io
from datetime import date

import pytest
import sqlalchemy as sa

from portal.accounts import api_tokens
from portal.extensions import db
from portal.ledger import offline_payments as offline
from portal.ledger import services as ledger
from portal.ledger.models import OfflinePayment, Position
from portal.ledger.payments import CreditorRef, record_receipt
from portal.ledger.status import PositionStatus
from portal.webhooks import services as webhooks
from portal.webhooks.models import FAILED, PENDING, WebhookDelivery
from tests.test_ledger_payments import receipt_for

TODAY = date.today()


@pytest.fixture
def issue(creditor):
    def make(name="ragioneria", scope="write", services=()):
        issued = api_tokens.create_token(db.session, creditor, name=name, scope=scope, services=list(services))
        db.session.commit()
        return {"Authorization": f"Bearer {issued.secret}"}

    return make


def body(option, **overrides):
    data = {"notice_number": option.notice_number, "channel": "cash", "reference": "Quietanza 3",
            "amount_cents": option.amount_cents, "paid_on": TODAY.isoformat()}
    data.update(overrides)
    return data


def fresh(position_id):
    db.session.expire_all()
    return db.session.get(Position, position_id)


# --- Payments outside pagoPA ---------------------------------------------------------------------------------------


def test_a_system_records_a_counter_payment_once_per_idempotency_key(client, issue, published):
    writer = issue()
    position = published(amount=5000)
    url = f"/api/v1/positions/{position.id}/offline-payments"
    headers = {**writer, "Idempotency-Key": "cassa-2027-0003"}
    first = client.post(url, json=body(position.single_option, reference="Quietanza 3/2027"), headers=headers)
    assert first.status_code == 201, first.get_json()
    payment = first.get_json()
    assert (payment["channel"], payment["reference"], payment["amount_cents"]) == ("cash", "Quietanza 3/2027", 5000)
    assert (payment["reversible"], payment["pagopa_notified_at"], payment["position_status"]) == (True, None, "paid")
    assert payment["recorded_by"] == "api:ragioneria"
    again = client.post(url, json=body(position.single_option, reference="Quietanza 3/2027"), headers=headers)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == payment["id"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OfflinePayment)) == 1
    listed = client.get(url, headers=issue(name="lettore", scope="read")).get_json()["items"]
    assert [p["id"] for p in listed] == [payment["id"]]
    assert client.get(f"/api/v1/positions/{position.id}", headers=writer).get_json()["pagopa"]["pending"] is True


def test_errors_name_the_fields_of_the_body(client, issue, published):
    writer = issue()
    position = published(amount=5000)
    url = f"/api/v1/positions/{position.id}/offline-payments"
    unknown = client.post(url, json=body(position.single_option, notice_number="301000000000009999"), headers=writer)
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.get_json()["errors"]] == ["notice_number"]
    different = client.post(url, json=body(position.single_option, amount_cents=4000), headers=writer)
    assert different.status_code == 422
    assert different.get_json()["errors"][0]["field"] == "amount_cents"
    assert "diverso dal dovuto" in different.get_json()["errors"][0]["message"]
    schema = client.post(url, json=body(position.single_option, channel="bitcoin", paid_on="ieri"), headers=writer)
    assert schema.status_code == 422
    assert {e["field"] for e in schema.get_json()["errors"]} == {"channel", "paid_on"}
    future = client.post(url, json=body(position.single_option, paid_on="2999-01-01"), headers=writer)
    assert future.get_json()["errors"] == [{"field": "paid_on", "message": "La data del pagamento non può essere "
                                                                             "futura."}]
    accepted = client.post(url, json=body(position.single_option, amount_cents=4000, accept_amount_mismatch=True),
                           headers=writer)
    assert accepted.status_code == 201
    assert accepted.get_json()["flag"] == "amount_mismatch"
    assert accepted.get_json()["position_status"] == "partially_paid"
    paid_twice = client.post(url, json=body(position.single_option), headers=writer)
    assert paid_twice.status_code == 409
    assert paid_twice.mimetype == "application/problem+json"


def test_a_read_token_or_another_service_cannot_record(client, issue, published, make_service):
    position = published(amount=5000)
    url = f"/api/v1/positions/{position.id}/offline-payments"
    assert client.post(url, json=body(position.single_option), headers=issue(scope="read")).status_code == 403
    mensa = make_service(code="MENSA", name="Mensa", taxonomy_code="9/0201102IM/")
    canteen = issue(name="mensa", services=[mensa])
    assert client.post(url, json=body(position.single_option), headers=canteen).status_code == 404
    assert client.get(url, headers=canteen).status_code == 404


def test_a_reversal_works_until_pagopa_is_told_then_is_a_conflict(client, issue, published):
    writer = issue()
    first, second = published(amount=5000), published(amount=7000, name="Anna Bianchi")
    a = client.post(f"/api/v1/positions/{first.id}/offline-payments", json=body(first.single_option),
                    headers=writer).get_json()
    b = client.post(f"/api/v1/positions/{second.id}/offline-payments", json=body(second.single_option),
                    headers=writer).get_json()
    reversed_ = client.post(f"/api/v1/positions/{first.id}/offline-payments/{a['id']}/reverse",
                            json={"reason": "Registrato sulla posizione sbagliata"},
                            headers={**writer, "Idempotency-Key": "storno-1"})
    assert reversed_.status_code == 200, reversed_.get_json()
    assert (reversed_.get_json()["reversal_reason"], reversed_.get_json()["position_status"]) == (
        "Registrato sulla posizione sbagliata", "published")
    assert fresh(first.id).status == PositionStatus.PUBLISHED
    # The payment of one position is not reversed through another.
    assert client.post(f"/api/v1/positions/{first.id}/offline-payments/{b['id']}/reverse", json={"reason": "x"},
                       headers=writer).status_code == 404
    payment = db.session.get(OfflinePayment, b["id"])
    offline.confirm_told(db.session, fresh(second.id), {payment.option_id})
    db.session.commit()
    late = client.post(f"/api/v1/positions/{second.id}/offline-payments/{b['id']}/reverse", json={"reason": "Errore"},
                       headers=writer)
    assert late.status_code == 409
    assert "pagoPA è stato informato del pagamento il" in late.get_json()["detail"]
    blank = client.post(f"/api/v1/positions/{second.id}/offline-payments/{b['id']}/reverse", json={"reason": " "},
                        headers=writer)
    assert blank.status_code == 422


# --- The webhook delivery log ----------------------------------------------------------------------------------------


def paid_by_pagopa(creditor, position):
    record_receipt(db.session, CreditorRef.of(creditor), receipt_for(position.single_option), source="paSendRTV2",
                   raw_xml="<receipt/>")
    db.session.commit()


def test_the_delivery_log_pages_filters_and_sends_again(client, issue, published, creditor, make_service):
    subscriber, _ = webhooks.add_subscriber(db.session, creditor, url="http://127.0.0.1:9/hook",
                                            secret="whsec_api_log_0000000000", allow_private=True)
    other, _ = webhooks.add_subscriber(db.session, creditor, url="http://127.0.0.1:9/other",
                                       secret="whsec_api_log_0000000001", allow_private=True)
    db.session.commit()
    positions = [published(amount=1000 + n, name=f"Debitore {n}") for n in range(3)]
    for position in positions:
        paid_by_pagopa(creditor, position)
    failed = db.session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)).first()
    failed.status, failed.last_status_code, failed.attempts = FAILED, 500, 7
    failed.response_excerpt = "Internal Server Error"
    db.session.commit()
    reader = issue(name="lettore", scope="read")

    page = client.get(f"/api/v1/webhooks/deliveries?subscriber_id={subscriber.id}&limit=2", headers=reader)
    assert page.status_code == 200
    first = page.get_json()
    assert len(first["items"]) == 2
    assert {d["subscriber_id"] for d in first["items"]} == {subscriber.id}
    rest = client.get(f"/api/v1/webhooks/deliveries?subscriber_id={subscriber.id}&limit=2"
                      f"&cursor={first['next_cursor']}", headers=reader).get_json()
    assert rest["next_cursor"] is None
    seen = [d["id"] for d in first["items"] + rest["items"]]
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == 3
    one = client.get(f"/api/v1/webhooks/deliveries?position_id={positions[0].id}", headers=reader).get_json()
    assert {d["subscriber_id"] for d in one["items"]} == {subscriber.id, other.id}
    [logged] = client.get("/api/v1/webhooks/deliveries?status=failed", headers=reader).get_json()["items"]
    assert (logged["id"], logged["event"], logged["last_status_code"], logged["attempts"], logged["response_excerpt"]) \
        == (failed.id, "position.paid", 500, 7, "Internal Server Error")

    assert client.post(f"/api/v1/webhooks/deliveries/{failed.id}/resend", headers=reader).status_code == 403
    again = client.post(f"/api/v1/webhooks/deliveries/{failed.id}/resend", headers=issue())
    assert again.status_code == 200
    assert again.get_json()["status"] == PENDING
    assert again.get_json()["next_attempt_at"] is not None
    assert client.post("/api/v1/webhooks/deliveries/999999/resend", headers=issue(name="altro")).status_code == 404
    # A token of another service sees nothing of these positions' deliveries.
    mensa = make_service(code="MENSA", name="Mensa", taxonomy_code="9/0201102IM/")
    canteen = issue(name="mensa", scope="write", services=[mensa])
    assert client.get("/api/v1/webhooks/deliveries", headers=canteen).get_json()["items"] == []
    assert client.post(f"/api/v1/webhooks/deliveries/{failed.id}/resend", headers=canteen).status_code == 404


# --- The accounting export -------------------------------------------------------------------------------------------


def test_the_export_streams_csv_with_channels_and_totals_formula_safe(client, issue, published, creditor):
    writer = issue()
    by_pagopa = published(amount=4250)
    paid_by_pagopa(creditor, by_pagopa)
    at_counter = published(amount=1000)
    client.post(f"/api/v1/positions/{at_counter.id}/offline-payments",
                json=body(at_counter.single_option, reference='=HYPERLINK("http://x")'), headers=writer)
    day = TODAY.isoformat()
    # The receipt's own payment time decides its day: ask for a period around both.
    receipt_day = receipt_for(by_pagopa.single_option).payment_at.date().isoformat()
    start, end = min(day, receipt_day), max(day, receipt_day)
    response = client.get(f"/api/v1/payments/export?from={start}&to={end}&layout=machine",
                          headers=issue(name="lettore", scope="read"))
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.is_streamed
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    payments = {r["channel"]: r for r in rows if r["row_type"] == "payment"}
    assert set(payments) == {"pagopa", "cash"}
    assert payments["cash"]["payment_reference"] == "'=HYPERLINK(\"http://x\")"  # formula-safe
    assert payments["pagopa"]["receipt_id"]
    assert {(r["channel"], r["amount_cents"]) for r in rows if r["row_type"] == "channel_total"} == {
        ("cash", "1000"), ("pagopa", "4250")}
    italian = client.get(f"/api/v1/payments/export?from={start}&to={end}", headers=writer).get_data(as_text=True)
    assert italian.startswith("\ufeffRiga;")
    assert "contanti allo sportello" in italian


def test_the_export_as_xlsx_and_its_bad_periods(client, issue, published, creditor):
    from openpyxl import load_workbook

    writer = issue()
    position = published(amount=1000)
    client.post(f"/api/v1/positions/{position.id}/offline-payments", json=body(position.single_option),
                headers=writer)
    day = TODAY.isoformat()
    response = client.get(f"/api/v1/payments/export?from={day}&to={day}&format=xlsx&layout=machine",
                          headers=writer)
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = load_workbook(io.BytesIO(response.get_data())).active
    header, first = [c.value for c in sheet[1]], [c.value for c in sheet[2]]
    assert dict(zip(header, first, strict=True))["channel"] == "cash"
    backwards = client.get(f"/api/v1/payments/export?from={day}&to=2000-01-01", headers=writer)
    assert backwards.status_code == 422
    assert backwards.get_json()["errors"][0]["field"] == "to"
    assert client.get("/api/v1/payments/export?from=oggi&to=domani", headers=writer).status_code == 422
    assert client.get(f"/api/v1/payments/export?from={day}", headers=writer).status_code == 422


def test_a_scoped_token_exports_its_services_only(client, issue, published, make_service, creditor):
    mensa = make_service(code="MENSA", name="Mensa", taxonomy_code="9/0201102IM/")
    tari = published(amount=1000)
    canteen_position = published(amount=2000, service=mensa, name="Anna Bianchi")
    writer = issue()
    for position in (tari, canteen_position):
        client.post(f"/api/v1/positions/{position.id}/offline-payments", json=body(position.single_option),
                    headers=writer)
    day = TODAY.isoformat()
    canteen = issue(name="mensa", scope="read", services=[mensa])
    rows = list(csv.DictReader(io.StringIO(client.get(
        f"/api/v1/payments/export?from={day}&to={day}&layout=machine", headers=canteen).get_data(as_text=True))))
    assert {r["service_code"] for r in rows if r["row_type"] == "payment"} == {"MENSA"}


def test_the_document_describes_the_new_calls(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    paths = doc["paths"]
    assert {"/api/v1/positions/{position_id}/offline-payments",
            "/api/v1/positions/{position_id}/offline-payments/{payment_id}/reverse",
            "/api/v1/webhooks/deliveries", "/api/v1/webhooks/deliveries/{delivery_id}/resend",
            "/api/v1/payments/export"} <= set(paths)
    record = paths["/api/v1/positions/{position_id}/offline-payments"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in record["parameters"]]
    assert "Idempotency-Key" not in [p["name"] for p in
                                     paths["/api/v1/positions/{position_id}/offline-payments"]["get"]["parameters"]]
    export = paths["/api/v1/payments/export"]["get"]
    assert set(export["responses"]["200"]["content"]) == {
        "text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
    assert {p["name"] for p in export["parameters"]} == {"from", "to", "by", "layout", "format"}


def test_cancelled_positions_take_no_payment_over_the_api(client, issue, published):
    writer = issue()
    position = published(amount=5000)
    ledger.cancel_position(db.session, position, reason="Errore", actor="test")
    db.session.commit()
    refused = client.post(f"/api/v1/positions/{position.id}/offline-payments", json=body(position.single_option),
                          headers=writer)
    assert refused.status_code == 409
    assert "annullata" in refused.get_json()["detail"]
