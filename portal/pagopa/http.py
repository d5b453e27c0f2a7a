"""The HTTP plumbing every pagoPA REST client shares: session, headers, timeout, logging, error mapping.

Each call sends the subscription key (``Ocp-Apim-Subscription-Key``) and a fresh ``X-Request-Id`` (uuid4),
never follows redirects (Checkout answers 302 and the *browser* must follow it), and turns every failure into
the :mod:`portal.pagopa.errors` hierarchy. The key never reaches a log line or an exception.
"""

import json as jsonlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.utils import get_environ_proxies

from portal.pagopa.errors import (
    DebtPositionConflict,
    DebtPositionNotFound,
    PagoPAError,
    PagoPANotFound,
    PagoPARateLimited,
    PagoPARejected,
    PagoPAUnavailable,
)

log = logging.getLogger("portal.pagopa")

API_KEY_HEADER = "Ocp-Apim-Subscription-Key"
REQUEST_ID_HEADER = "X-Request-Id"

#: Italian messages for the ProblemJson titles GPD returns (pagopa-debt-position ``AppError``).
TITLE_MESSAGES = {
    "DEBT_POSITION_NOT_FOUND": "La posizione debitoria non è presente su pagoPA.",
    "PAYMENT_OPTION_NOT_FOUND": "Il codice avviso non è presente su pagoPA.",
    "DEBT_POSITION_UNIQUE_VIOLATION":
        "Su pagoPA esiste già una posizione con lo stesso identificativo, IUV o codice avviso.",
    "DEBT_POSITION_PAYMENT_FOUND": "La posizione ha già un pagamento su pagoPA e non può essere cancellata.",
    "DEBT_POSITION_NOT_UPDATABLE":
        "La posizione non è più modificabile su pagoPA (pagata, annullata o con un pagamento in corso).",
    "DEBT_POSITION_NOT_PUBLISHABLE": "La posizione non può essere pubblicata: su pagoPA non è in bozza.",
    "DEBT_POSITION_PUBLISH_VALIDITY_DATE_MISMATCH":
        "La data di inizio validità della posizione è già passata: aggiornarla prima di pubblicare.",
    "DEBT_POSITION_PUBLISH_DUE_DATE_MISMATCH":
        "La scadenza della posizione è già passata: aggiornarla prima di pubblicare.",
    "DEBT_POSITION_NOT_INVALIDABLE": "La posizione non può essere annullata su pagoPA nel suo stato attuale.",
    "PAYMENT_OPTION_ALREADY_PAID": "Il pagamento risulta già effettuato su pagoPA.",
    "PAYMENT_OPTION_NOT_PAYABLE": "Il codice avviso non è pagabile su pagoPA nel suo stato attuale.",
}

#: GPD's ``AppError`` human titles (what ``ProblemJson.title`` carries) → the enum name callers compare.
#: Upstream ``pagopa-debt-position`` ``exception/AppError.java``; two titles serve two errors each, see
#: :func:`gpd_error_code`.
GPD_TITLE_CODES = {
    "error in the debt position request data": "DEBT_POSITION_REQUEST_DATA_ERROR",
    "the debt position creation is failed": "DEBT_POSITION_CREATION_FAILED",
    "the debt position violated constraints of uniqueness": "DEBT_POSITION_UNIQUE_VIOLATION",
    "not found the debt position": "DEBT_POSITION_NOT_FOUND",
    "existing related payment found or not in updatable state": "DEBT_POSITION_NOT_UPDATABLE",
    "existing related payment found or not in publishable state": "DEBT_POSITION_NOT_PUBLISHABLE",
    "publish request occurred after the validity date began": "DEBT_POSITION_PUBLISH_VALIDITY_DATE_MISMATCH",
    "publish request occurred after the due date of a payment options has expired":
        "DEBT_POSITION_PUBLISH_DUE_DATE_MISMATCH",
    "the debt position publish is failed": "DEBT_POSITION_PUBLISH_FAILED",
    "the debt position invalidate is failed": "DEBT_POSITION_INVALIDATE_FAILED",
    "existing related payment found or not in invalidable state": "DEBT_POSITION_NOT_INVALIDABLE",
    "the debt positions cannot be recovered": "DEBT_POSITION_NOT_RECOVERABLE",
    "not found the organization": "ORGANIZATION_NOT_FOUND",
    "not found the payment option": "PAYMENT_OPTION_NOT_FOUND",
    "not in payable state": "PAYMENT_OPTION_NOT_PAYABLE",
    "the pay call for a payment option is failed": "PAYMENT_OPTION_PAY_FAILED",
    "not found the transfer": "TRANSFER_NOT_FOUND",
    "transfer is not in accountable state": "TRANSFER_NOT_ACCOUNTABLE",
}

