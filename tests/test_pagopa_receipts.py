"""POST /pagopa/paForNode (paSendRT, paSendRTV2) and the receipts-API poller.

Every request is built as the node builds it and checked against ``paForNode.xsd``; every answer is checked
against the same XSD and the SOAP 1.1 envelope schema.
"""

import json
import threading
from datetime import UTC, datetime

import pytest
import requests
import sqlalchemy as sa
from lxml import etree
from requests.adapters import BaseAdapter
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.models import Creditor, Event, PaymentOption, Position, Receipt
from portal.ledger.payments import FLAG_CANCELLED_POSITION, FLAG_UNKNOWN_IUV, ReceiptData
from portal.ledger.status import OptionStatus, PositionStatus
from portal.pagopa import node, soap
from portal.pagopa.receipt_poller import poll_receipts
from portal.pagopa.receipts_api import ReceiptsClient
from tests.conftest import BROKER, CF_COMUNE, STATION
from tests.test_ledger_payments import receipt_for

URL = "/pagopa/paForNode"
S = PositionStatus


def rt_request(data: ReceiptData, *, version: int = 2, id_pa: str = CF_COMUNE, id_broker_pa: str = BROKER,
               id_station: str = STATION) -> bytes:
    """A paSendRT(V2) SOAP request as the node sends it, checked against the XSD here too."""
    payload = soap.build_send_rt_request(data, id_pa=id_pa, id_broker_pa=id_broker_pa, id_station=id_station,
                                         version=version)
    element = etree.fromstring(payload).find(f"{{{soap.SOAP_ENV_NS}}}Body")[0]
    assert soap.schema().validate(element), soap.schema().error_log
    return payload


def post(client, payload: bytes, action: str | None = '"paSendRTV2"', **kwargs):
    headers = {"Content-Type": "text/xml; charset=utf-8", **kwargs.pop("headers", {})}
    if action is not None:
        headers["SOAPAction"] = action
    # No CSRF token: the node has none.
    return client.post(URL, data=payload, headers=headers, csrf=False, **kwargs)


def answer(payload: bytes, operation: str = "paSendRTV2") -> tuple[str, str | None, etree._Element]:
    """Outcome and fault code of a SOAP answer, after validating it against the XSDs."""
    root = etree.fromstring(payload)
    assert soap.envelope_schema().validate(root), soap.envelope_schema().error_log
    body = root.find(f"{{{soap.SOAP_ENV_NS}}}Body")[0]
    if body.tag == f"{{{soap.SOAP_ENV_NS}}}Fault":
        body = body.find("detail")[0]
    assert body.tag == f"{{{soap.PAFN_NS}}}{soap.OPERATIONS[operation].response}"
    assert soap.schema().validate(body), soap.schema().error_log
    return body.findtext("outcome"), body.findtext("fault/faultCode"), body


def counts() -> dict:
    return {model.__tablename__: db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (Receipt, Event)}


# --- paSendRTV2 / paSendRT ------------------------------------------------------------------------------------------


def test_v2_receipt_pays_the_single_option(client, published):
    position = published(amount=12345, installments=(6000, 6345))
    option = position.options[0]
    data = receipt_for(option)

    response = post(client, rt_request(data))

    assert response.status_code == 200
    assert response.content_type.startswith("text/xml")
    assert answer(response.data)[:2] == ("OK", None)
    receipt = db.session.scalar(sa.select(Receipt))
    assert (receipt.receipt_id, receipt.iuv, receipt.amount_cents, receipt.source) == (
        data.receipt_id, option.iuv, 12345, "paSendRTV2")
    assert (receipt.position_id, receipt.option_id, receipt.flag) == (position.id, option.id, None)
    assert (receipt.payment_at, receipt.debtor_fiscal_code, receipt.channel_id) == (
        data.payment_at, data.debtor_fiscal_code, data.channel_id)
    # The raw XML is the request element exactly as it arrived, and it can be read again.
    assert f"<receiptId>{data.receipt_id}</receiptId>" in receipt.raw_xml
    assert soap.receipt_data(soap.parse_receipt_payload(receipt.raw_xml)) == data
    db.session.expire_all()
    assert (position.status, position.paid_cents) == (S.PAID, 12345)
    assert [o.status for o in position.options] == [OptionStatus.PAID, OptionStatus.CANCELLED,
                                                    OptionStatus.CANCELLED]
    event = position.events[-1]
    assert (event.kind, event.actor, event.details["psp_id"], event.details["receipt_id"]) == (
        "paid", "pagopa", "BCITITMM", data.receipt_id)


