"""The pagoPA sandbox (``portal.pagopa.sandbox``): GPD rules, contract validation, Checkout, receipts, FdR, faults.

These tests need no Pay Box database: they use the sandbox's own app on a temporary SQLite file. Two tests run
it over real HTTP (a werkzeug server thread), one of them with a tiny fake SOAP station to receive paSendRTV2.
"""

from __future__ import annotations

import re
import threading
import time
from copy import deepcopy
from urllib.parse import urlsplit

import pytest
import requests
from lxml import etree
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from portal.config import ConfigError
from portal.pagopa import SPECS_DIR
from portal.pagopa.sandbox import create_app
from portal.pagopa.sandbox.problems import GPD_ERRORS

ORG = "80015010723"
IBAN = "IT60X0542811101000000123456"
V1 = f"/gpd/debt-positions-service/v1/organizations/{ORG}"
V2 = f"/gpd/debt-positions-service/v2/organizations/{ORG}"
RECEIPTS = f"/gpd/payments-receipts-service/v1/payments/{ORG}/receipts"
FDR = f"/fdr-org/service/v1/organizations/{ORG}/fdrs"
KEY = {"Ocp-Apim-Subscription-Key": "test-key"}
RETURN_URLS = {"returnOkUrl": "https://comune.example/ok", "returnCancelUrl": "https://comune.example/annullato",
               "returnErrorUrl": "https://comune.example/errore"}
PAFN = "http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"


def title(name: str) -> str:
    return GPD_ERRORS[name].title


def iuv(n: int) -> str:
    return f"01{n:015d}"


def transfer(amount: int, id_transfer: str = "1", **extra) -> dict:
    data = {"idTransfer": id_transfer, "amount": amount, "remittanceInformation": "TARI 2026 acconto",
            "category": "9/0101100IM/", "iban": IBAN, "transferMetadata": []}
    data.update(extra)
    return data


def option(n: int, amount: int = 12345, *, partial: bool = False, due: str = "2099-01-31T23:59:59Z", **extra) -> dict:
    data = {"iuv": iuv(n), "amount": amount, "description": f"TARI 2026 rata {n}", "dueDate": due,
            "isPartialPayment": partial, "paymentOptionMetadata": [], "transfer": [transfer(amount)]}
    data.update(extra)
    return data


def position(iupd: str, *options: dict, **extra) -> dict:
    data = {"iupd": iupd, "type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi",
            "companyName": "Comune di Prova", "officeName": "Settore Tributi", "switchToExpired": False,
            "email": "mario.rossi@example.it", "paymentOption": list(options) or [option(1)]}
    data.update(extra)
    return data


def nav(n: int) -> str:
    return "3" + iuv(n)


def notice(n: int, amount: int = 12345) -> dict:
    return {"noticeNumber": nav(n), "fiscalCode": ORG, "amount": amount, "companyName": "Comune di Prova",
            "description": "TARI 2026"}


def xsd() -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.parse(str(SPECS_DIR / "sanp/wsdl/xsd/paForNode.xsd"), parser))


@pytest.fixture
def sandbox_app(tmp_path):
    return create_app({"SANDBOX_DATABASE": str(tmp_path / "sandbox.db"), "SANDBOX_DELIVERY_WORKER": False,
                       "SANDBOX_VALIDATE_RESPONSES": True, "SANDBOX_PUBLIC_URL": "http://sandbox.test",
                       "TESTING": True})


@pytest.fixture
def sb(sandbox_app):
    """A test client that sends the subscription key on every request."""
    client = sandbox_app.test_client()
    client.environ_base["HTTP_OCP_APIM_SUBSCRIPTION_KEY"] = "test-key"
    return client


def create(sb, body: dict, to_publish: bool = True):
    return sb.post(f"{V1}/debtpositions?toPublish={'true' if to_publish else 'false'}", json=body)


