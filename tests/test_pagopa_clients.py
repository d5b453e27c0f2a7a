"""The pagoPA REST clients: every request they send is checked against the official OpenAPI files, and every
failure lands in the right exception.

No network and no database: a ``requests`` transport adapter records each prepared request and answers with
a canned response. The recorded request is then re-addressed to the spec's own server URL (our base URLs
differ) and validated with openapi-core, so what is checked is exactly what would go on the wire.

The sandbox tests at the end drive the same clients over real HTTP against ``portal.pagopa.sandbox``.
"""

import json
import logging
import re
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from portal.ledger import notice_numbers
from portal.ledger.models import Creditor, Debtor, PaymentOption, Position, Service, Transfer
from portal.pagopa import SPECS_DIR
from portal.pagopa.checkout import CartNotice, CheckoutClient, ReturnUrls
from portal.pagopa.errors import (
    DebtPositionConflict,
    DebtPositionNotFound,
    PagoPAError,
    PagoPANotFound,
    PagoPARateLimited,
    PagoPARejected,
    PagoPAUnavailable,
)
from portal.pagopa.fdr import FdrClient, euros_to_cents
from portal.pagopa.gpd import DebtPosition, GPDClient
from portal.pagopa.http import PagoPASession
from portal.pagopa.mapping import due_datetime, position_payload
from portal.pagopa.receipts_api import ReceiptsClient

ROME = ZoneInfo("Europe/Rome")
API_KEY = "test-subscription-key-0123456789"
CF_COMUNE = "80015010723"
CF_PROVINCIA = "80002870923"
CF_PERSON = "RSSMRA80A01H501U"
IBAN_COMUNE = "IT60X0542811101000000123456"
IBAN_PROVINCIA = "IT25O0306909606100000012345"

GPD_BASE = "http://gpd.test/gpd/debt-positions-service"
RECEIPTS_BASE = "http://gpd.test/gpd/payments-receipts-service/v1"
CHECKOUT_BASE = "http://checkout.test/checkout/ec"
FDR_BASE = "http://fdr.test/fdr-org/service/v1"

GPD_V1 = ("gpd/gpd.json", "gpd/pagopa-debt-position/openapi_external_v1.json")
GPD_V2 = ("gpd/pagopa-debt-position/openapi_external_v2.json",)
RECEIPTS = ("gpd/gpd_payments.json",)
CHECKOUT_V1 = ("checkout/checkout_v1.json",)
CHECKOUT_V2 = ("checkout/checkout_v2.json",)
FDR = ("fdr/fdr_organization.json",)


# --- a recording transport -------------------------------------------------------------------------------------

@dataclass
class Canned:
    """A response the fake transport gives back."""

    status: int = 200
    json: Any = None
    text: str | None = None
    headers: dict = field(default_factory=dict)


@dataclass
class Sent:
    """One request as it left the client, with the timeout it was sent with."""

    request: requests.PreparedRequest
    timeout: Any

    @property
    def body(self) -> Any:
        """The decoded JSON body."""
        return json.loads(self.request.body) if self.request.body else None


class RecordingAdapter(BaseAdapter):
    """Answers every request with ``respond(request)`` (a :class:`Canned`, or an exception to raise)."""

    def __init__(self, respond):
        super().__init__()
        self.respond = respond
        self.sent: list[Sent] = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.sent.append(Sent(request, timeout))
        outcome = self.respond(request) if callable(self.respond) else self.respond
        if isinstance(outcome, BaseException):
            raise outcome
        response = requests.Response()
        response.status_code = outcome.status
        response.reason = "canned"
        headers = dict(outcome.headers)
        if outcome.json is not None:
            content = json.dumps(outcome.json).encode()
            headers.setdefault("Content-Type", "application/json")
        else:
            content = (outcome.text or "").encode()
        response.headers = CaseInsensitiveDict(headers)
        response._content = content
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        return response

    def close(self):
        pass

    @property
    def last(self) -> Sent:
        """The most recent request."""
        return self.sent[-1]


def recording_session(respond=None) -> tuple[requests.Session, RecordingAdapter]:
    """A session whose every request goes to a :class:`RecordingAdapter`."""
    adapter = RecordingAdapter(respond if respond is not None else Canned())
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session, adapter


# --- contract validation against the official files -------------------------------------------------------------

