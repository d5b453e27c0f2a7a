"""The sandbox's compiled request checks (``validation._Compiled``: parameters and JSON bodies checked with what is
built once per operation) give openapi-core's own result: the same parameters, the same errors, for every
request schemathesis makes from the official files (valid ones and ones that break the spec), plus a few
written by hand for what matters most (defaults, missing required values, empty query values, bad path values).

Each request goes, as the sandbox receives it (``validation._request``), through the spec with the compiled
unmarshaller and through the same spec with openapi-core's plain one. Bodies are compared as valid or not
(with the same errors): the compiled path validates a JSON body without unmarshalling it, nobody reads it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from flask import Flask, jsonify, request
from hypothesis import HealthCheck, settings

from portal.pagopa.sandbox import validation
from tests.sandbox_specs import schemas

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 6


def _parameters(result) -> dict:
    params = result.parameters
    if params is None:
        return {}
    return {where: {name: repr(value) for name, value in sorted(dict(getattr(params, where)).items())}
            for where in ("path", "query", "header", "cookie")}


def _outcome(spec_file: str, prefix: str, compiled: bool) -> dict:
    result = validation.load_spec(spec_file, compiled=compiled).unmarshal_request(validation._request(request, prefix))
    errors = [f"{type(err).__name__}: {line}" for err in result.errors for line in validation.describe(err)]
    return {"errors": errors, "parameters": _parameters(result), "security": repr(result.security)}


def _comparing_app() -> Flask:
    """Puts both outcomes (compiled, openapi-core's) of every request it gets in ``app.outcomes``."""
    app = Flask(__name__)
    app.outcomes = []

    @app.before_request
    def compare():
        api = validation.match_api(request.path)
        if api is None:
            app.outcomes.append(None)
            return "", 404
        prefix, spec_file, _name = api
        app.outcomes.append((_outcome(spec_file, prefix, True), _outcome(spec_file, prefix, False)))
        return jsonify(ok=True)

    return app


COMPARING = _comparing_app()


def compared(call) -> tuple[dict, dict]:
    """Both outcomes of the one request ``call()`` sends to :data:`COMPARING`."""
    COMPARING.outcomes.clear()
    call()
    [outcome] = COMPARING.outcomes
    assert outcome is not None
    return outcome


@schemathesis.pytest.parametrize(**schemas(seed=20261208, max_examples=MAX_EXAMPLES, key="compare", mode="all"))
@settings(deadline=timedelta(seconds=2), suppress_health_check=list(HealthCheck))
def test_compiled_checks_agree_with_openapi_core(case):
    compiled, core = compared(lambda: case.call(app=COMPARING))
    assert compiled == core


V1 = "/gpd/debt-positions-service/v1/organizations/77777777777"

BY_HAND = [
    ("GET", f"{V1}/debtpositions", ""),  # defaults (page, limit) filled in
    ("GET", f"{V1}/debtpositions", "?limit=20&page=2&status=VALID"),
    ("GET", f"{V1}/debtpositions", "?limit=51"),  # above the maximum
    ("GET", f"{V1}/debtpositions", "?limit="),  # empty query value
    ("GET", f"{V1}/debtpositions", "?limit=many"),  # not an integer
    ("GET", f"{V1}/debtpositions", "?status=NOPE"),  # outside the enum
    ("GET", f"{V1}/debtpositions", "?due_date_from=2026-01-01&due_date_to=2026-12-31"),
    ("GET", f"{V1}/debtpositions", "?due_date_from=yesterday"),
    ("GET", f"{V1}/debtpositions/IUPD-1", ""),
    ("GET", f"{V1}/debtpositions/@.@", ""),  # outside the IUPD's pattern
    ("POST", f"{V1}/debtpositions", "?toPublish=true"),
    ("POST", f"{V1}/debtpositions", "?toPublish=maybe"),
    ("PATCH", f"{V1}/debtpositions/transfers", ""),  # a required query parameter missing
    ("PATCH", f"{V1}/debtpositions/transfers", "?oldIban="),  # an empty string value
    ("PATCH", f"{V1}/debtpositions/transfers", "?oldIban=IT60X0542811101000000123456"),
    ("GET", "/gpd/payments-receipts-service/v1/payments/77777777777/receipts", "?debtor=&service=TARI"),
    ("GET", "/gpd/debt-positions-service/v1/organizations/1/debtpositions", ""),  # a short fiscal code
    ("GET", "/fdr-org/service/v1/organizations/77777777777/fdrs", "?page=0&size=10"),
]


@pytest.mark.parametrize(("method", "path", "query"), BY_HAND, ids=[f"{m} {p[-30:]}{q}" for m, p, q in BY_HAND])
def test_hand_written_requests_agree(method, path, query):
    client = COMPARING.test_client()
    headers = {"Ocp-Apim-Subscription-Key": "compare", "X-Request-Id": "r-1"}
    body = {"json": {}} if method in ("POST", "PATCH") else {}
    compiled, core = compared(lambda: client.open(path + query, method=method, headers=headers, **body))
    assert compiled == core
    # Not vacuous: the valid ones do carry parameters, the others errors.
    assert core["errors"] or any(core["parameters"].values())


def test_the_compiled_path_is_the_one_in_use(monkeypatch):
    """A valid request never reaches openapi-core's own parameter path, and what was built is kept."""
    from openapi_core.validation.request.validators import BaseRequestValidator

    def not_this_way(*_args):
        raise AssertionError("openapi-core's own _get_parameters was called")

    monkeypatch.setattr(BaseRequestValidator, "_get_parameters", not_this_way)
    prefix, spec_file, _name = validation.match_api(V1)
    with COMPARING.test_request_context(f"{V1}/debtpositions?limit=5", headers={"Ocp-Apim-Subscription-Key": "k"}):
        compiled = _outcome(spec_file, prefix, True)
    assert compiled["errors"] == []
    assert compiled["parameters"]["query"]["limit"] == "5"
    assert compiled["parameters"]["query"]["page"] == "0"
    unmarshaller = validation.load_spec(spec_file).request_unmarshaller
    assert isinstance(unmarshaller, validation._Compiled)
    plans = unmarshaller.__dict__["_parameter_plans"]
    assert any(plan and {p.name for p in plan} >= {"limit", "page"} for plan in plans.values())