def test_v1_receipt_is_accepted_too(client, published):
    position = published(amount=5000)
    response = post(client, rt_request(receipt_for(position.options[0]), version=1), action="paSendRT")
    assert answer(response.data, "paSendRT")[:2] == ("OK", None)
    assert db.session.scalar(sa.select(Receipt.source)) == "paSendRT"
    db.session.expire_all()
    assert position.status == S.PAID


def test_installment_receipts_over_http(client, published):
    position = published(amount=0, installments=(4000, 6000))
    first, second = position.options
    assert answer(post(client, rt_request(receipt_for(first))).data)[0] == "OK"
    db.session.expire_all()
    assert (position.status, position.paid_cents, position.due_date) == (S.PARTIALLY_PAID, 4000, second.due_date)
    assert answer(post(client, rt_request(receipt_for(second))).data)[0] == "OK"
    db.session.expire_all()
    assert (position.status, position.paid_cents) == (S.PAID, 10000)


def test_a_repeated_receipt_is_a_duplicate_and_changes_nothing(client, published):
    position = published(amount=5000)
    payload = rt_request(receipt_for(position.options[0]))
    assert answer(post(client, payload).data)[0] == "OK"
    before = counts()

    response = post(client, payload)

    assert response.status_code == 200
    outcome, code, body = answer(response.data)
    assert (outcome, code) == ("KO", "PAA_RECEIPT_DUPLICATA")
    assert body.findtext("fault/id") == CF_COMUNE
    assert counts() == before
    db.session.expire_all()
    assert (position.status, position.paid_cents) == (S.PAID, 5000)


def test_concurrent_copies_over_real_http_pay_once(app, published):
    """The node may resend while the first call is still running: one OK, the rest duplicates, one payment."""
    position = published(amount=7000)
    payload = rt_request(receipt_for(position.options[0]))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}{URL}"
    copies = 6
    barrier = threading.Barrier(copies)
    results: list = []

    def send():
        barrier.wait()
        response = requests.post(url, data=payload, timeout=30,
                                 headers={"SOAPAction": "paSendRTV2", "Content-Type": "text/xml", "Host": "localhost"})
        results.append((response.status_code, answer(response.content)[:2]))

    try:
        senders = [threading.Thread(target=send) for _ in range(copies)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(60)
    finally:
        server.shutdown()
        thread.join(5)

    assert sorted(results) == [(200, ("KO", "PAA_RECEIPT_DUPLICATA"))] * (copies - 1) + [(200, ("OK", None))]
    db.session.expire_all()
    assert (position.status, position.paid_cents) == (S.PAID, 7000)
    assert counts()["receipts"] == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.kind == "paid")) == 1


def test_receipt_for_a_cancelled_position_is_acknowledged_and_flagged(client, published):
    position = published(amount=5000)
    ledger.transition(db.session, position, S.CANCELLED, actor="test")
    db.session.commit()
    assert answer(post(client, rt_request(receipt_for(position.options[0]))).data)[0] == "OK"
    receipt = db.session.scalar(sa.select(Receipt))
    assert (receipt.flag, receipt.position_id) == (FLAG_CANCELLED_POSITION, position.id)
    db.session.expire_all()
    assert position.status == S.CANCELLED
    assert position.events[-1].kind == "receipt_flagged"


def test_receipt_for_an_unknown_iuv_is_acknowledged_and_flagged(client, station):
    data = receipt_for(iuv="01000000000999921", amount_cents=2500)
    assert answer(post(client, rt_request(data)).data)[0] == "OK"
    receipt = db.session.scalar(sa.select(Receipt))
    assert (receipt.flag, receipt.position_id, receipt.iuv) == (FLAG_UNKNOWN_IUV, None, data.iuv)


def test_ko_receipt_is_a_semantic_error(client, published):
    position = published(amount=5000)
    response = post(client, rt_request(receipt_for(position.options[0], outcome="KO")))
    assert answer(response.data)[:2] == ("KO", "PAA_SEMANTICA")
    assert counts()["receipts"] == 0


# --- Faults: syntax, schema, caller ids -----------------------------------------------------------------------------


def _nothing_stored():
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Receipt)) == 0
    assert db.session.scalar(
        sa.select(sa.func.count()).select_from(PaymentOption).where(PaymentOption.status == OptionStatus.PAID)) == 0