def _javaless(node: Any) -> Any:
    """Java's ``\\h`` (horizontal whitespace, in GPD's ``iupd`` pattern) as Python ``re`` spells it."""
    if isinstance(node, dict):
        return {k: (v.replace("\\h", " \\t") if k == "pattern" and isinstance(v, str) else _javaless(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_javaless(v) for v in node]
    return node


@cache
def official_api(spec_file: str) -> tuple[OpenAPI, str]:
    """The spec as openapi-core sees it, and the server URL requests must be addressed to.

    Spec self-validation is off because the files carry string defaults on booleans. The server URL is the
    spec's first one, with ``${var}``/``{var}`` templates resolved to their defaults (Checkout v2 writes
    ``https://${host}``, which no validator resolves).
    """
    with open(SPECS_DIR / spec_file, encoding="utf-8") as handle:
        data = _javaless(json.load(handle))
    server = data["servers"][0]
    url = server["url"]
    for name, variable in (server.get("variables") or {}).items():
        url = url.replace("${" + name + "}", variable["default"]).replace("{" + name + "}", variable["default"])
    data["servers"] = [{"url": url}]
    return OpenAPI.from_dict(data, config=Config(spec_validator_cls=None)), url.rstrip("/")


def assert_conforms(sent: Sent, our_base: str, *spec_files: str) -> None:
    """Validate a recorded request (path, query, headers incl. the API key, body) against each spec file."""
    url = sent.request.url
    assert url.startswith(our_base), url
    for spec_file in spec_files:
        api, server_url = official_api(spec_file)
        clone = sent.request.copy()
        clone.url = server_url + url[len(our_base):]
        api.validate_request(RequestsOpenAPIRequest(clone))


# --- test data: transient ledger objects (no database needed) ---------------------------------------------------

def build_position(*, single: int | None = 10000, installments: tuple[int, ...] = (), tefa_cents: int = 0,
                   due: date = date(2027, 1, 31), office: str | None = None) -> Position:
    """An unsaved Position with its service, creditor, debtor, options and transfers, as the ledger builds it."""
    creditor = Creditor(fiscal_code=CF_COMUNE, name="Comune di Prova", department="Settore Tributi",
                        segregation_code="01")
    service = Service(creditor=creditor, code="TARI", name="TARI", taxonomy_code="9/0101101IM/", office=office)
    debtor = Debtor(kind="F", fiscal_code=CF_PERSON, name="Mario Rossi", street="Via Roma", civic_number="1",
                    postal_code="00100", city="Roma", province="RM", country="IT", email="mario@example.org")
    position = Position(service=service, debtor=debtor, iupd=f"{CF_COMUNE}-{uuid.uuid4().hex}", subject="TARI 2027",
                        amount_cents=single or sum(installments), due_date=due)
    counter = iter(range(1, 1000))

    def add(kind, number, amount, due_date):
        numbers = notice_numbers.build("01", 2_500_000_000_000 + next(counter))
        option = PaymentOption(position=position, kind=kind, installment_number=number, iuv=numbers.iuv,
                               notice_number=numbers.nav, amount_cents=amount, due_date=due_date,
                               description="TARI 2027" + (f" - rata {number}" if number else ""))
        parts = [(amount - tefa_cents, CF_COMUNE, "Comune di Prova", IBAN_COMUNE)]
        if tefa_cents:
            parts.append((tefa_cents, CF_PROVINCIA, "Provincia di Prova", IBAN_PROVINCIA))
        for index, (cents, cf, name, iban) in enumerate(parts, start=1):
            Transfer(option=option, index=index, amount_cents=cents, beneficiary_fiscal_code=cf,
                     beneficiary_name=name, iban=iban, taxonomy_code="9/0101101IM/", remittance="TARI 2027")

    if single:
        add("single", None, single, due)
    for n, amount in enumerate(installments, start=1):
        add("installment", n, amount, due + timedelta(days=30 * (n - 1)))
    return position


def gpd_answer(payload: dict, status: str = "VALID", option_status: str | None = None, **option_fields) -> dict:
    """What GPD answers for a position: the payload plus the read-only state fields."""
    answer = json.loads(json.dumps(payload))
    answer["status"] = status
    for option in answer.get("paymentOption", []):
        if option_status:
            option["status"] = option_status
        option.update(option_fields)
    return answer


def gpd_client(respond=None, **kwargs) -> tuple[GPDClient, RecordingAdapter]:
    session, adapter = recording_session(respond)
    return GPDClient(GPD_BASE, API_KEY, session=session, **kwargs), adapter


POSITIONS = {
    "single payment": {"single": 10000},
    "installment plan": {"single": None, "installments": (5000, 5000, 5000)},
    "single payment and plan": {"single": 15000, "installments": (7500, 7500)},
    "TARI with TEFA (2 transfers)": {"single": 10500, "tefa_cents": 500},
}


# --- GPD -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", POSITIONS.values(), ids=POSITIONS.keys())
def test_create_sends_a_position_payload_valid_for_both_gpd_specs(shape):
    position = build_position(**shape)
    payload = position_payload(position)
    client, adapter = gpd_client(lambda r: Canned(201, gpd_answer(payload)))

    result = client.create(CF_COMUNE, payload)

    assert_conforms(adapter.last, GPD_BASE + "/v1", *GPD_V1)
    request = adapter.last.request
    assert request.method == "POST"
    assert request.url == f"{GPD_BASE}/v1/organizations/{CF_COMUNE}/debtpositions?toPublish=true"
    assert adapter.last.body == payload
    assert result.iupd == position.iupd
    assert result.status == "VALID"
    assert [o.iuv for o in result.options] == [o["iuv"] for o in payload["paymentOption"]]
    assert all(o.status == "PO_UNPAID" for o in result.options)


def test_the_contract_check_rejects_what_gpd_would_not_accept():
    """The harness itself: a date-time without an offset, or a request without the key, fails validation."""
    from openapi_core.validation.request.exceptions import InvalidRequestBody, SecurityValidationError

    payload = position_payload(build_position())
    payload["paymentOption"][0]["dueDate"] = "2027-01-31T23:59:59"
    client, adapter = gpd_client(Canned(201, payload))
    client.create(CF_COMUNE, payload)
    with pytest.raises(InvalidRequestBody):
        assert_conforms(adapter.last, GPD_BASE + "/v1", *GPD_V1)

    del adapter.last.request.headers["Ocp-Apim-Subscription-Key"]
    with pytest.raises(SecurityValidationError):
        assert_conforms(adapter.last, GPD_BASE + "/v1", GPD_V1[0])


def test_every_request_carries_key_fresh_request_id_json_and_configured_timeout():
    payload = position_payload(build_position())
    client, adapter = gpd_client(lambda r: Canned(201, gpd_answer(payload)), timeout=4.5)

    client.create(CF_COMUNE, payload)
    client.create(CF_COMUNE, payload)

    first, second = adapter.sent
    for sent in adapter.sent:
        assert sent.request.headers["Ocp-Apim-Subscription-Key"] == API_KEY
        assert uuid.UUID(sent.request.headers["X-Request-Id"]).version == 4
        assert sent.request.headers["Content-Type"] == "application/json"
        assert sent.timeout == 4.5
    assert first.request.headers["X-Request-Id"] != second.request.headers["X-Request-Id"]


def test_get_reads_position_and_option_state():
    payload = position_payload(build_position(single=None, installments=(5000, 5000)))
    answer = gpd_answer(payload, status="PARTIALLY_PAID")
    first, second = answer["paymentOption"]
    first.update(status="PO_PAID", paymentDate="2027-01-10T09:30:00.123456789", idReceipt="rcpt-1",
                 pspCompany="Banca di Prova")
    second.update(status="PO_UNPAID")
    client, adapter = gpd_client(Canned(200, answer))

    position = client.get(CF_COMUNE, payload["iupd"])

    assert_conforms(adapter.last, GPD_BASE + "/v1", *GPD_V1)
    assert adapter.last.request.method == "GET"
    assert adapter.last.request.url == f"{GPD_BASE}/v1/organizations/{CF_COMUNE}/debtpositions/{payload['iupd']}"
    assert isinstance(position, DebtPosition)
    assert position.status == "PARTIALLY_PAID"
    paid, open_ = position.options
    assert (paid.iuv, paid.nav, paid.status, paid.amount_cents) == (first["iuv"], first["nav"], "PO_PAID", 5000)
    # GPD writes LocalDateTime in UTC without an offset.
    assert paid.payment_date == datetime(2027, 1, 10, 9, 30, 0, 123456, tzinfo=UTC)
    assert (paid.receipt_id, paid.psp_company) == ("rcpt-1", "Banca di Prova")
    assert (open_.status, open_.payment_date, open_.receipt_id) == ("PO_UNPAID", None, None)
    assert position.raw == answer
    assert position.option(first["iuv"]) == paid


def test_update_publish_invalidate_delete_and_mark_paid_requests_conform():
    payload = position_payload(build_position())
    iupd = payload["iupd"]
    client, adapter = gpd_client(lambda r: Canned(200, gpd_answer(payload, status="INVALID")))
    base = f"{GPD_BASE}/v1/organizations/{CF_COMUNE}"

    client.update(CF_COMUNE, iupd, payload, to_publish=False)
    assert adapter.last.request.method == "PUT"
    assert adapter.last.request.url == f"{base}/debtpositions/{iupd}?toPublish=false"
    assert adapter.last.body == payload
    assert_conforms(adapter.last, GPD_BASE + "/v1", *GPD_V1)

    assert client.publish(CF_COMUNE, iupd).status == "INVALID"
    assert (adapter.last.request.method, adapter.last.request.url) == ("POST", f"{base}/debtpositions/{iupd}/publish")
    assert_conforms(adapter.last, GPD_BASE + "/v1", *GPD_V1)

    client.invalidate(CF_COMUNE, iupd)
    assert adapter.last.request.url == f"{base}/debtpositions/{iupd}/invalidate"
    assert_conforms(adapter.last, GPD_BASE + "/v1", *GPD_V1)

    adapter.respond = Canned(200, text='"OK"')
    assert client.delete(CF_COMUNE, iupd) is None
    assert (adapter.last.request.method, adapter.last.request.url) == ("DELETE", f"{base}/debtpositions/{iupd}")
    assert_conforms(adapter.last, GPD_BASE + "/v1", *GPD_V1)

    nav = payload["paymentOption"][0]["nav"]
    adapter.respond = Canned(200, {"nav": nav, "status": "PO_PAID"})
    paid_at = datetime(2027, 1, 15, 10, 0, tzinfo=ROME)
    assert client.mark_paid(CF_COMUNE, nav, paid_at) is None
    assert adapter.last.request.url == f"{base}/paymentoptions/paids/{nav}"
    assert adapter.last.body == {"paymentDate": "2027-01-15T09:00:00Z"}
    assert_conforms(adapter.last, GPD_BASE + "/v1", *GPD_V1)


def test_mark_paid_refuses_a_naive_datetime():
    client, adapter = gpd_client()
    with pytest.raises(ValueError, match="timezone-aware"):
        client.mark_paid(CF_COMUNE, "301000000000000144", datetime(2027, 1, 15, 10, 0))
    assert adapter.sent == []


def test_bulk_create_and_update_send_up_to_100_positions_to_v2():
    payloads = [position_payload(build_position()) for _ in range(100)]
    client, adapter = gpd_client(Canned(201))

    assert client.bulk_create(CF_COMUNE, payloads) is None
    assert adapter.last.request.url == f"{GPD_BASE}/v2/organizations/{CF_COMUNE}/debtpositions?toPublish=true"
    assert adapter.last.body == {"paymentPositions": payloads}
    assert_conforms(adapter.last, GPD_BASE + "/v2", *GPD_V2)

    adapter.respond = Canned(200)
    client.bulk_update(CF_COMUNE, payloads[:3], to_publish=False)
    assert adapter.last.request.method == "PUT"
    assert adapter.last.request.url.endswith("/v2/organizations/80015010723/debtpositions?toPublish=false")
    assert_conforms(adapter.last, GPD_BASE + "/v2", *GPD_V2)


def test_bulk_refuses_more_than_100_and_skips_an_empty_batch():
    client, adapter = gpd_client(Canned(201))
    payload = position_payload(build_position())
    with pytest.raises(ValueError, match="at most 100"):
        client.bulk_create(CF_COMUNE, [payload] * 101)
    with pytest.raises(ValueError, match="at most 100"):
        client.bulk_update(CF_COMUNE, [payload] * 101)
    client.bulk_create(CF_COMUNE, [])
    assert adapter.sent == []


def test_from_config_reads_the_settings_and_accepts_a_versioned_base():
    config = {"PAGOPA_GPD_URL": GPD_BASE + "/v1/", "PAGOPA_API_KEY": API_KEY, "PAGOPA_TIMEOUT_SECONDS": 3.0}
    client = GPDClient.from_config(config)
    assert client.http.base_url == GPD_BASE
    assert client.http.timeout == 3.0
    with pytest.raises(ValueError, match="PAGOPA_API_KEY"):
        GPDClient.from_config({"PAGOPA_GPD_URL": GPD_BASE, "PAGOPA_API_KEY": None})


def test_due_date_in_payload_is_the_utc_end_of_the_rome_day():
    payload = position_payload(build_position(due=date(2027, 7, 31)))
    assert payload["paymentOption"][0]["dueDate"] == due_datetime(date(2027, 7, 31)) == "2027-07-31T21:59:59Z"


# --- error mapping ---------------------------------------------------------------------------------------------

def problem(status: int, title: str, detail: str = "details from pagoPA") -> Canned:
    return Canned(status, {"title": title, "status": status, "detail": detail})


# GPD's ProblemJson titles are the human titles of its AppError enum (pagopa-debt-position AppError.java).
DUPLICATE = problem(409, "The debt position violated constraints of uniqueness",
                    f"Already exists a debt position for the Organization Fiscal Code {CF_COMUNE} or one of its "
                    "payment options is not unique")


@pytest.mark.parametrize(("answer", "expected", "title"), [
    (problem(400, "Error in the debt position request data", "Amounts congruence error"), PagoPARejected,
     "DEBT_POSITION_REQUEST_DATA_ERROR"),
    (problem(400, "BAD REQUEST", "paymentOption[0].amount: must be greater than 0"), PagoPARejected,
     "BAD REQUEST"),
    (Canned(401, {"statusCode": 401, "message": "Access denied due to invalid subscription key."}),
     PagoPARejected, None),
    (problem(404, "Not found the debt position"), DebtPositionNotFound, "DEBT_POSITION_NOT_FOUND"),
    (DUPLICATE, DebtPositionConflict, "DEBT_POSITION_UNIQUE_VIOLATION"),
    (problem(409, "Existing related payment found or not in updatable state"), DebtPositionConflict,
     "DEBT_POSITION_NOT_UPDATABLE"),
    (problem(409, "Existing related payment found", "A payment transaction has already been carried out for the "
             f"Organization Fiscal Code {CF_COMUNE} and IUV 01250000001234529"), DebtPositionConflict,
     "PAYMENT_OPTION_ALREADY_PAID"),
    (problem(409, "Existing related payment found", "A payment transaction has already been carried out on the "
             f"debt position with Organization Fiscal Code {CF_COMUNE} and IUPD x"), DebtPositionConflict,
     "DEBT_POSITION_PAYMENT_FOUND"),
    (problem(409, "DEBT_POSITION_NOT_INVALIDABLE"), DebtPositionConflict, "DEBT_POSITION_NOT_INVALIDABLE"),
    (problem(422, "Not in payable state"), PagoPARejected, "PAYMENT_OPTION_NOT_PAYABLE"),
    (problem(500, "INTERNAL SERVER ERROR"), PagoPAUnavailable, "INTERNAL SERVER ERROR"),
    (Canned(503, text="<html>Service Unavailable</html>"), PagoPAUnavailable, None),
])
def test_error_answers_map_to_exceptions_keeping_title_and_detail(answer, expected, title):
    client, _ = gpd_client(answer)

    with pytest.raises(expected) as caught:
        client.get(CF_COMUNE, "IUPD-1")

    error = caught.value
    assert type(error) is expected
    assert error.status == answer.status
    assert error.title == title
    if answer.json and "title" in answer.json:
        assert error.raw_title == answer.json["title"]
    if answer.json and "detail" in answer.json:
        assert error.detail == answer.json["detail"]
    assert error.message
    assert str(error) == error.message
    assert uuid.UUID(error.request_id)
    retryable = isinstance(error, PagoPAUnavailable)
    assert retryable == (answer.status >= 500)
    assert isinstance(error, PagoPARejected) == (400 <= answer.status < 500)


def test_conflict_message_is_italian_and_title_tells_which_conflict():
    client, _ = gpd_client(DUPLICATE)
    with pytest.raises(DebtPositionConflict) as caught:
        client.create(CF_COMUNE, position_payload(build_position()))
    assert caught.value.title == "DEBT_POSITION_UNIQUE_VIOLATION"
    assert caught.value.raw_title == "The debt position violated constraints of uniqueness"
    assert "esiste già" in caught.value.message


def test_400_message_includes_gpd_validation_text():
    client, _ = gpd_client(problem(400, "Error in the debt position request data", "Dates congruence error"))
    with pytest.raises(PagoPARejected, match="Dates congruence error"):
        client.create(CF_COMUNE, position_payload(build_position()))


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("1.5", 1.5), (None, None), ("soon", None)])
def test_429_is_rate_limited_with_retry_after(header, seconds):
    client, _ = gpd_client(Canned(429, {"statusCode": 429, "message": "Rate limit is exceeded."},
                                  headers={"Retry-After": header} if header else {}))
    with pytest.raises(PagoPARateLimited) as caught:
        client.get(CF_COMUNE, "IUPD-1")
    assert isinstance(caught.value, PagoPAUnavailable)
    assert caught.value.status == 429
    assert caught.value.retry_after == seconds