STATUS_MESSAGES = {
    400: "pagoPA ha rifiutato la richiesta perché i dati non sono validi",
    401: "pagoPA non ha accettato la chiave di accesso (PAGOPA_API_KEY): verificare la configurazione.",
    403: "La chiave di accesso a pagoPA non è abilitata per questo ente o per questa operazione.",
    404: "Elemento non trovato su pagoPA.",
    409: "L'operazione non è compatibile con lo stato della posizione su pagoPA.",
    422: "pagoPA non può eseguire l'operazione nello stato attuale.",
}


class PagoPASession(requests.Session):
    """A ``requests.Session`` that reads the environment's proxy and CA settings once per scheme and host.

    A plain session reads them (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) again on
    every call, walking ``os.environ`` several times, and twice more for a redirect it does not follow (Checkout's
    302): about a millisecond of CPU a call. The values are those a plain session would use, taken when the session
    first calls a host. ``~/.netrc`` is not read: pagoPA is authenticated by the subscription key.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self._environment: dict[tuple[str, str], tuple[dict[str, str], str | None]] = {}

    def request(self, method, url, *args, **kwargs):  # noqa: ANN001, ANN201 - requests' own signature
        parts = urlsplit(url)
        settings = self._environment.get((parts.scheme, parts.netloc))
        if settings is None:
            settings = self._environment[(parts.scheme, parts.netloc)] = (
                get_environ_proxies(url), os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"))
        proxies, bundle = settings
        if proxies and kwargs.get("proxies") is None:
            kwargs["proxies"] = dict(proxies)
        if bundle and kwargs.get("verify") in (None, True):
            kwargs["verify"] = bundle
        return super().request(method, url, *args, **kwargs)


class PagoPAHttp:
    """One pagoPA REST API at one base URL, with its key and timeout.

    :param base_url: the API base, e.g. ``https://api.platform.pagopa.it/gpd/debt-positions-service``;
        request paths are appended to it.
    :param not_found: exception class for 404 answers; ``conflict`` likewise for 409.
    :param session: a ``requests.Session`` to reuse (tests pass one with a recording adapter).
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0,
                 session: requests.Session | None = None, name: str = "pagoPA",
                 not_found: type[PagoPARejected] = PagoPANotFound,
                 conflict: type[PagoPARejected] = PagoPARejected,
                 error_code: Callable[[int, str | None, str | None], str | None] | None = None):
        if not base_url:
            raise ValueError(f"{name}: base URL missing")
        if not api_key:
            raise ValueError(f"{name}: API key missing")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = float(timeout)
        self.session = session or PagoPASession()
        self.name = name
        self.not_found = not_found
        self.conflict = conflict
        self.error_code = error_code

    def __repr__(self) -> str:
        return f"PagoPAHttp({self.name!r}, {self.base_url!r})"

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
                expect: Iterable[int] = (200,), accept: str = "application/json") -> requests.Response:
        """Send one request and return the response if its status is one of ``expect``.

        :raise PagoPAUnavailable: no answer (connection refused, timeout) or a 5xx.
        :raise PagoPARateLimited: a 429, with ``retry_after`` from the ``Retry-After`` header.
        :raise PagoPARejected: any other 4xx (404 → ``not_found``, 409 → ``conflict``).
        :raise PagoPAError: an answer we did not expect (e.g. 200 where 302 was due).
        """
        request_id = str(uuid.uuid4())
        headers = {API_KEY_HEADER: self._api_key, REQUEST_ID_HEADER: request_id, "Accept": accept}
        url = self.base_url + path
        started = time.monotonic()
        try:
            response = self.session.request(method, url, params=_query(params), json=json, headers=headers,
                                            timeout=self.timeout, allow_redirects=False)
        except requests.Timeout as exc:
            log.warning("%s %s %s: timeout after %.1fs (request id %s)", self.name, method, path, self.timeout,
                        request_id)
            raise PagoPAUnavailable(
                "pagoPA non ha risposto in tempo: l'operazione sarà ritentata più tardi.",
                title="TIMEOUT", detail=type(exc).__name__, request_id=request_id,
            ) from None
        except requests.ConnectionError as exc:
            log.warning("%s %s %s: connection failed (%s, request id %s)", self.name, method, path,
                        type(exc).__name__, request_id)
            raise PagoPAUnavailable(
                "pagoPA non è raggiungibile in questo momento: l'operazione sarà ritentata più tardi.",
                title="CONNECTION_ERROR", detail=type(exc).__name__, request_id=request_id,
            ) from None
        except requests.RequestException as exc:
            log.warning("%s %s %s: request failed (%s, request id %s)", self.name, method, path,
                        type(exc).__name__, request_id)
            raise PagoPAError(detail=type(exc).__name__, request_id=request_id) from None
        elapsed_ms = (time.monotonic() - started) * 1000
        expected = tuple(expect)
        if response.status_code in expected:
            log.info("%s %s %s -> %d (%.0f ms, request id %s)", self.name, method, path, response.status_code,
                     elapsed_ms, request_id)
            return response
        error = self._error(response, request_id, expected)
        # "Not found" is an answer the caller expects and decides on (e.g. invalidating what pagoPA never had).
        level = logging.INFO if response.status_code == 404 else logging.WARNING
        log.log(level, "%s %s %s -> %d %s (%.0f ms, request id %s): %s", self.name, method, path,
                response.status_code, error.title or "", elapsed_ms, request_id, error.detail or "")
        raise error

    def _error(self, response: requests.Response, request_id: str, expected: tuple[int, ...]) -> PagoPAError:
        status = response.status_code
        raw_title, detail = problem_of(response)
        title = (self.error_code(status, raw_title, detail) if self.error_code else None) or raw_title
        kwargs = {"status": status, "title": title, "detail": detail, "request_id": request_id,
                  "raw_title": raw_title}
        if status == 429:
            return PagoPARateLimited(retry_after=retry_after_seconds(response.headers.get("Retry-After")), **kwargs)
        if status >= 500:
            return PagoPAUnavailable(**kwargs)
        if 400 <= status < 500:
            cls = {404: self.not_found, 409: self.conflict}.get(status, PagoPARejected)
            return cls(_message(status, title, detail), **kwargs)
        return PagoPAError(
            f"Risposta inattesa da pagoPA (HTTP {status}, attesa {'/'.join(map(str, expected))}).", **kwargs
        )