def test_xsd_violation_is_paa_sintassi_xsd(client, published):
    position = published(amount=5000)
    payload = rt_request(receipt_for(position.options[0])).replace(b"<idChannel>", b"<idCanale>").replace(
        b"</idChannel>", b"</idCanale>")
    response = post(client, payload)
    assert response.status_code == 200
    outcome, code, body = answer(response.data)
    assert (outcome, code) == ("KO", "PAA_SINTASSI_XSD")
    assert "idCanale" in body.findtext("fault/description")
    _nothing_stored()


def test_amount_with_three_decimals_is_an_xsd_violation(client, published):
    position = published(amount=5000)
    payload = rt_request(receipt_for(position.options[0])).replace(
        b"<paymentAmount>50.00</paymentAmount>", b"<paymentAmount>50.001</paymentAmount>")
    assert answer(post(client, payload).data)[:2] == ("KO", "PAA_SINTASSI_XSD")
    _nothing_stored()


@pytest.mark.parametrize("payload", [
    b"<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'><soapenv:Body>",
    b"not xml at all",
    b"",
    # An entity expansion bomb, and an external entity reading a local file.
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    b"<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'><soapenv:Body>&lol2;"
    b"</soapenv:Body></soapenv:Envelope>",
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'><soapenv:Body>&xxe;"
    b"</soapenv:Body></soapenv:Envelope>",
    # Well-formed, but not what paSendRTV2 is.
    b"<a/>",
    b"<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'><soapenv:Body><x/>"
    b"</soapenv:Body></soapenv:Envelope>",
], ids=["truncated", "text", "empty", "entity bomb", "external entity", "not soap", "unknown element"])
def test_malformed_requests_are_paa_sintassi_extraxsd(client, station, payload):
    response = post(client, payload)
    assert response.status_code == 200
    outcome, code, body = answer(response.data)
    assert (outcome, code) == ("KO", "PAA_SINTASSI_EXTRAXSD")
    assert b"root:" not in response.data
    _nothing_stored()


def test_doctype_is_refused_even_when_the_body_is_valid(client, published):
    position = published(amount=5000)
    payload = rt_request(receipt_for(position.options[0])).replace(
        b"?>", b'?><!DOCTYPE soapenv:Envelope [<!ENTITY x "y">]>', 1)
    assert answer(post(client, payload).data)[:2] == ("KO", "PAA_SINTASSI_EXTRAXSD")
    _nothing_stored()


@pytest.mark.parametrize("action", ["paSendRT", None, ""], ids=["other operation", "missing", "empty"])
def test_soap_action_must_match_the_body(client, published, action):
    position = published(amount=5000)
    response = post(client, rt_request(receipt_for(position.options[0])), action=action)
    assert answer(response.data)[:2] == ("KO", "PAA_SINTASSI_EXTRAXSD")
    _nothing_stored()


def test_unknown_soap_action_and_unreadable_body_is_a_soap_fault(client, station):
    response = post(client, b"garbage", action="whatever")
    assert response.status_code == 500
    root = etree.fromstring(response.data)
    assert soap.envelope_schema().validate(root)
    fault = root.find(f"{{{soap.SOAP_ENV_NS}}}Body/{{{soap.SOAP_ENV_NS}}}Fault")
    assert fault.findtext("faultcode") == "soapenv:Client"
    assert fault.findtext("faultstring").startswith("PAA_SINTASSI_EXTRAXSD")


@pytest.mark.parametrize(("ids", "code"), [
    ({"id_pa": "00000000000"}, "PAA_ID_DOMINIO_ERRATO"),
    ({"id_broker_pa": "99999999999"}, "PAA_ID_INTERMEDIARIO_ERRATO"),
    ({"id_station": "99999999999_01"}, "PAA_STAZIONE_INT_ERRATA"),
])
def test_wrong_caller_ids_are_refused(client, published, ids, code):
    position = published(amount=5000)
    response = post(client, rt_request(receipt_for(position.options[0]), **ids))
    assert response.status_code == 200
    assert answer(response.data)[:2] == ("KO", code)
    _nothing_stored()


def test_installation_ids_apply_when_the_creditor_has_none(app, client, make_position, creditor, monkeypatch):
    monkeypatch.setitem(app.config, "PAGOPA_BROKER_ID", BROKER)
    monkeypatch.setitem(app.config, "PAGOPA_STATION_ID", STATION)
    position = make_position(amount=5000)
    ledger.transition(db.session, position, S.PUBLISHED, actor="test")
    db.session.commit()
    data = receipt_for(position.options[0])
    assert answer(post(client, rt_request(data, id_station="OTHER_01")).data)[:2] == (
        "KO", "PAA_STAZIONE_INT_ERRATA")
    assert answer(post(client, rt_request(data)).data)[:2] == ("OK", None)