def test_retry_after_as_http_date():
    when = datetime.now(UTC) + timedelta(seconds=120)
    client, _ = gpd_client(Canned(429, headers={"Retry-After": when.strftime("%a, %d %b %Y %H:%M:%S GMT")}))
    with pytest.raises(PagoPARateLimited) as caught:
        client.get(CF_COMUNE, "IUPD-1")
    assert 100 < caught.value.retry_after <= 120


@pytest.mark.parametrize("failure", [requests.ReadTimeout("read timed out"),
                                     requests.ConnectTimeout("connect timed out")])
def test_timeout_is_unavailable(failure):
    client, _ = gpd_client(lambda r: failure)
    with pytest.raises(PagoPAUnavailable) as caught:
        client.get(CF_COMUNE, "IUPD-1")
    assert caught.value.status is None
    assert caught.value.title == "TIMEOUT"
    assert not isinstance(caught.value, PagoPARateLimited)


def test_connection_refused_is_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: a real "connection refused".
    client = GPDClient(f"http://127.0.0.1:{port}/gpd/debt-positions-service", API_KEY, timeout=2)
    with pytest.raises(PagoPAUnavailable) as caught:
        client.get(CF_COMUNE, "IUPD-1")
    assert caught.value.title == "CONNECTION_ERROR"


