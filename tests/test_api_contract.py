"""schemathesis against the API's own OpenAPI document (/api/v1/openapi.json), with a real write token: no 5xx,
no status code, content type or body outside the document. Bounded and deterministic for CI."""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from portal.accounts import api_tokens
from portal.extensions import db

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 6
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _document() -> dict:
    """The document as the app generates it (an app on an in-memory database: only the routes matter)."""
    from portal import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "contract", "SQLALCHEMY_DATABASE_URI": "sqlite://",
                      "JOBS_MODE": "manual", "SERVER_NAME": "localhost"})
    with app.test_client() as client:
        return client.get("/api/v1/openapi.json").get_json()


def _schema():
    config = SchemathesisConfig.from_dict({
        "seed": 20261207,
        "base-url": "http://localhost",
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    })
    return schemathesis.openapi.from_dict(_document(), config=config)


@pytest.fixture
def bearer(creditor, make_position):
    """A write token and a position to find (kept across the examples of one operation, on purpose)."""
    make_position(amount=4200)
    issued = api_tokens.create_token(db.session, creditor, name="contratto", scope="write")
    db.session.commit()
    return {"Authorization": f"Bearer {issued.secret}"}


@schemathesis.pytest.parametrize(api=_schema())
@settings(deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_api_follows_its_own_document(case, app, bearer):
    case.call_and_validate(app=app, checks=CHECKS, headers=bearer)