def test_synchronous_primitives_are_not_implemented_yet(client, station):
    request = etree.Element(f"{{{soap.PAFN_NS}}}paVerifyPaymentNoticeReq", nsmap={"pafn": soap.PAFN_NS})
    for name, value in (("idPA", CF_COMUNE), ("idBrokerPA", BROKER), ("idStation", STATION)):
        etree.SubElement(request, name).text = value
    qr = etree.SubElement(request, "qrCode")
    etree.SubElement(qr, "fiscalCode").text = CF_COMUNE
    etree.SubElement(qr, "noticeNumber").text = "301000000000000123"
    assert soap.schema().validate(request)
    envelope = etree.Element(f"{{{soap.SOAP_ENV_NS}}}Envelope")
    etree.SubElement(envelope, f"{{{soap.SOAP_ENV_NS}}}Body").append(request)

    response = post(client, etree.tostring(envelope), action="paVerifyPaymentNotice")

    assert response.status_code == 200
    assert answer(response.data, "paVerifyPaymentNotice")[:2] == ("KO", "PAA_SYSTEM_ERROR")


# --- Who may call -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("allowed", "remote", "status"), [
    (["10.0.0.0/8"], "127.0.0.1", 403),
    (["10.0.0.0/8", "192.0.2.7"], "192.0.2.7", 200),
    (["10.0.0.0/8"], "10.20.30.40", 200),
    (["2001:db8::/32"], "2001:db8::1", 200),
    (["not-an-address"], "127.0.0.1", 403),
    ([], "203.0.113.9", 200),
])
def test_ip_allow_list(app, client, published, monkeypatch, allowed, remote, status):
    monkeypatch.setitem(app.config, "PAGOPA_SOAP_ALLOWED_IPS", allowed)
    position = published(amount=5000)
    response = post(client, rt_request(receipt_for(position.options[0])), environ_base={"REMOTE_ADDR": remote})
    assert response.status_code == status
    assert counts()["receipts"] == (1 if status == 200 else 0)


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 403),
    ({"X-PagoPA-Proxy": "wrong"}, 403),
    ({"X-PagoPA-Proxy": "s3cret-token"}, 200),
])
def test_required_header(app, client, published, monkeypatch, headers, status):
    monkeypatch.setitem(app.config, "PAGOPA_SOAP_REQUIRED_HEADER", "X-PagoPA-Proxy: s3cret-token")
    position = published(amount=5000)
    response = post(client, rt_request(receipt_for(position.options[0])), headers=headers)
    assert response.status_code == status


def test_csrf_is_enforced_elsewhere_but_not_here(client, published):
    assert client.post("/officer/login", data={"username": "x", "password": "y"}, csrf=False).status_code == 400
    position = published(amount=5000)
    assert post(client, rt_request(receipt_for(position.options[0]))).status_code == 200


# --- Our failures: the receipt is not acknowledged, the node retries ------------------------------------------------


def _operational_error(*args, **kwargs):
    raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


@pytest.mark.parametrize("broken", ["_execute_internal", "flush", "commit"])
def test_database_down_is_a_500_fault_and_nothing_is_acknowledged(client, published, monkeypatch, broken):
    position = published(amount=5000)
    payload = rt_request(receipt_for(position.options[0]))
    monkeypatch.setattr(Session, broken, _operational_error)

    response = post(client, payload)

    monkeypatch.undo()
    assert response.status_code == 500
    outcome, code, _ = answer(response.data)
    assert (outcome, code) == ("KO", "PAA_SYSTEM_ERROR")
    fault = etree.fromstring(response.data).find(f".//{{{soap.SOAP_ENV_NS}}}Fault")
    assert fault.findtext("faultcode") == "soapenv:Server"
    db.session.expire_all()
    _nothing_stored()
    assert position.status == S.PUBLISHED
    # Once the database is back, the node's retry is stored normally.
    assert answer(post(client, payload).data)[:2] == ("OK", None)


# --- The receipts-API poller ------------------------------------------------------------------------------------------

RECEIPTS_BASE = "http://gpd.test/gpd/payments-receipts-service/v1"