def test_unexpected_success_status_is_an_error():
    client, _ = gpd_client(Canned(200, {"iupd": "x"}))  # create must answer 201
    with pytest.raises(PagoPAError) as caught:
        client.create(CF_COMUNE, position_payload(build_position()))
    assert not isinstance(caught.value, PagoPAUnavailable | PagoPARejected)


def test_the_api_key_never_reaches_logs_or_exceptions(caplog):
    caplog.set_level(logging.DEBUG)
    payload = position_payload(build_position())
    client, adapter = gpd_client(Canned(201, gpd_answer(payload)))
    client.create(CF_COMUNE, payload)
    adapter.respond = DUPLICATE
    with pytest.raises(DebtPositionConflict) as caught:
        client.create(CF_COMUNE, payload)
    adapter.respond = requests.ConnectionError(f"boom with headers {adapter.last.request.headers}")
    with pytest.raises(PagoPAUnavailable) as unavailable:
        client.get(CF_COMUNE, payload["iupd"])

    assert caplog.records, "calls are logged"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert API_KEY not in logged
    for error in (caught.value, unavailable.value):
        assert API_KEY not in str(error)
        assert API_KEY not in repr(error)
        assert error.__cause__ is None
    # The transport's own exception (which may quote headers) is not chained into ours.
    assert unavailable.value.__suppress_context__
    assert API_KEY not in repr(client.http)


# --- Checkout ---------------------------------------------------------------------------------------------------