def status_of(sb, iupd: str) -> str:
    response = sb.get(f"{V1}/debtpositions/{iupd}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["status"]


def open_cart(sb, *notices: dict, version: int = 1):
    return sb.post(f"/checkout/ec/v{version}/carts", json={"paymentNotices": list(notices), "returnUrls": RETURN_URLS,
                                                          "emailNotice": "mario.rossi@example.it"})


def refused_at_checkout(sb, *notices: dict) -> str:
    """Open a cart that cannot be paid: its page (returned) offers no *Paga* and paying ends on the error URL."""
    response = open_cart(sb, *notices)
    assert response.status_code == 302, response.get_data(as_text=True)
    page = urlsplit(response.headers["Location"]).path
    html = sb.get(page).get_data(as_text=True)
    assert 'value="pay"' not in html
    assert "Annulla" in html
    assert sb.post(page, data={"action": "pay"}).headers["Location"] == RETURN_URLS["returnErrorUrl"]
    return html


def pay_cart(sb, *notices: dict, action: str = "pay"):
    response = open_cart(sb, *notices)
    assert response.status_code == 302, response.get_data(as_text=True)
    page = urlsplit(response.headers["Location"]).path
    return sb.post(page, data={"action": action})


# --------------------------------------------------------------------------------------------- GPD

def test_create_with_to_publish_is_valid_and_payable(sb):
    response = create(sb, position("IUPD-1"))
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "VALID"
    assert body["paymentOption"][0]["nav"] == nav(1)
    detail = sb.get(f"{V1}/debtpositions/IUPD-1").get_json()
    assert detail["organizationFiscalCode"] == ORG
    assert detail["paymentOption"][0]["status"] == "PO_UNPAID"
    assert detail["paymentOption"][0]["transfer"][0]["status"] == "T_UNREPORTED"
    assert "publishDate" in detail


def test_draft_then_publish(sb):
    assert create(sb, position("IUPD-D"), to_publish=False).get_json()["status"] == "DRAFT"
    assert status_of(sb, "IUPD-D") == "DRAFT"
    response = sb.post(f"{V1}/debtpositions/IUPD-D/publish")
    assert response.status_code == 200
    assert response.get_json()["status"] == "VALID"
    again = sb.post(f"{V1}/debtpositions/IUPD-D/publish")
    assert again.status_code == 409
    assert again.get_json()["title"] == title("DEBT_POSITION_NOT_PUBLISHABLE")


def test_validity_date_in_the_future_gives_published(sb):
    body = position("IUPD-P", validityDate="2098-01-01T00:00:00Z")
    assert create(sb, body).get_json()["status"] == "PUBLISHED"


def test_duplicates_are_409(sb):
    assert create(sb, position("IUPD-1")).status_code == 201
    same_iupd = create(sb, position("IUPD-1", option(2)))
    assert same_iupd.status_code == 409
    assert same_iupd.get_json() == {"title": title("DEBT_POSITION_UNIQUE_VIOLATION"), "status": 409,
                                    "detail": same_iupd.get_json()["detail"]}
    same_iuv = create(sb, position("IUPD-2", option(1)))
    assert same_iuv.status_code == 409
    assert same_iuv.get_json()["title"] == title("DEBT_POSITION_UNIQUE_VIOLATION")
    same_nav = create(sb, position("IUPD-3", option(3, nav=nav(1))))
    assert same_nav.status_code == 409
    assert status_of(sb, "IUPD-1") == "VALID"
    assert sb.get(f"{V1}/debtpositions/IUPD-2").status_code == 404


def _missing_full_name():
    body = position("X")
    del body["fullName"]
    return body


def _sum_mismatch():
    body = position("X")
    body["paymentOption"][0]["transfer"] = [transfer(100)]
    return body


def _six_transfers():
    body = position("X", option(1, amount=600))
    body["paymentOption"][0]["transfer"] = [transfer(100, str(i)) for i in (1, 2, 3, 4, 5, 1)]
    return body


def _iban_and_stamp():
    body = position("X")
    body["paymentOption"][0]["transfer"][0]["stamp"] = {"hashDocument": "abc", "stampType": "01",
                                                         "provincialResidence": "RM"}
    return body


@pytest.mark.parametrize(("body", "expected_title", "fragment"), [
    (_missing_full_name(), "BAD REQUEST", "fullName"),
    (position("X", option(1, due="2099-01-31T23:59:59")), "BAD REQUEST", "date-time"),
    (_sum_mismatch(), title("DEBT_POSITION_REQUEST_DATA_ERROR"), "Amounts congruence error"),
    (_six_transfers(), title("DEBT_POSITION_REQUEST_DATA_ERROR"), "maximum of 5"),
    (_iban_and_stamp(), title("DEBT_POSITION_REQUEST_DATA_ERROR"), "mutually exclusive"),
    (position("X", option(1, due="2020-01-31T23:59:59Z")), title("DEBT_POSITION_REQUEST_DATA_ERROR"), "due_date"),
], ids=["missing-field", "date-without-offset", "sum-mismatch", "six-transfers", "iban-and-stamp", "due-in-past"])
def test_bad_bodies_are_400(sb, body, expected_title, fragment):
    response = create(sb, body)
    assert response.status_code == 400
    problem = response.get_json()
    assert problem["title"] == expected_title
    assert problem["status"] == 400
    assert fragment in problem["detail"]
    assert sb.get(f"{V1}/debtpositions/X").status_code == 404


def test_requests_are_checked_against_the_spec(sb):
    assert sb.get(f"{V1}/debtpositions?limit=51").status_code == 400
    assert sb.get(f"{V1}/debtpositions?status=NOPE").status_code == 400
    too_many = sb.delete(f"{V2}/debtpositions", json={"paymentPositionIUPDs": [f"I{i}" for i in range(21)]})
    assert too_many.status_code == 400
    assert sb.get(f"{V1}/nothing-here").status_code == 404


NOT_JSON = [b"\x80\xd2\x12\x03", b"{not json", b'{"paymentOption": [}']


@pytest.mark.parametrize(("method", "path"), [
    ("POST", f"{V1}/debtpositions"), ("PUT", f"{V1}/debtpositions/IUPD-1"),
    ("PATCH", f"{V1}/debtpositions/transfers?oldIban={IBAN}"), ("POST", f"{V1}/paymentoptions/paids/{'3' * 18}"),
    ("POST", f"{V2}/debtpositions"), ("PUT", f"{V2}/debtpositions"), ("DELETE", f"{V2}/debtpositions"),
])
@pytest.mark.parametrize("body", NOT_JSON, ids=["not-utf8", "not-json", "broken-json"])
def test_gpd_bodies_that_are_not_json_are_400(sb, method, path, body):
    """GPD answers an unreadable body (Spring's HttpMessageNotReadableException) 400 BAD REQUEST, never 500."""
    create(sb, position("IUPD-1"))
    response = sb.open(path, method=method, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"title": "BAD REQUEST", "status": 400, "detail": response.get_json()["detail"]}
    assert response.get_json()["detail"].startswith("JSON parse error: ")


@pytest.mark.parametrize("body", NOT_JSON + [b""], ids=["not-utf8", "not-json", "broken-json", "empty"])
def test_cart_bodies_that_are_not_json_are_400(sb, body):
    for version in (1, 2):
        response = sb.post(f"/checkout/ec/v{version}/carts", data=body, content_type="application/json")
        assert response.status_code == 400
        assert response.get_json()["status"] == 400


@pytest.mark.parametrize(("method", "action"),
                         [("GET", ""), ("DELETE", ""), ("POST", "/publish"), ("POST", "/invalidate")])
def test_an_iupd_outside_its_pattern_is_not_found(sb, method, action):
    """No position can have an IUPD outside ``[\\w*\\h-]+``; these operations document 404 but no 400."""
    response = sb.open(f"{V1}/debtpositions/@.@{action}", method=method)
    assert response.status_code == 404
    assert response.get_json()["title"] == title("DEBT_POSITION_NOT_FOUND")
    assert "@.@" in response.get_json()["detail"]


def test_subscription_key_is_required(sandbox_app, tmp_path):
    anonymous = sandbox_app.test_client()
    response = anonymous.get(f"{V1}/debtpositions")
    assert response.status_code == 401
    assert anonymous.get(f"{V1}/debtpositions", headers=KEY).status_code == 200
    # Checkout and FdR also take the key as a query parameter.
    assert anonymous.get(f"{FDR}?subscription-key=k").status_code == 200
    strict = create_app({"SANDBOX_DATABASE": str(tmp_path / "strict.db"), "SANDBOX_DELIVERY_WORKER": False,
                         "SANDBOX_API_KEY": "the-key"}).test_client()
    assert strict.get(f"{V1}/debtpositions", headers=KEY).status_code == 401
    assert strict.get(f"{V1}/debtpositions", headers={"Ocp-Apim-Subscription-Key": "the-key"}).status_code == 200


def test_update_and_invalidate_rules(sb):
    create(sb, position("IUPD-1"))
    changed = position("IUPD-1", option(1, amount=500))
    updated = sb.put(f"{V1}/debtpositions/IUPD-1?toPublish=true", json=changed)
    assert updated.status_code == 200
    assert updated.get_json()["paymentOption"][0]["amount"] == 500
    assert sb.put(f"{V1}/debtpositions/IUPD-1", json=changed).get_json()["status"] == "DRAFT"
    draft = sb.post(f"{V1}/debtpositions/IUPD-1/invalidate")
    assert draft.status_code == 409
    assert draft.get_json()["title"] == title("DEBT_POSITION_NOT_INVALIDABLE")
    sb.post(f"{V1}/debtpositions/IUPD-1/publish")
    invalidated = sb.post(f"{V1}/debtpositions/IUPD-1/invalidate")
    assert invalidated.status_code == 200
    assert invalidated.get_json()["status"] == "INVALID"
    again = sb.post(f"{V1}/debtpositions/IUPD-1/invalidate")
    assert again.status_code == 409
    assert again.get_json()["title"] == title("DEBT_POSITION_NOT_INVALIDABLE")
    not_updatable = sb.put(f"{V1}/debtpositions/IUPD-1?toPublish=true", json=changed)
    assert not_updatable.status_code == 409
    assert not_updatable.get_json()["title"] == title("DEBT_POSITION_NOT_UPDATABLE")
    assert sb.post(f"{V1}/debtpositions/NOPE/invalidate").get_json()["title"] == title("DEBT_POSITION_NOT_FOUND")


def test_delete_rules_and_payment_outside_pagopa(sb):
    create(sb, position("IUPD-D", option(1)), to_publish=False)
    draft_paid = sb.post(f"{V1}/paymentoptions/paids/{nav(1)}", json={"paymentDate": "2026-01-10T10:00:00Z"})
    assert draft_paid.status_code == 422
    assert draft_paid.get_json()["title"] == title("PAYMENT_OPTION_NOT_PAYABLE")
    assert sb.delete(f"{V1}/debtpositions/IUPD-D").status_code == 200
    assert sb.get(f"{V1}/debtpositions/IUPD-D").status_code == 404

    create(sb, position("IUPD-P", option(2)))
    paid = sb.post(f"{V1}/paymentoptions/paids/{nav(2)}", json={"paymentDate": "2026-01-10T10:00:00Z"})
    assert paid.status_code == 200
    assert paid.get_json()["status"] == "PO_PAID"
    assert status_of(sb, "IUPD-P") == "PAID"
    twice = sb.post(f"{V1}/paymentoptions/paids/{nav(2)}", json={"paymentDate": "2026-01-10T10:00:00Z"})
    assert twice.status_code == 409
    assert twice.get_json()["title"] == title("PAYMENT_OPTION_ALREADY_PAID")
    refused = sb.delete(f"{V1}/debtpositions/IUPD-P")
    assert refused.status_code == 409
    assert refused.get_json()["title"] == title("DEBT_POSITION_PAYMENT_FOUND")
    unknown = sb.post(f"{V1}/paymentoptions/paids/{nav(99)}", json={"paymentDate": "2026-01-10T10:00:00Z"})
    assert unknown.status_code == 404
    assert unknown.get_json()["title"] == title("PAYMENT_OPTION_NOT_FOUND")


def test_list_is_paged(sb):
    for n in range(1, 13):
        create(sb, position(f"IUPD-{n:02d}", option(n)))
    create(sb, position("IUPD-DRAFT", option(50)), to_publish=False)
    first = sb.get(f"{V1}/debtpositions?limit=5&page=0&orderby=IUPD&ordering=ASC").get_json()
    assert [item["iupd"] for item in first["payment_position_list"]] == [f"IUPD-{n:02d}" for n in range(1, 6)]
    assert first["page_info"] == {"page": 0, "limit": 5, "items_found": 5, "total_pages": 3}
    last = sb.get(f"{V1}/debtpositions?limit=5&page=2&orderby=IUPD&ordering=ASC").get_json()
    assert len(last["payment_position_list"]) == 3
    drafts = sb.get(f"{V1}/debtpositions?status=DRAFT").get_json()
    assert [item["iupd"] for item in drafts["payment_position_list"]] == ["IUPD-DRAFT"]


def test_bulk_v2_limit_and_all_or_nothing(sb):
    positions = [position(f"B-{n:03d}", option(n)) for n in range(1, 102)]
    too_many = sb.post(f"{V2}/debtpositions?toPublish=true", json={"paymentPositions": positions})
    assert too_many.status_code == 400
    assert too_many.get_json()["title"] == title("DEBT_POSITION_REQUEST_DATA_ERROR")

    clash = deepcopy(positions[:3])
    clash[2]["paymentOption"][0]["iuv"] = iuv(1)  # same IUV as the first one
    rolled_back = sb.post(f"{V2}/debtpositions?toPublish=true", json={"paymentPositions": clash})
    assert rolled_back.status_code == 409
    assert sb.get(f"{V1}/debtpositions/B-001").status_code == 404

    created = sb.post(f"{V2}/debtpositions?toPublish=true", json={"paymentPositions": positions[:100]})
    assert created.status_code == 201
    listing = sb.get(f"{V1}/debtpositions?limit=50").get_json()
    assert listing["page_info"]["total_pages"] == 2
    assert status_of(sb, "B-100") == "VALID"

    updated = deepcopy(positions[:2])
    updated[0]["paymentOption"][0]["description"] = "Descrizione corretta"
    assert sb.put(f"{V2}/debtpositions?toPublish=true", json={"paymentPositions": updated}).status_code == 200
    assert sb.get(f"{V1}/debtpositions/B-001").get_json()["paymentOption"][0]["description"] == "Descrizione corretta"
    deleted = sb.delete(f"{V2}/debtpositions", json={"paymentPositionIUPDs": ["B-001", "B-002"]})
    assert deleted.status_code == 200
    assert sb.get(f"{V1}/debtpositions/B-002").status_code == 404


def test_switch_to_expired(sb, sandbox_app):
    from datetime import timedelta

    from portal.pagopa.sandbox import gpd, store

    body = position("IUPD-E", option(1, due="2099-01-31T23:59:59Z"), switchToExpired=True)
    create(sb, body)
    conn = store.connect(sandbox_app.config["SANDBOX_DATABASE"])
    try:
        doc = gpd.load(conn, ORG, "IUPD-E")
        assert gpd.refresh_status(doc, store.now_utc() + timedelta(days=365 * 80)) is True
        assert doc["status"] == "EXPIRED"
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------- Checkout

def test_cart_redirects_to_the_payment_page(sb):
    create(sb, position("IUPD-1", option(1)))
    create(sb, position("IUPD-2", option(2, amount=500)))
    response = open_cart(sb, notice(1), notice(2, 500))
    assert response.status_code == 302
    location = response.headers["Location"]
    assert re.fullmatch(r"http://sandbox\.test/checkout/pay/[0-9a-f]{32}", location)
    page = sb.get(urlsplit(location).path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<html lang="it">' in html
    for text in ("Paga 128,45\u00a0€", "Annulla", "Simula errore", nav(1), nav(2)):
        assert text in html
    assert open_cart(sb, notice(1), version=2).status_code == 400  # v2 requires returnWaitingUrl


@pytest.mark.parametrize(("notices", "problem"), [
    ([notice(2)], "Avviso non pagabile"),  # DRAFT
    ([notice(1, amount=1)], "importo indicato non corrisponde"),
    ([notice(1), notice(77)], "Avviso sconosciuto"),
], ids=["draft", "wrong-amount", "unknown"])
def test_a_cart_with_a_notice_that_is_not_payable_opens_but_cannot_be_paid(sb, notices, problem):
    """Like Checkout, which documents only 302/400/500: the cart opens and its page says what cannot be paid."""
    create(sb, position("IUPD-1", option(1)))
    create(sb, position("IUPD-D", option(2)), to_publish=False)
    assert problem in refused_at_checkout(sb, *notices)
    assert status_of(sb, "IUPD-1") == "VALID"


def test_cart_refuses_carts_that_break_the_spec(sb):
    create(sb, position("IUPD-1", option(1)))
    assert open_cart(sb, *[notice(1)] * 6).status_code == 400  # the spec allows 1..5
    assert open_cart(sb, notice(1), notice(1)).status_code == 400
    assert sb.post("/checkout/ec/v1/carts", json={"paymentNotices": [notice(1)]}).status_code == 400


def test_paying_a_single_option_marks_it_paid_and_issues_the_receipt(sb):
    create(sb, position("IUPD-1", option(1)))
    response = pay_cart(sb, notice(1))
    assert response.status_code == 302
    assert response.headers["Location"] == RETURN_URLS["returnOkUrl"]
    detail = sb.get(f"{V1}/debtpositions/IUPD-1").get_json()
    assert detail["status"] == "PAID"
    paid_option = detail["paymentOption"][0]
    assert paid_option["status"] == "PO_PAID"
    assert paid_option["pspCompany"] == "PSP Sandbox S.p.A."
    assert paid_option["paymentDate"]
    assert re.fullmatch(r"[0-9a-f]{32}", paid_option["idReceipt"])

    listing = sb.get(RECEIPTS).get_json()
    assert listing["results"] == [{"organizationFiscalCode": ORG, "iuv": iuv(1), "debtor": "RSSMRA80A01H501U",
                                   "paymentDateTime": listing["results"][0]["paymentDateTime"], "status": "PAID"}]
    assert sb.get(f"{RECEIPTS}?debtor=SOMEONEELSE").status_code == 404
    xml = sb.get(f"{RECEIPTS}/{iuv(1)}")
    assert xml.status_code == 200
    assert xml.content_type.startswith("application/xml")
    root = etree.fromstring(xml.data)
    assert xsd().validate(etree.ElementTree(root)), xsd().error_log
    assert root.findtext("receipt/receiptId") == paid_option["idReceipt"]
    assert root.findtext("receipt/paymentAmount") == "123.45"
    assert root.findtext("receipt/creditorReferenceId") == iuv(1)
    assert root.findtext("receipt/debtor/uniqueIdentifier/entityUniqueIdentifierType") == "F"
    assert sb.get(f"{RECEIPTS}/{iuv(2)}").status_code == 404
    # Paying again is refused at the cart.
    assert "Avviso non pagabile" in refused_at_checkout(sb, notice(1))


def test_installments_and_single_option_are_exclusive(sb):
    plan = position("IUPD-R", option(1, 300), option(2, 100, partial=True), option(3, 200, partial=True))
    create(sb, plan)
    pay_cart(sb, notice(2, 100))
    assert status_of(sb, "IUPD-R") == "PARTIALLY_PAID"
    assert refused_at_checkout(sb, notice(1, 300))  # the single option is no longer payable
    pay_cart(sb, notice(3, 200))
    detail = sb.get(f"{V1}/debtpositions/IUPD-R").get_json()
    assert detail["status"] == "PAID"
    assert [item["status"] for item in detail["paymentOption"]] == ["PO_UNPAID", "PO_PAID", "PO_PAID"]


def test_cancel_and_simulated_error(sb):
    create(sb, position("IUPD-1", option(1)))
    cancelled = pay_cart(sb, notice(1), action="cancel")
    assert cancelled.headers["Location"] == RETURN_URLS["returnCancelUrl"]
    failed = pay_cart(sb, notice(1), action="error")
    assert failed.headers["Location"] == RETURN_URLS["returnErrorUrl"]
    assert status_of(sb, "IUPD-1") == "VALID"
    assert sb.get("/sandbox/state").get_json()["carts_by_status"] == {"cancelled": 1, "error": 1}


# --------------------------------------------------------------------------------------------- FdR

def test_fdr_lists_the_flow_after_publish(sb):
    create(sb, position("IUPD-1", option(1, 1000)))
    create(sb, position("IUPD-2", option(2, 250)))
    pay_cart(sb, notice(1, 1000), notice(2, 250))
    assert sb.get(FDR).get_json()["data"] == []
    published = sb.post("/sandbox/fdr/publish", json={})
    assert published.status_code == 201
    flows = sb.get(FDR).get_json()
    assert flows["count"] == 1
    flow = flows["data"][0]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}SANDBOXPSP01-0001", flow["fdr"])
    base = f"{FDR}/{flow['fdr']}/revisions/1/psps/{flow['pspId']}"
    detail = sb.get(base).get_json()
    assert detail["totPayments"] == 2
    assert detail["sumPayments"] == 12.5
    assert detail["receiver"]["organizationId"] == ORG
    payments = sb.get(f"{base}/payments").get_json()["data"]
    receipt_ids = {sb.get(f"{V1}/debtpositions/IUPD-{n}").get_json()["paymentOption"][0]["idReceipt"] for n in (1, 2)}
    assert {(item["iuv"], item["pay"], item["payStatus"]) for item in payments} == {
        (iuv(1), 10.0, "EXECUTED"), (iuv(2), 2.5, "EXECUTED")}
    assert {item["iur"] for item in payments} == receipt_ids
    assert [item["index"] for item in payments] == [1, 2]
    detail_1 = sb.get(f"{V1}/debtpositions/IUPD-1").get_json()
    assert detail_1["status"] == "REPORTED"
    assert detail_1["paymentOption"][0]["status"] == "PO_REPORTED"
    assert detail_1["paymentOption"][0]["idFlowReporting"] == flow["fdr"]
    assert sb.post("/sandbox/fdr/publish", json={}).get_json() == {"flows": []}
    missing = sb.get(f"{FDR}/{flow['fdr'][:-1]}9/revisions/1/psps/{flow['pspId']}")
    assert missing.status_code == 404
    assert missing.get_json()["appErrorCode"] == "FDR-3001"
    wrong_psp = sb.get(f"{FDR}/{flow['fdr']}/revisions/1/psps/OTHERPSP")
    assert wrong_psp.get_json()["appErrorCode"] == "FDR-3009"


def test_fdr_pages_beyond_int32_are_400(sb):
    """The spec takes ``page``/``size`` as int64 but echoes them in int32 ``metadata``: such a page is a 400."""
    assert sb.get(f"{FDR}?page={2**31 - 1}").status_code == 200
    response = sb.get(f"{FDR}?page={2**31}")
    assert response.status_code == 400
    assert response.get_json()["appErrorCode"] == "FDR-1001"


# --------------------------------------------------------------------------------------------- faults, admin

def test_fault_injection_returns_the_status_n_times_then_recovers(sb):
    added = sb.post("/sandbox/faults", json={"match": "POST /gpd/", "status": 503, "count": 2, "retry_after": 3})
    assert added.status_code == 201
    for _ in range(2):
        failed = create(sb, position("IUPD-F", option(1)))
        assert failed.status_code == 503
        assert failed.headers["Retry-After"] == "3"
    assert sb.get(f"{V1}/debtpositions").status_code == 200  # other methods are not affected
    assert create(sb, position("IUPD-F", option(1))).status_code == 201
    sb.post("/sandbox/faults", json={"match": "/gpd/", "status": 429, "count": 5})
    assert sb.get(f"{V1}/debtpositions").status_code == 429
    assert sb.delete("/sandbox/faults").status_code == 200
    assert sb.get(f"{V1}/debtpositions").status_code == 200


def test_state_and_reset(sb):
    create(sb, position("IUPD-1", option(1)))
    create(sb, position("IUPD-2", option(2)), to_publish=False)
    state = sb.get("/sandbox/state").get_json()
    assert state["positions"] == 2
    assert state["positions_by_status"] == {"VALID": 1, "DRAFT": 1}
    assert sb.post("/sandbox/rt/duplicate", json={"enabled": True}).get_json() == {"rt_duplicate": True}
    assert sb.post("/sandbox/reset").status_code == 200
    state = sb.get("/sandbox/state").get_json()
    assert state["positions"] == 0
    assert state["rt_duplicate"] is False


def test_refuses_production(monkeypatch, tmp_path):
    monkeypatch.setenv("PAYBOX_ENV", "production")
    with pytest.raises(ConfigError):
        create_app({"SANDBOX_DATABASE": str(tmp_path / "x.db"), "SANDBOX_DELIVERY_WORKER": False})


# --------------------------------------------------------------------------------------------- over real HTTP

class FakeStation:
    """Pay Box's paForNode endpoint, reduced to what the test needs: record, answer from a script."""

    OK = (f'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:pafn="{PAFN}">'
          "<soapenv:Body><pafn:paSendRTV2Response><outcome>OK</outcome></pafn:paSendRTV2Response>"
          "</soapenv:Body></soapenv:Envelope>")

    def __init__(self, script: list[int]):
        self.script = list(script)
        self.calls: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        request = Request(environ)
        with self.lock:
            self.calls.append({"headers": dict(request.headers), "body": request.get_data()})
            status = self.script.pop(0) if self.script else 200
        body = self.OK if status == 200 else "<html>boom</html>"
        return Response(body, status=status, content_type="text/xml; charset=utf-8")(environ, start_response)


def _serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def live(tmp_path):
    station = FakeStation([500])
    station_server, station_url = _serve(station)
    app = create_app({"SANDBOX_DATABASE": str(tmp_path / "live.db"), "SANDBOX_RETRY_SECONDS": 0.2,
                      "SANDBOX_SOAP_TIMEOUT": 3, "SANDBOX_PAYBOX_SOAP_URL": station_url + "/pagopa/paForNode",
                      "SANDBOX_BROKER_ID": "15376371009", "SANDBOX_STATION_ID": "15376371009_01"})
    server, base = _serve(app)
    app.config["SANDBOX_PUBLIC_URL"] = base
    yield base, station
    server.shutdown()
    server.server_close()
    app.extensions["sandbox_worker"].stop()
    station_server.shutdown()
    station_server.server_close()


def _wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_receipt_is_delivered_over_http_and_retried_after_a_500(live):
    base, station = live
    http = requests.Session()
    http.headers.update(KEY)
    with http:
        assert http.post(f"{base}{V1}/debtpositions?toPublish=true", json=position("IUPD-H", option(1)),
                         timeout=5).status_code == 201
        cart = http.post(f"{base}/checkout/ec/v1/carts", json={"paymentNotices": [notice(1)],
                                                               "returnUrls": RETURN_URLS},
                         allow_redirects=False, timeout=5)
        assert cart.status_code == 302
        assert cart.headers["Location"].startswith(base + "/checkout/pay/")
        paid = http.post(cart.headers["Location"], data={"action": "pay"}, allow_redirects=False, timeout=5)
        assert paid.headers["Location"] == RETURN_URLS["returnOkUrl"]

        assert _wait_for(lambda: len(station.calls) >= 2), station.calls
        first, second = station.calls[:2]
        assert first["body"] == second["body"]  # the same RT, re-sent after the 500
        assert first["headers"]["Soapaction"] == "paSendRTV2"
        assert first["headers"]["Content-Type"].startswith("text/xml")
        envelope = etree.fromstring(first["body"])
        body = envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0]
        assert body.tag == f"{{{PAFN}}}paSendRTV2Request"
        assert xsd().validate(etree.ElementTree(deepcopy(body))), xsd().error_log
        assert body.findtext("idPA") == ORG
        assert body.findtext("idBrokerPA") == "15376371009"
        assert body.findtext("idStation") == "15376371009_01"
        assert body.findtext("receipt/noticeNumber") == nav(1)
        assert body.findtext("receipt/transferList/transfer/IBAN") == IBAN

        def delivered():
            state = http.get(f"{base}/sandbox/state", timeout=5).json()
            return state["deliveries_by_status"] == {"delivered": 1}

        assert _wait_for(delivered)
        state = http.get(f"{base}/sandbox/state", timeout=5).json()
        assert state["deliveries"][0]["attempts"] == 2

        # Duplicate mode: the next receipt reaches the station twice.
        http.post(f"{base}/sandbox/rt/duplicate", json={"enabled": True}, timeout=5)
        http.post(f"{base}{V1}/debtpositions?toPublish=true", json=position("IUPD-H2", option(2)), timeout=5)
        cart = http.post(f"{base}/checkout/ec/v1/carts", json={"paymentNotices": [notice(2)],
                                                               "returnUrls": RETURN_URLS},
                         allow_redirects=False, timeout=5)
        http.post(cart.headers["Location"], data={"action": "pay"}, allow_redirects=False, timeout=5)
        assert _wait_for(lambda: len(station.calls) >= 4)
        assert station.calls[2]["body"] == station.calls[3]["body"]


def test_delay_makes_the_client_time_out(live):
    base, _ = live
    requests.post(f"{base}/sandbox/faults", json={"match": "GET /gpd/", "delay_seconds": 1.0, "status": 503,
                                                   "count": 1}, timeout=5)
    with pytest.raises(requests.Timeout):
        requests.get(f"{base}{V1}/debtpositions", headers=KEY, timeout=0.3)
    assert requests.get(f"{base}{V1}/debtpositions", headers=KEY, timeout=5).status_code == 200
