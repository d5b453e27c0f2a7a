"""The APIs the sandbox mounts, as schemathesis schemas of the official files, for the tests driven by them
(``test_sandbox_contract.py``, ``test_sandbox_validation.py``): bounded, repeatable, no example database."""

from __future__ import annotations

import json

import schemathesis
from schemathesis.config import SchemathesisConfig

from portal.pagopa import SPECS_DIR
from portal.pagopa.sandbox.validation import APIS

#: Test id → mount prefix of each API (the spec file is the one the sandbox validates with).
MOUNTED = {
    "gpd": "/gpd/debt-positions-service/v1",
    "gpd2": "/gpd/debt-positions-service/v2",
    "receipts": "/gpd/payments-receipts-service/v1",
    "checkout1": "/checkout/ec/v1",
    "checkout2": "/checkout/ec/v2",
    "fdr": "/fdr-org/service/v1",
}


def schemas(*, seed: int, max_examples: int, key: str, mode: str | None = None) -> dict:
    """``{test id: schema}`` for ``schemathesis.pytest.parametrize``; every request sends the subscription key
    ``key`` the APIs require."""
    generation = {"max-examples": max_examples, "deterministic": True, "database": "none"}
    if mode:
        generation["mode"] = mode
    found = {}
    for name, prefix in MOUNTED.items():
        raw = json.loads((SPECS_DIR / APIS[prefix][0]).read_text(encoding="utf-8"))
        config = SchemathesisConfig.from_dict({"seed": seed, "base-url": f"http://localhost{prefix}",
                                               "headers": {"Ocp-Apim-Subscription-Key": key},
                                               "generation": generation})
        found[name] = schemathesis.openapi.from_dict(raw, config=config)
    return found