def notice(n: int = 1, amount: int = 10000) -> CartNotice:
    nav = notice_numbers.build("01", 2_500_000_000_000 + n).nav
    return CartNotice(notice_number=nav, fiscal_code=CF_COMUNE, amount_cents=amount, company_name="Comune di Prova",
                      description=f"TARI 2027 - avviso {n}")


RETURN_URLS = ReturnUrls(ok_url="https://paybox.example.it/pagamento/esito/ok",
                         cancel_url="https://paybox.example.it/pagamento/esito/annullato",
                         error_url="https://paybox.example.it/pagamento/esito/errore",
                         waiting_url="https://paybox.example.it/pagamento/esito/attesa")
CHECKOUT_PAGE = "https://checkout.pagopa.it/c/abc123"


def checkout_client(respond=None) -> tuple[CheckoutClient, RecordingAdapter]:
    session, adapter = recording_session(respond if respond is not None else Canned(302, headers={
        "Location": CHECKOUT_PAGE}))
    return CheckoutClient(CHECKOUT_BASE, API_KEY, 5.0, session=session), adapter


@pytest.mark.parametrize(("version", "specs"), [(1, CHECKOUT_V1), (2, CHECKOUT_V2)])
def test_create_cart_returns_the_302_location_without_following_it(version, specs):
    client, adapter = checkout_client()

    url = client.create_cart([notice(1), notice(2, 2550)], RETURN_URLS, email="mario@example.org",
                             id_cart="cart-42", version=version)

    assert url == CHECKOUT_PAGE
    assert len(adapter.sent) == 1, "the redirect is for the browser, not followed"
    sent = adapter.last
    assert sent.request.url == f"{CHECKOUT_BASE}/v{version}/carts"
    assert sent.body["paymentNotices"][1] == {"noticeNumber": notice(2).notice_number, "fiscalCode": CF_COMUNE,
                                              "amount": 2550, "companyName": "Comune di Prova",
                                              "description": "TARI 2027 - avviso 2"}
    assert sent.body["emailNotice"] == "mario@example.org"
    assert sent.body["idCart"] == "cart-42"
    assert ("returnWaitingUrl" in sent.body["returnUrls"]) == (version == 2)
    assert sent.timeout == 5.0
    assert_conforms(sent, f"{CHECKOUT_BASE}/v{version}", *specs)


def test_create_cart_minimal_body_conforms():
    client, adapter = checkout_client()
    client.create_cart([notice()], RETURN_URLS)
    assert set(adapter.last.body) == {"paymentNotices", "returnUrls"}
    assert_conforms(adapter.last, CHECKOUT_BASE + "/v1", *CHECKOUT_V1)


def test_relative_location_is_made_absolute():
    client, _ = checkout_client(Canned(302, headers={"Location": "/c/xyz"}))
    assert client.create_cart([notice()], RETURN_URLS) == "http://checkout.test/c/xyz"


@pytest.mark.parametrize("count", [0, 6])
def test_cart_holds_one_to_five_notices(count):
    client, adapter = checkout_client()
    with pytest.raises(ValueError, match="1 to 5"):
        client.create_cart([notice(n) for n in range(1, count + 1)], RETURN_URLS)
    assert adapter.sent == []


def test_cart_v2_needs_a_waiting_url_and_notices_are_checked_locally():
    client, adapter = checkout_client()
    no_wait = ReturnUrls(RETURN_URLS.ok_url, RETURN_URLS.cancel_url, RETURN_URLS.error_url)
    with pytest.raises(ValueError, match="waiting_url"):
        client.create_cart([notice()], no_wait, version=2)
    with pytest.raises(ValueError, match="18 digits"):
        client.create_cart([CartNotice("123", CF_COMUNE, 100, "Comune", "x")], RETURN_URLS)
    with pytest.raises(ValueError, match="positive"):
        client.create_cart([notice(amount=0)], RETURN_URLS)
    assert adapter.sent == []


@pytest.mark.parametrize(("answer", "expected"), [
    (Canned(200, {"ok": True}), PagoPAError),
    (Canned(302), PagoPAError),
    (Canned(400, {"type": "about:blank", "title": "Bad Request", "status": 400, "detail": "invalid notice"}),
     PagoPARejected),
    (Canned(500, {"title": "Internal Server Error", "status": 500, "detail": "boom"}), PagoPAUnavailable),
])
def test_cart_answers_other_than_302_with_location_are_errors(answer, expected):
    client, _ = checkout_client(answer)
    with pytest.raises(expected) as caught:
        client.create_cart([notice()], RETURN_URLS)
    if answer.json and "detail" in answer.json:
        assert (caught.value.title, caught.value.detail) == (answer.json["title"], answer.json["detail"])


# --- GPD payments receipts --------------------------------------------------------------------------------------

def receipts_client(respond) -> tuple[ReceiptsClient, RecordingAdapter]:
    session, adapter = recording_session(respond)
    return ReceiptsClient(RECEIPTS_BASE, API_KEY, session=session), adapter


def test_list_receipts_request_conforms_and_rows_are_read():
    answer = {"currentPageNumber": 0, "length": 2, "totalPages": 3, "results": [
        {"organizationFiscalCode": CF_COMUNE, "iuv": "01250000001234529", "debtor": CF_PERSON,
         "paymentDateTime": "2027-01-10T10:30:00", "status": "PAID"},
        {"organizationFiscalCode": CF_COMUNE, "iuv": "01250000001234530", "debtor": CF_PERSON,
         "paymentDateTime": None},
    ]}
    client, adapter = receipts_client(Canned(200, answer))

    page = client.list_receipts(CF_COMUNE, from_date=datetime(2027, 1, 1, 10, 0, tzinfo=ROME),
                                to_date=datetime(2027, 1, 31, 22, 0, tzinfo=UTC), page=0, page_size=50)

    assert_conforms(adapter.last, RECEIPTS_BASE, *RECEIPTS)
    params = dict(re.findall(r"[?&]([^=]+)=([^&]*)", adapter.last.request.url))
    # "from" in UTC, "to" in Italian time: the widest reading of an offset-less bound either way.
    assert params == {"pageNum": "0", "pageSize": "50", "from": "2027-01-01T09%3A00%3A00",
                      "to": "2027-01-31T23%3A00%3A00"}
    assert (page.page, page.total_pages, page.has_next) == (0, 3, True)
    first, second = page.receipts
    assert first.iuv == "01250000001234529"
    assert first.debtor == CF_PERSON
    assert first.status == "PAID"
    assert first.paid_at == datetime(2027, 1, 10, 9, 30, tzinfo=UTC)
    assert second.paid_at is None


