"""The pagoPA sandbox: a small, separate Flask app that plays pagoPA and the technological intermediary over
real HTTP, so Pay Box's clients can be tested exactly as they will talk to pagoPA UAT.

It never imports Pay Box's models or database (it is the other side of the wire) and keeps its own state in
its own SQLite file. Run it next to Pay Box::

    .venv/bin/flask --app portal.pagopa.sandbox run --port 5001

It refuses to start when ``PAYBOX_ENV=production``.

What it serves (every API request is validated against the official OpenAPI file in ``portal/pagopa/specs``;
a request that does not conform gets 400 with the schema errors in ``detail``, a JSON body that cannot be
read 400 "JSON parse error: …" as GPD answers, and a path value outside its pattern 404 where the operation
documents no 400; ``tests/test_sandbox_contract.py`` holds the sandbox to the specs with schemathesis):

* GPD v1   ``/gpd/debt-positions-service/v1/organizations/{cf}/debtpositions[/{iupd}[/publish|/invalidate]]``,
  ``.../paymentoptions/paids/{nav}``, ``PATCH .../debtpositions/transfers`` (``gpd/gpd.json``)
* GPD v2   ``POST|PUT|DELETE /gpd/debt-positions-service/v2/organizations/{cf}/debtpositions`` (bulk, ≤100,
  all or nothing), ``.../paymentoptions/paids/{nav}``, ``GET /info`` (``openapi_external_v2.json``)
* receipts ``/gpd/payments-receipts-service/v1/payments/{cf}/receipts[/{iuv}]`` (``gpd_payments.json``)
* Checkout ``POST /checkout/ec/v1/carts`` and ``/v2/carts`` → 302 to the payment page ``/checkout/pay/{cart}``
* FdR      ``/fdr-org/service/v1/organizations/{org}/fdrs[/{fdr}/revisions/{rev}/psps/{psp}[/payments]]``
* paSendRTV2 to Pay Box's station (``SANDBOX_PAYBOX_SOAP_URL``), XSD-validated, retried until answered OK
* admin (sandbox only, no key): ``POST|DELETE /sandbox/faults``, ``POST /sandbox/rt/duplicate``,
  ``POST /sandbox/rt/retry``, ``POST /sandbox/rt/deliver``, ``POST /sandbox/fdr/publish``,
  ``POST /sandbox/fdr/revise``,
  ``GET /sandbox/state``, ``POST /sandbox/reset``

The APIs require the header ``Ocp-Apim-Subscription-Key`` (Checkout and FdR also accept the query parameter
``subscription-key``), as pagoPA's API gateway does; a missing key is 401.

Settings (environment variables, or the ``config`` mapping given to :func:`create_app`):

``SANDBOX_DATABASE``          SQLite file of the sandbox's state (default ``instance/sandbox.db``)
``SANDBOX_PAYBOX_SOAP_URL``   where receipts (paSendRTV2) are POSTed (default
                              ``http://127.0.0.1:5000/pagopa/paForNode``)
``SANDBOX_BROKER_ID``         ``idBrokerPA`` in the receipts (default: the creditor's fiscal code)
``SANDBOX_STATION_ID``        ``idStation`` in the receipts (default: ``<creditor fiscal code>_01``)
``SANDBOX_API_KEY``           the only subscription key accepted (default: any non-empty key)
``SANDBOX_PUBLIC_URL``        base of the ``Location`` of the carts (default ``http://127.0.0.1:5001``)
``SANDBOX_SOAP_HEADER``       an extra header sent with each receipt, ``Name: value`` (default none)
``SANDBOX_SOAP_TIMEOUT``      seconds to wait for Pay Box's answer to a receipt (default 10)
``SANDBOX_RETRY_SECONDS``     first retry delay of a receipt; doubles up to 5 minutes (default 5)
``SANDBOX_MAX_ATTEMPTS``      attempts before a receipt is left ``failed`` (default 20; ``/sandbox/rt/retry``
                              puts it back in the queue)
``SANDBOX_DELIVERY_WORKER``   run the background thread that sends and retries receipts (default true)
``SANDBOX_VALIDATE_RESPONSES`` also check the sandbox's own 2xx/3xx answers against the specs (default false;
                              the tests turn it on)
``SANDBOX_ACCEPT_PAST_DUE_DATES`` accept positions whose due dates have passed (default false; ``make run``
                              sets it so the demo's backdated history can be loaded)
"""