class GpdReceipts(BaseAdapter):
    """Plays GPD's payments-receipts service for the real :class:`ReceiptsClient`: a list and XML per IUV."""

    def __init__(self, receipts: dict[str, str], page_size: int = 2):
        super().__init__()
        self.receipts = receipts
        self.page_size = page_size
        self.fetched: list[str] = []

    def send(self, request, **kwargs):
        from urllib.parse import parse_qs, urlsplit

        url = urlsplit(request.url)
        response = requests.Response()
        response.request, response.url = request, request.url
        tail = url.path.removeprefix(f"/gpd/payments-receipts-service/v1/payments/{CF_COMUNE}/receipts")
        if tail == "":
            page = int(parse_qs(url.query).get("pageNum", ["0"])[0])
            iuvs = sorted(self.receipts)
            rows = iuvs[page * self.page_size:(page + 1) * self.page_size]
            total = -(-len(iuvs) // self.page_size)
            body = {"currentPageNumber": page, "totalPages": total, "length": len(rows),
                    "results": [{"organizationFiscalCode": CF_COMUNE, "iuv": iuv, "status": "PAID",
                                 "paymentDateTime": "2027-01-10T10:30:00"} for iuv in rows]}
            response.status_code, response._content = 200, json.dumps(body).encode()
            response.headers["Content-Type"] = "application/json"
        else:
            iuv = tail.strip("/")
            self.fetched.append(iuv)
            response.status_code, response._content = 200, self.receipts[iuv].encode()
            response.headers["Content-Type"] = "application/xml"
        return response

    def close(self):
        pass


def _client(adapter: GpdReceipts) -> ReceiptsClient:
    session = requests.Session()
    session.mount("http://", adapter)
    return ReceiptsClient(RECEIPTS_BASE, "key", session=session)


def test_poller_stores_missing_receipts_once(client, published, station):
    positions = [published(amount=1000 * n) for n in (1, 2, 3)]
    datas = [receipt_for(p.options[0]) for p in positions]
    # The first one arrived by paSendRTV2 already.
    assert answer(post(client, rt_request(datas[0])).data)[0] == "OK"

    def stored_form(data: ReceiptData, shape: str) -> str:
        element = soap.send_rt_element(data, id_pa=CF_COMUNE, id_broker_pa=BROKER, id_station=STATION)
        if shape == "receipt":
            element = element.find("receipt")
        return etree.tostring(element, encoding="unicode", xml_declaration=False)

    adapter = GpdReceipts({d.iuv: stored_form(d, shape) for d, shape in zip(datas, ("request", "request", "receipt"),
                                                                          strict=True)})
    since = datetime(2027, 1, 1, tzinfo=UTC)

    assert poll_receipts(db.session, station, _client(adapter), since=since) == 2
    assert sorted(adapter.fetched) == sorted(d.iuv for d in datas[1:])
    rows = db.session.scalars(sa.select(Receipt).order_by(Receipt.id)).all()
    assert [r.source for r in rows] == ["paSendRTV2", "receipts-api", "receipts-api"]
    assert rows[1].raw_xml == adapter.receipts[rows[1].iuv]
    db.session.expire_all()
    assert all(p.status == S.PAID for p in positions)

    # Idempotent: nothing new to fetch or store the second time.
    adapter.fetched.clear()
    assert poll_receipts(db.session, station, _client(adapter), since=since) == 0
    assert adapter.fetched == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Position).where(
        Position.status == S.PAID)) == 3


def test_poller_skips_an_unusable_receipt(published, station):
    position = published(amount=1000)
    data = receipt_for(position.options[0])
    good = etree.tostring(soap.send_rt_element(data, id_pa=CF_COMUNE, id_broker_pa=BROKER, id_station=STATION),
                          encoding="unicode")
    adapter = GpdReceipts({"01000000000000001": "<receipt><broken/></receipt>", data.iuv: good})
    assert poll_receipts(db.session, station, _client(adapter), since=datetime(2027, 1, 1, tzinfo=UTC)) == 1
    assert db.session.scalar(sa.select(Receipt.iuv)) == data.iuv


# --- The creditor cache and the per-thread schema ---------------------------------------------------------------------


def _creditor_queries(engine) -> tuple[list[str], object]:
    seen: list[str] = []

    def listener(conn, cursor, statement, *args):
        if "FROM creditors" in statement:
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", listener)
    return seen, listener