def test_list_receipts_reads_the_java_field_name_too_and_404_is_an_empty_page():
    client, _ = receipts_client(Canned(200, {"currentPageNumber": 1, "totalPages": 2, "receipts_list": [
        {"organizationFiscalCode": CF_COMUNE, "iuv": "01250000001234529"}]}))
    assert [r.iuv for r in client.list_receipts(CF_COMUNE, page=1).receipts] == ["01250000001234529"]

    client, _ = receipts_client(problem(404, "Not Found", "No receipts found"))
    page = client.list_receipts(CF_COMUNE)
    assert (page.receipts, page.has_next) == ((), False)


def test_list_receipts_takes_dates_and_checks_its_arguments():
    client, adapter = receipts_client(Canned(200, {"results": []}))
    client.list_receipts(CF_COMUNE, from_date=date(2027, 1, 1), to_date=date(2027, 1, 31))
    assert adapter.last.request.url.endswith("from=2027-01-01&to=2027-01-31")
    with pytest.raises(ValueError, match="page_size"):
        client.list_receipts(CF_COMUNE, page_size=101)
    with pytest.raises(ValueError, match="timezone-aware"):
        client.list_receipts(CF_COMUNE, from_date=datetime(2027, 1, 1))
    assert len(adapter.sent) == 1


def test_get_receipt_xml_request_conforms_and_returns_the_xml():
    xml = '<?xml version="1.0" encoding="UTF-8"?><receipt><receiptId>abc</receiptId><iuv>è</iuv></receipt>'
    client, adapter = receipts_client(Canned(200, text=xml, headers={"Content-Type": "application/xml"}))

    assert client.get_receipt_xml(CF_COMUNE, "01250000001234529") == xml
    assert adapter.last.request.url == f"{RECEIPTS_BASE}/payments/{CF_COMUNE}/receipts/01250000001234529"
    assert "application/xml" in adapter.last.request.headers["Accept"]
    assert_conforms(adapter.last, RECEIPTS_BASE, *RECEIPTS)


def test_missing_receipt_is_not_found():
    xml = "<ProblemJson><title>Not Found</title><detail>no receipt</detail></ProblemJson>"
    client, _ = receipts_client(Canned(404, text=xml, headers={"Content-Type": "application/xml"}))
    with pytest.raises(PagoPANotFound) as caught:
        client.get_receipt_xml(CF_COMUNE, "01250000001234529")
    assert not isinstance(caught.value, DebtPositionNotFound)
    assert (caught.value.title, caught.value.detail) == ("Not Found", "no receipt")


# --- FdR --------------------------------------------------------------------------------------------------------

FLOW = "2027-01-1160000000001-0001"
PSP = "60000000001"


def fdr_client(respond) -> tuple[FdrClient, RecordingAdapter]:
    session, adapter = recording_session(respond)
    return FdrClient(FDR_BASE, API_KEY, session=session), adapter


def raw_json(text: str) -> Canned:
    """A canned JSON answer given as text, so decimal literals reach the client exactly as written."""
    return Canned(200, text=text, headers={"Content-Type": "application/json"})


def test_list_flows_request_conforms_and_flows_are_read():
    client, adapter = fdr_client(Canned(200, {
        "metadata": {"pageSize": 2, "pageNumber": 1, "totPage": 1}, "count": 1,
        "data": [{"fdr": FLOW, "pspId": PSP, "revision": 2, "published": "2027-01-12T08:00:00.5Z",
                  "flowDate": "2027-01-11T23:00:00Z"}]}))

    page = client.list_flows(CF_COMUNE, psp_id=PSP, published_after=datetime(2027, 1, 1, tzinfo=UTC), size=50)

    assert_conforms(adapter.last, FDR_BASE, *FDR)
    assert adapter.last.request.url.startswith(f"{FDR_BASE}/organizations/{CF_COMUNE}/fdrs?")
    assert "publishedGt=2027-01-01T00%3A00%3A00Z" in adapter.last.request.url
    assert (page.page, page.total_pages, page.count, page.has_next) == (1, 1, 1, False)
    (flow,) = page.flows
    assert (flow.fdr, flow.psp_id, flow.revision) == (FLOW, PSP, 2)
    assert flow.published == datetime(2027, 1, 12, 8, 0, 0, 500000, tzinfo=UTC)


def test_get_flow_reads_the_header_with_exact_cents():
    client, adapter = fdr_client(raw_json(json.dumps({
        "status": "PUBLISHED", "revision": 2, "fdr": FLOW, "fdrDate": "2027-01-11T23:00:00Z",
        "regulation": "SEPA - Bonifico 123", "regulationDate": "2027-01-12", "bicCodePouringBank": "UNCRITMMXXX",
        "sender": {"type": "LEGAL_PERSON", "id": "SELBIT2B", "pspId": PSP, "pspName": "PSP di Prova",
                   "pspBrokerId": "70000000001", "channelId": "80000000001"},
        "receiver": {"id": "APPBIT2B", "organizationId": CF_COMUNE, "organizationName": "Comune di Prova"},
        "published": "2027-01-12T08:00:00Z", "computedTotPayments": 3, "totPayments": 3,
    })[:-1] + ', "sumPayments": 1234567.89, "computedSumPayments": 0.29}'))

    flow = client.get_flow(CF_COMUNE, FLOW, 2, PSP)

    assert_conforms(adapter.last, FDR_BASE, *FDR)
    assert adapter.last.request.url == f"{FDR_BASE}/organizations/{CF_COMUNE}/fdrs/{FLOW}/revisions/2/psps/{PSP}"
    assert (flow.sum_cents, flow.computed_sum_cents) == (123456789, 29)
    assert (flow.total_payments, flow.regulation_date, flow.psp_name) == (3, date(2027, 1, 12), "PSP di Prova")
    assert flow.raw["sumPayments"] == "1234567.89"