def gpd_http(base_url: str, api_key: str, **kwargs) -> PagoPAHttp:
    """A :class:`PagoPAHttp` whose 404/409 raise the debt-position exceptions, titled with GPD's error codes."""
    return PagoPAHttp(base_url, api_key, not_found=DebtPositionNotFound, conflict=DebtPositionConflict,
                      error_code=gpd_error_code, **kwargs)


def gpd_error_code(status: int, title: str | None, detail: str | None) -> str | None:
    """GPD's ``AppError`` name for an error answer, or ``None`` if the title is not one of its titles.

    A title that already is an enum name (``DEBT_POSITION_UNIQUE_VIOLATION``) is kept. "Existing related payment
    found" is both ``PAYMENT_OPTION_ALREADY_PAID`` (its detail names an IUV) and ``DEBT_POSITION_PAYMENT_FOUND``
    (an IUPD); "The debt position update is failed" is a 500 or, for the notification fee, a 422.
    """
    if not title:
        return None
    if title in TITLE_MESSAGES or title in GPD_TITLE_CODES.values():
        return title
    key = " ".join(title.split()).lower()
    if key == "existing related payment found":
        return "PAYMENT_OPTION_ALREADY_PAID" if "IUV" in (detail or "") else "DEBT_POSITION_PAYMENT_FOUND"
    if key == "the debt position update is failed":
        return ("DEBT_POSITION_UPDATE_FAILED_NO_TRANSFER_FOR_NOTIFICATION_FEE" if status == 422
                else "DEBT_POSITION_UPDATE_FAILED")
    return GPD_TITLE_CODES.get(key)