from __future__ import annotations

import logging
import os
import uuid

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from portal.config import ROOT, ConfigError
from portal.pagopa.sandbox import store
from portal.pagopa.sandbox.problems import BAD_REQUEST, ApiError, gpd_error, problem_response, reason
from portal.pagopa.sandbox.validation import match_api, validate_request, validate_response

log = logging.getLogger(__name__)

DEFAULT_PUBLIC_URL = "http://127.0.0.1:5001"
DEFAULT_SOAP_URL = "http://127.0.0.1:5000/pagopa/paForNode"
#: Checkout and FdR declare the ``subscription-key`` query parameter as an alternative to the header.
QUERY_KEY_APIS = {"checkout", "fdr"}


def _bool(value, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def load_settings(env: dict) -> dict:
    try:
        return {
            "SANDBOX_DATABASE": env.get("SANDBOX_DATABASE") or str(ROOT / "instance" / "sandbox.db"),
            "SANDBOX_PAYBOX_SOAP_URL": env.get("SANDBOX_PAYBOX_SOAP_URL") or DEFAULT_SOAP_URL,
            "SANDBOX_BROKER_ID": env.get("SANDBOX_BROKER_ID") or None,
            "SANDBOX_STATION_ID": env.get("SANDBOX_STATION_ID") or None,
            "SANDBOX_API_KEY": env.get("SANDBOX_API_KEY") or None,
            "SANDBOX_PUBLIC_URL": env.get("SANDBOX_PUBLIC_URL") or DEFAULT_PUBLIC_URL,
            "SANDBOX_SOAP_HEADER": env.get("SANDBOX_SOAP_HEADER") or None,
            "SANDBOX_SOAP_TIMEOUT": float(env.get("SANDBOX_SOAP_TIMEOUT") or 10),
            "SANDBOX_RETRY_SECONDS": float(env.get("SANDBOX_RETRY_SECONDS") or 5),
            "SANDBOX_MAX_ATTEMPTS": int(env.get("SANDBOX_MAX_ATTEMPTS") or 20),
            "SANDBOX_DELIVERY_WORKER": _bool(env.get("SANDBOX_DELIVERY_WORKER"), True),
            "SANDBOX_VALIDATE_RESPONSES": _bool(env.get("SANDBOX_VALIDATE_RESPONSES"), False),
            "SANDBOX_ACCEPT_PAST_DUE_DATES": _bool(env.get("SANDBOX_ACCEPT_PAST_DUE_DATES"), False),
        }
    except ValueError as exc:
        raise ConfigError(f"invalid sandbox setting: {exc}") from exc


def create_app(config: dict | None = None) -> Flask:
    """Build the sandbox app. ``config`` overrides the settings read from the environment."""
    config = dict(config or {})
    if (config.get("PAYBOX_ENV") or os.environ.get("PAYBOX_ENV")) == "production":
        raise ConfigError("the pagoPA sandbox never runs with PAYBOX_ENV=production")
    app = Flask(__name__)
    app.config.update(load_settings(dict(os.environ)))
    app.config.update(config)
    header = app.config.get("SANDBOX_SOAP_HEADER")
    if header and ":" not in header:
        raise ConfigError("SANDBOX_SOAP_HEADER must look like 'Name: value'")
    app.config["SANDBOX_SOAP_HEADERS"] = (
        {header.split(":", 1)[0].strip(): header.split(":", 1)[1].strip()} if header else {})
    app.json.sort_keys = False
    store.init_db(app.config["SANDBOX_DATABASE"])

    from portal.pagopa.sandbox import admin, checkout, fdr, gpd, receipts

    for blueprint in (gpd.bp, receipts.bp, checkout.bp, fdr.bp, admin.bp):
        app.register_blueprint(blueprint)
    _register_hooks(app)
    if _bool(app.config.get("SANDBOX_DELIVERY_WORKER"), True):
        worker = receipts.DeliveryWorker(app.config["SANDBOX_DATABASE"], app.config)
        app.extensions["sandbox_worker"] = worker
        worker.start()
    return app


def _unauthorized(message: str):
    # The shape of Azure API Management's answer, which fronts every pagoPA API.
    response = jsonify({"statusCode": 401, "message": message})
    response.status_code = 401
    return response


def _refusal(check, api: str) -> ApiError:
    """The error for a request that breaks the spec: 400, or 404 for a path no resource can have.

    A path parameter that breaks its pattern (an IUPD with a dot, say) names nothing that could exist: where the
    spec documents 404 but no 400 for the operation (GPD's GET/DELETE/publish/invalidate of a position) the
    answer is the same "not found" as for any unknown IUPD. (GPD itself, a Spring service, lets that
    ConstraintViolationException reach its catch-all handler and answers 500, which a sandbox must not copy.)
    """
    detail = "; ".join(check.errors)
    if check.path_only and "400" not in check.documented and "404" in check.documented:
        args = request.view_args or {}
        if api == "gpd" and "iupd" in args:
            return gpd_error("DEBT_POSITION_NOT_FOUND", args.get("org", ""), args["iupd"])
        return ApiError(404, reason(404), detail, app_code="FDR-3001")
    return ApiError(400, BAD_REQUEST if api == "gpd" else "Bad Request", detail, app_code="FDR-1000")


def _register_hooks(app: Flask) -> None:
    @app.before_request
    def _open_and_check():
        g.db = store.connect(app.config["SANDBOX_DATABASE"])
        g.query = {}
        if not request.path.startswith(("/sandbox/", "/static/")):
            from portal.pagopa.sandbox.admin import apply_fault, take_fault

            fault = take_fault(g.db, request.method, request.path)
            if fault is not None:
                error = apply_fault(fault)
                if error is not None:
                    g.fault = True
                    return problem_response(error)
        api = match_api(request.path)
        if api is None:
            return None
        prefix, spec_file, name = api
        g.api = name
        key = request.headers.get("Ocp-Apim-Subscription-Key")
        if not key and name in QUERY_KEY_APIS:
            key = request.args.get("subscription-key")
        if not key:
            return _unauthorized("Access denied due to missing subscription key. Make sure to include subscription "
                                 "key when making requests to an API.")
        expected = app.config.get("SANDBOX_API_KEY")
        if expected and key != expected:
            return _unauthorized("Access denied due to invalid subscription key. Make sure to provide a valid key "
                                 "for an active subscription.")
        check = validate_request(request, prefix, spec_file)
        if not check.found:
            return problem_response(ApiError(404, reason(404), f"{request.method} {request.path} is not an operation "
                                                                f"of {spec_file}"), name)
        if check.errors:
            return problem_response(_refusal(check, name), name)
        g.query = check.query
        g.api_spec = (prefix, spec_file)
        return None

    @app.after_request
    def _finish(response):
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        response.headers.setdefault("X-Request-Id", request_id)
        spec = g.get("api_spec")
        # XML bodies are skipped: openapi-core parses them into elements, which never match ``type: string``.
        if (spec and app.config.get("SANDBOX_VALIDATE_RESPONSES") and 200 <= response.status_code < 400
                and not g.get("fault") and "xml" not in (response.content_type or "")):
            errors = validate_response(request, spec[0], spec[1], response)
            if errors:
                log.error("sandbox response to %s %s breaks %s: %s", request.method, request.path, spec[1], errors)
                failure = problem_response(ApiError(500, "SANDBOX_RESPONSE_CONTRACT_ERROR", "; ".join(errors)))
                failure.headers["X-Request-Id"] = request_id
                return failure
        return response

    @app.teardown_request
    def _close(_exc):
        conn = g.pop("db", None)
        if conn is not None:
            conn.close()

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return problem_response(error, g.get("api"))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if g.get("api"):
            return problem_response(ApiError(error.code or 500, reason(error.code or 500), error.description), g.api)
        return error