def test_flow_payments_are_paged_and_amounts_exact():
    pages = {
        "1": '{"metadata": {"pageSize": 2, "pageNumber": 1, "totPage": 2}, "count": 2, "data": ['
             '{"index": 1, "iuv": "01250000001234529", "iur": "IUR1", "idTransfer": 1, "pay": 100.1,'
             ' "payStatus": "EXECUTED", "payDate": "2027-01-10T09:30:00Z"},'
             '{"index": 2, "iuv": "01250000001234529", "iur": "IUR1", "idTransfer": 2, "pay": 0.29,'
             ' "payStatus": "STAND_IN", "payDate": "2027-01-10T09:30:00Z"}]}',
        "2": '{"metadata": {"pageSize": 2, "pageNumber": 2, "totPage": 2}, "count": 1, "data": ['
             '{"index": 3, "iuv": "01250000001234530", "iur": "IUR2", "idTransfer": 1, "pay": 5,'
             ' "payStatus": "NO_RPT", "payDate": "2027-01-10T10:00:00Z"}]}',
    }
    client, adapter = fdr_client(lambda r: raw_json(pages[re.search(r"[?&]page=(\d+)", r.url).group(1)]))

    payments = list(client.iter_flow_payments(CF_COMUNE, FLOW, 2, PSP, size=2))

    assert len(adapter.sent) == 2
    for sent in adapter.sent:
        assert sent.request.url.startswith(f"{FDR_BASE}/organizations/{CF_COMUNE}/fdrs/{FLOW}/revisions/2/psps/{PSP}"
                                           "/payments?")
        assert_conforms(sent, FDR_BASE, *FDR)
    assert [(p.index, p.id_transfer, p.amount_cents, p.status) for p in payments] == [
        (1, 1, 10010, "EXECUTED"), (2, 2, 29, "STAND_IN"), (3, 1, 500, "NO_RPT")]
    assert payments[0].pay_date == datetime(2027, 1, 10, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(("value", "cents"), [(Decimal("0.29"), 29), (Decimal("100.1"), 10010), (5, 500),
                                              ("999999999.99", 99999999999), (Decimal("1E+2"), 10000)])
def test_euros_to_cents_is_exact(value, cents):
    assert euros_to_cents(value) == cents


@pytest.mark.parametrize("value", [Decimal("0.001"), "abc", Decimal("NaN")])
def test_euros_to_cents_refuses_what_is_not_a_cent_amount(value):
    with pytest.raises(PagoPAError):
        euros_to_cents(value)


def test_fdr_error_response_is_mapped():
    client, _ = fdr_client(Canned(404, {"httpStatusCode": 404, "httpStatusDescription": "Not Found",
                                        "appErrorCode": "FDR-3001",
                                        "errors": [{"message": f"Flow with ID [{FLOW}] not found."}]}))
    with pytest.raises(PagoPANotFound) as caught:
        client.get_flow(CF_COMUNE, FLOW, 2, PSP)
    assert caught.value.title == "FDR-3001"
    assert FLOW in caught.value.detail


# --- against the sandbox, over real HTTP ------------------------------------------------------------------------

def _sandbox_create_app():
    """The sandbox's app factory, or a skip if the sandbox is not there (yet)."""
    sandbox = pytest.importorskip("portal.pagopa.sandbox", reason="portal.pagopa.sandbox not available")
    create_app = getattr(sandbox, "create_app", None)
    if create_app is None:
        pytest.skip("portal.pagopa.sandbox has no create_app")
    return create_app


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """The sandbox app served on a free local port in a thread; yields its base URL."""
    from tests.servers import serving

    create_app = _sandbox_create_app()
    app = create_app({"TESTING": True, "SANDBOX_DATABASE": str(tmp_path_factory.mktemp("sandbox") / "state.db"),
                      "SANDBOX_API_KEY": API_KEY, "SANDBOX_DELIVERY_WORKER": False,
                      "SANDBOX_VALIDATE_RESPONSES": True})
    # Cart redirects must point at this server, whose port is known only now.
    with serving(app, public_url_key="SANDBOX_PUBLIC_URL") as base:
        yield base


def sandbox_position(**shape) -> dict:
    """A payload with IUVs unlikely to clash with other tests' and a due date in the future."""
    position = build_position(due=date.today() + timedelta(days=30), **shape)
    base = uuid.uuid4().int % 10**12
    for option in position.options:
        numbers = notice_numbers.build("01", base + 1 + (option.installment_number or 0))
        option.iuv, option.notice_number = numbers.iuv, numbers.nav
    return position_payload(position)


def test_gpd_lifecycle_against_the_sandbox(sandbox):
    client = GPDClient(f"{sandbox}/gpd/debt-positions-service", API_KEY, timeout=5)
    payload = sandbox_position(single=15000, installments=(7500, 7500))

    created = client.create(CF_COMUNE, payload)
    assert created.iupd == payload["iupd"]

    fetched = client.get(CF_COMUNE, payload["iupd"])
    assert fetched.status == "VALID"
    assert [o.iuv for o in fetched.options] == [o["iuv"] for o in payload["paymentOption"]]
    assert all(o.status == "PO_UNPAID" for o in fetched.options)

    with pytest.raises(DebtPositionConflict) as caught:
        client.create(CF_COMUNE, payload)
    assert caught.value.title == "DEBT_POSITION_UNIQUE_VIOLATION"

    assert client.invalidate(CF_COMUNE, payload["iupd"]).status == "INVALID"
    assert client.get(CF_COMUNE, payload["iupd"]).status == "INVALID"

    with pytest.raises(DebtPositionNotFound):
        client.get(CF_COMUNE, f"{CF_COMUNE}-{uuid.uuid4().hex}")


def test_bulk_create_100_against_the_sandbox(sandbox):
    client = GPDClient(f"{sandbox}/gpd/debt-positions-service", API_KEY, timeout=20)
    payloads = [sandbox_position() for _ in range(100)]

    client.bulk_create(CF_COMUNE, payloads)

    for payload in (payloads[0], payloads[-1]):
        assert client.get(CF_COMUNE, payload["iupd"]).status == "VALID"


def test_checkout_payment_then_gpd_state_and_receipts_against_the_sandbox(sandbox):
    gpd = GPDClient(f"{sandbox}/gpd/debt-positions-service", API_KEY, timeout=5)
    receipts = ReceiptsClient(f"{sandbox}/gpd/payments-receipts-service/v1", API_KEY, timeout=5)
    checkout = CheckoutClient(f"{sandbox}/checkout/ec", API_KEY, 5)
    payload = sandbox_position()
    gpd.create(CF_COMUNE, payload)
    option = payload["paymentOption"][0]
    before = datetime.now(UTC) - timedelta(seconds=5)

    url = checkout.create_cart([CartNotice(option["nav"], CF_COMUNE, option["amount"], "Comune di Prova",
                                           option["description"])], RETURN_URLS, version=2)
    assert url.startswith(sandbox)
    assert requests.get(url, timeout=5).status_code == 200
    paid = requests.post(url, data={"action": "pay"}, allow_redirects=False, timeout=5)
    assert paid.headers["Location"] == RETURN_URLS.ok_url

    state = gpd.get(CF_COMUNE, payload["iupd"])
    assert state.status == "PAID"
    (paid_option,) = state.options
    assert paid_option.status == "PO_PAID"
    assert paid_option.receipt_id
    assert paid_option.psp_company
    assert before <= paid_option.payment_date <= datetime.now(UTC) + timedelta(seconds=5)

    page = receipts.list_receipts(CF_COMUNE, from_date=before, to_date=datetime.now(UTC) + timedelta(minutes=1))
    assert option["iuv"] in [r.iuv for r in page.receipts]
    xml = receipts.get_receipt_xml(CF_COMUNE, option["iuv"])
    assert option["iuv"] in xml
    assert paid_option.receipt_id in xml
    with pytest.raises(DebtPositionConflict):
        gpd.invalidate(CF_COMUNE, payload["iupd"])


def test_unknown_receipt_and_faults_against_the_sandbox(sandbox):
    receipts = ReceiptsClient(f"{sandbox}/gpd/payments-receipts-service/v1", API_KEY, timeout=5)
    with pytest.raises(PagoPANotFound):
        receipts.get_receipt_xml(CF_COMUNE, "01999999999999999")

    gpd = GPDClient(f"{sandbox}/gpd/debt-positions-service", API_KEY, timeout=5)
    fault = requests.post(f"{sandbox}/sandbox/faults", json={
        "match": "GET /gpd/debt-positions-service/v1", "status": 429, "retry_after": 3}, timeout=5)
    assert fault.status_code == 201
    with pytest.raises(PagoPARateLimited) as caught:
        gpd.get(CF_COMUNE, f"{CF_COMUNE}-{uuid.uuid4().hex}")
    assert caught.value.retry_after == 3.0

    wrong_key = GPDClient(f"{sandbox}/gpd/debt-positions-service", "not-the-key", timeout=5)
    with pytest.raises(PagoPARejected) as refused:
        wrong_key.get(CF_COMUNE, f"{CF_COMUNE}-{uuid.uuid4().hex}")
    assert refused.value.status == 401


def test_fdr_of_a_tefa_payment_against_the_sandbox(sandbox):
    gpd = GPDClient(f"{sandbox}/gpd/debt-positions-service", API_KEY, timeout=5)
    checkout = CheckoutClient(f"{sandbox}/checkout/ec", API_KEY, 5)
    fdr = FdrClient(f"{sandbox}/fdr-org/service/v1", API_KEY, timeout=5)
    payload = sandbox_position(single=10599, tefa_cents=599)
    gpd.create(CF_COMUNE, payload)
    option = payload["paymentOption"][0]
    url = checkout.create_cart([CartNotice(option["nav"], CF_COMUNE, option["amount"], "Comune di Prova",
                                           option["description"])], RETURN_URLS)
    requests.post(url, data={"action": "pay"}, allow_redirects=False, timeout=5).raise_for_status()
    published = requests.post(f"{sandbox}/sandbox/fdr/publish", json={}, timeout=5)
    assert published.status_code == 201

    lines = {}
    for beneficiary in (CF_COMUNE, CF_PROVINCIA):
        for flow in fdr.list_flows(beneficiary).flows:
            header = fdr.get_flow(beneficiary, flow.fdr, flow.revision, flow.psp_id)
            payments = list(fdr.iter_flow_payments(beneficiary, flow.fdr, flow.revision, flow.psp_id))
            assert header.sum_cents == sum(p.amount_cents for p in payments)
            assert header.total_payments == len(payments)
            lines.update({(beneficiary, p.id_transfer): p for p in payments if p.iuv == option["iuv"]})

    assert {key: line.amount_cents for key, line in lines.items()} == {(CF_COMUNE, 1): 10000,
                                                                       (CF_PROVINCIA, 2): 599}
    assert all(line.status == "EXECUTED" for line in lines.values())



class SettingsAdapter(RecordingAdapter):
    """Records the host, the HTTPS proxy and the ``verify`` each request is sent with."""

    def __init__(self):
        super().__init__(Canned())
        self.settings: list[tuple] = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.settings.append((urlsplit(request.url).hostname, (proxies or {}).get("https"), verify))
        return super().send(request, stream, timeout, verify, cert, proxies)


def test_the_pagopa_session_takes_proxies_and_ca_bundle_from_the_environment_once_per_host(monkeypatch):
    bundle = "/etc/ssl/certs/pagopa.pem"
    monkeypatch.setenv("HTTPS_PROXY", "http://egress.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "direct.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    plain, pagopa = requests.Session(), PagoPASession()
    for session in (plain, pagopa):
        session.mount("https://", SettingsAdapter())
        session.get("https://api.example/gpd", timeout=1)
        session.get("https://direct.example/gpd", timeout=1)
    # What a plain session would use, for each host:
    sent = pagopa.get_adapter("https://api.example").settings
    assert sent == plain.get_adapter("https://api.example").settings == [
        ("api.example", "http://egress.invalid:3128", bundle), ("direct.example", None, bundle)]
    # ... read when the host is first called, not on every call.
    monkeypatch.setenv("HTTPS_PROXY", "http://elsewhere.invalid:1")
    pagopa.get("https://api.example/checkout", timeout=1)
    assert sent[-1] == ("api.example", "http://egress.invalid:3128", bundle)
    # A caller's own settings win.
    pagopa.get("https://api.example/checkout", timeout=1, verify=False, proxies={"https": "http://mine.invalid:8"})
    assert sent[-1] == ("api.example", "http://mine.invalid:8", False)