def _message(status: int, title: str | None, detail: str | None) -> str | None:
    if title in TITLE_MESSAGES:
        return TITLE_MESSAGES[title]
    if status == 400:
        base = STATUS_MESSAGES[400]
        return f"{base}: {detail}" if detail else base + "."
    return STATUS_MESSAGES.get(status)


def problem_of(response: requests.Response) -> tuple[str | None, str | None]:
    """``(title, detail)`` of an error answer: ProblemJson, FdR ``ErrorResponse``, the APIM gateway's
    ``{statusCode, message}``, or a ProblemJson serialised as XML; plain text becomes the detail."""
    text = response.text or ""
    try:
        body = jsonlib.loads(text) if text.strip() else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        title = body.get("title") or body.get("appErrorCode")
        detail = body.get("detail") or body.get("message")
        if not detail and isinstance(body.get("errors"), list):
            detail = "; ".join(str(e.get("message")) for e in body["errors"] if isinstance(e, dict)) or None
        if not title and body.get("httpStatusDescription"):
            title = body.get("httpStatusDescription")
        return _str_or_none(title), _str_or_none(detail)
    if text.lstrip().startswith("<"):
        title = re.search(r"<title>(.*?)</title>", text, re.S)
        detail = re.search(r"<detail>(.*?)</detail>", text, re.S)
        if title or detail:
            return (title.group(1).strip() if title else None), (detail.group(1).strip() if detail else None)
        return None, None
    return None, (text.strip()[:500] or None)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def retry_after_seconds(value: str | None) -> float | None:
    """The ``Retry-After`` header as seconds: a number of seconds or an HTTP date (``None`` if absent/invalid)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(seconds, 0.0)


def _query(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Drop ``None`` values and spell booleans the way Java expects (``true``/``false``)."""
    if params is None:
        return None
    out = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, datetime | date):
            value = value.isoformat()
        out[key] = str(value)
    return out


def segment(value: str) -> str:
    """One URL path segment, percent-encoded (IUPDs may contain characters that are not path-safe)."""
    return quote(str(value), safe="")


def json_body(response: requests.Response, **kwargs) -> Any:
    """The decoded JSON of a successful answer.

    :raise PagoPAError: if the body is not JSON.
    """
    try:
        return response.json(**kwargs)
    except ValueError:
        raise PagoPAError("pagoPA ha risposto con un contenuto non leggibile.", status=response.status_code,
                          detail="response body is not JSON",
                          request_id=response.request.headers.get(REQUEST_ID_HEADER) if response.request else None,
                          ) from None


def parse_datetime(value: Any) -> datetime | None:
    """A pagoPA timestamp as an aware UTC datetime.

    pagoPA's Java services serialise ``LocalDateTime`` without an offset; GPD compares those with
    ``LocalDateTime.now(ZoneOffset.UTC)``, so a naive value is read as UTC. Fractions beyond microseconds
    (Java nanoseconds) are cut. ``None`` or an unreadable value gives ``None``.
    """
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    match = re.match(r"^(.*T\d{2}:\d{2}:\d{2})(\.\d+)?(.*)$", text)
    if match:
        head, fraction, zone = match.groups()
        text = head + (fraction[:7] if fraction else "") + zone
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def utc_timestamp(moment: datetime) -> str:
    """An aware datetime as RFC 3339 UTC, second precision, ``Z`` suffix (``2027-01-31T22:59:59Z``).

    ``Z`` is the one offset both the OpenAPI ``date-time`` format and GPD's Jackson ``LocalDateTime``
    parser accept (Jackson reads ``Z`` as UTC and rejects ``+01:00``).

    :raise ValueError: for a naive datetime, whose instant is unknown.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def config_value(config: Mapping, key: str) -> Any:
    """A required setting from a Flask-style config mapping.

    :raise ValueError: naming the missing setting.
    """
    value = config.get(key)
    if value in (None, ""):
        raise ValueError(f"setting {key} is missing")
    return value