def test_the_creditor_is_looked_up_once_then_cached(client, published):
    first, second = published(amount=5000), published(amount=6000)
    seen, listener = _creditor_queries(db.engine)
    try:
        assert answer(post(client, rt_request(receipt_for(first.options[0]))).data)[:2] == ("OK", None)
        assert len(seen) == 1
        assert answer(post(client, rt_request(receipt_for(second.options[0]))).data)[:2] == ("OK", None)
        assert len(seen) == 1
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listener)


def test_a_creditor_changed_in_this_process_is_seen_at_once(client, published):
    position = published(amount=5000)
    data = receipt_for(position.options[0])
    assert answer(post(client, rt_request(receipt_for(published(amount=100).options[0]))).data)[:2] == ("OK", None)
    # The cached creditor had STATION; the officer moves it to another station (an ORM change, here).
    creditor = db.session.get(Creditor, position.creditor_id)
    creditor.station_id = "15376371009_02"
    db.session.commit()
    assert answer(post(client, rt_request(data)).data)[:2] == ("KO", "PAA_STAZIONE_INT_ERRATA")
    assert answer(post(client, rt_request(data, id_station="15376371009_02")).data)[:2] == ("OK", None)


def test_a_creditor_changed_elsewhere_is_seen_after_the_ttl(app, client, published, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(node.time, "monotonic", lambda: clock[0])
    monkeypatch.setitem(app.config, "PAGOPA_CREDITOR_CACHE_SECONDS", 60)
    position = published(amount=5000)
    data = receipt_for(position.options[0])
    assert answer(post(client, rt_request(receipt_for(published(amount=100).options[0]))).data)[:2] == ("OK", None)
    # Another process changes the station: this one does not see the flush, only the database.
    with db.engine.begin() as conn:
        conn.execute(sa.update(Creditor).values(station_id="15376371009_02"))
    try:
        clock[0] += 59
        assert answer(post(client, rt_request(data, id_station="15376371009_02")).data)[:2] == (
            "KO", "PAA_STAZIONE_INT_ERRATA")
        clock[0] += 2
        assert answer(post(client, rt_request(data, id_station="15376371009_02")).data)[:2] == ("OK", None)
    finally:
        node.clear_creditor_caches()


def test_an_unknown_idpa_is_not_cached(client, published, make_position):
    position = published(amount=5000)
    data = receipt_for(position.options[0])
    assert answer(post(client, rt_request(data, id_pa="00743110157")).data)[:2] == ("KO", "PAA_ID_DOMINIO_ERRATO")
    # The creditor appears in the database without this process flushing it (another process created it).
    with db.engine.begin() as conn:
        conn.execute(sa.update(Creditor).values(fiscal_code="00743110157"))
    try:
        assert node.creditor_ref(db.session, "00743110157").id == position.creditor_id
    finally:
        node.clear_creditor_caches()


def test_the_cache_can_be_turned_off(app, client, published, monkeypatch):
    monkeypatch.setitem(app.config, "PAGOPA_CREDITOR_CACHE_SECONDS", 0)
    position = published(amount=5000)
    seen, listener = _creditor_queries(db.engine)
    try:
        node.creditor_ref(db.session, CF_COMUNE)
        node.creditor_ref(db.session, CF_COMUNE)
        assert len(seen) == 2
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listener)
    assert node.creditor_ref(db.session, CF_COMUNE).id == position.creditor_id


def test_each_thread_validates_with_its_own_schema(published):
    position = published(amount=5000)
    good = soap.send_rt_element(receipt_for(position.options[0]), id_pa=CF_COMUNE, id_broker_pa=BROKER,
                                id_station=STATION)
    bad = etree.fromstring(etree.tostring(good).replace(b"<idChannel>", b"<idCanale>")
                           .replace(b"</idChannel>", b"</idCanale>"))
    assert soap.schema() is soap.schema()
    schemas, errors = [], []
    barrier = threading.Barrier(8)

    def validate(element, expect_ok):
        schemas.append(soap.schema())
        barrier.wait()
        for _ in range(50):
            try:
                soap.validate(element)
                errors.append(None if expect_ok else "accepted an invalid receipt")
            except soap.SoapFault as fault:
                errors.append("idCanale" not in (fault.description or "") and f"wrong error: {fault.description}"
                              if not expect_ok else f"refused a valid receipt: {fault.description}")

    threads = [threading.Thread(target=validate, args=(good, True) if n % 2 else (bad, False)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len({id(schema) for schema in schemas}) == 8
    assert [e for e in errors if e] == []
    assert len(errors) == 400
