"""Fixtures for the citizens' portal tests: the pagoPA sandbox over HTTP (calling Pay Box back on ``live_server``),
the jobs run by hand, and a service with a published payment form."""

import pytest
import requests

from portal.extensions import db
from portal.forms_builder import services as forms
from portal.forms_builder import templates
from portal.jobs.queue import ManualBackend
from tests.servers import serving

API_KEY = "citizen-key"


@pytest.fixture(scope="session")
def citizen_sandbox(live_server, tmp_path_factory):
    """The sandbox, delivering receipts only when a test asks (``/sandbox/rt/deliver``)."""
    from portal.pagopa.sandbox import create_app as create_sandbox

    sandbox = create_sandbox({
        "TESTING": True, "SECRET_KEY": "sandbox-citizen", "SANDBOX_API_KEY": API_KEY,
        "SANDBOX_DATABASE": str(tmp_path_factory.mktemp("citizen") / "sandbox.sqlite3"),
        "SANDBOX_PAYBOX_SOAP_URL": f"{live_server}/pagopa/paForNode",
        "SANDBOX_DELIVERY_WORKER": False,
    })
    with serving(sandbox, public_url_key="SANDBOX_PUBLIC_URL") as base:
        yield base


@pytest.fixture
def pagopa(app, citizen_sandbox, monkeypatch, tmp_path):
    """Point Pay Box at the sandbox (reset), run jobs by hand, write mail to ``tmp_path / 'mail'``."""
    requests.post(f"{citizen_sandbox}/sandbox/reset", timeout=5).raise_for_status()
    for key, value in {"PAGOPA_GPD_URL": f"{citizen_sandbox}/gpd/debt-positions-service",
                       "PAGOPA_CHECKOUT_URL": f"{citizen_sandbox}/checkout/ec", "PAGOPA_API_KEY": API_KEY,
                       "MAIL_SERVER": None, "MAIL_OUTBOX_DIR": str(tmp_path / "mail")}.items():
        monkeypatch.setitem(app.config, key, value)
    backend = ManualBackend(app)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    backend.sandbox_url = citizen_sandbox
    backend.mail_dir = tmp_path / "mail"
    return backend


def deliver_receipts(sandbox_url: str) -> None:
    """Have the sandbox send its queued paSendRTV2 to Pay Box now."""
    requests.post(f"{sandbox_url}/sandbox/rt/deliver", timeout=10).raise_for_status()


@pytest.fixture
def form_service(make_service):
    """A service "CERT" with the certificates template published as its payment form."""

    def make(code="CERT", template="certificati", **fields):
        service = make_service(code=code, name="Certificati anagrafici", taxonomy_code="9/0104103SP/", **fields)
        forms.save_draft(db.session, service, templates.get(template).definition, actor_user_id=None,
                         template_key=template)
        forms.publish(db.session, service, actor_user_id=None)
        db.session.commit()
        return service

    return make
