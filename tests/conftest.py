"""Test fixtures: the app on a real PostgreSQL database (migrated once), a CSRF-aware client, factories.

``TEST_DATABASE_URL`` picks the server (default: the local PostgreSQL, database ``paybox_test``); the database is
dropped and re-created from the migrations at the start of the run. Each test starts from empty tables.
"""

import os
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer

from portal import create_app
from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.inputs import DebtorInput, OptionInput, PositionInput, TransferInput
from portal.settings import services as settings_svc

pytest_plugins = ["tests.browser_support", "tests.notice_fixtures", "tests.citizen_support",
                  "tests.collections_support"]

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/paybox_test"
PASSWORD = "password-di-prova"
#: A valid codice fiscale (check character verified) for tests that need one.
CF_PERSON = "RSSMRA80A01H501U"
CF_COMUNE = "80015010723"
IBAN_COMUNE = "IT60X0542811101000000123456"
#: The pagoPA intermediary and station ids the node presents with a receipt.
BROKER = "15376371009"
STATION = "15376371009_01"


def _recreate_database(url: str) -> None:
    server, name = url.rsplit("/", 1)
    engine = sa.create_engine(server.replace("postgresql://", "postgresql+psycopg://") + "/postgres",
                              isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


class CSRFClient(FlaskClient):
    """A test client that sends a valid CSRF token on every unsafe request, as a browser page would.

    Pass ``csrf=False`` to send none and check that the request is refused.
    """

    def open(self, *args, csrf: bool = True, **kwargs):
        method = (kwargs.get("method") or "GET").upper()
        if csrf and method not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", self.csrf_token())
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)

    def csrf_token(self) -> str:
        """Put a raw token in the session and return its signed form, as Flask-WTF's generate_csrf does."""
        raw = "test-csrf-token"
        with self.session_transaction() as session:
            session["csrf_token"] = raw
        return URLSafeTimedSerializer(self.application.secret_key, salt="wtf-csrf-token").dumps(raw)


@pytest.fixture(scope="session")
def database_url():
    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    _recreate_database(url)
    return url


@pytest.fixture(scope="session")
def app(database_url):
    from flask_migrate import upgrade

    app = create_app({
        "PAYBOX_ENV": "testing",
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_url.replace("postgresql://", "postgresql+psycopg://"),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "SERVER_NAME": "localhost",
        # Jobs wait for a test to run them (tests of the queue itself build their own app).
        "JOBS_MODE": "manual",
    })
    app.test_client_class = CSRFClient
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture(autouse=True)
def _clean_tables(request):
    """Empty every table after a test that used the database (TRUNCATE skips the append-only row trigger)."""
    yield
    if "app" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    # Jobs a test left waiting in the manual backend must not leak into the next test (ids restart at 1).
    getattr(app.extensions.get("paybox_jobs"), "pending", []).clear()
    with app.app_context():
        db.session.remove()
        tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
        with db.engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def ctx(app):
    """An application context with a clean session."""
    with app.app_context():
        yield
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def creditor(ctx):
    comune = settings_svc.create_creditor(db.session, fiscal_code=CF_COMUNE, name="Comune di Prova",
                                    segregation_code="01", department="Settore Tributi")
    settings_svc.add_account(db.session, comune, iban=IBAN_COMUNE, label="Tesoreria")
    db.session.commit()
    return comune


@pytest.fixture
def make_service(creditor):
    from portal.ledger.models import Service

    def make(code="TARI", name="TARI - Tassa rifiuti", taxonomy_code="9/0101101IM/", **fields):
        service = Service(creditor=creditor, code=code, name=name, taxonomy_code=taxonomy_code,
                          account=creditor.accounts[0], **fields)
        db.session.add(service)
        db.session.commit()
        return service

    return make


@pytest.fixture
def service(make_service):
    return make_service()


@pytest.fixture
def make_user(creditor):
    from portal.accounts.services import create_user

    def make(username="operatore", role="operator", services=None):
        user = create_user(db.session, creditor, username=username, full_name=username.title(), password=PASSWORD,
                           role=role, services=services)
        db.session.commit()
        return user

    return make


@pytest.fixture
def login(client):
    """Log a user in through the real login form."""

    def do_login(user):
        response = client.post("/officer/login", data={"username": user.username, "password": PASSWORD})
        assert response.status_code == 302, response.get_data(as_text=True)
        return user

    return do_login


@pytest.fixture
def station(creditor):
    """The test creditor with its pagoPA intermediary and station ids."""
    creditor.broker_id = BROKER
    creditor.station_id = STATION
    db.session.commit()
    return creditor


@pytest.fixture
def published(make_position, station):
    """Make positions already loaded on pagoPA (status "published"), of the station's creditor."""
    from portal.ledger.status import PositionStatus

    def make(**kwargs):
        position = make_position(**kwargs)
        ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test")
        db.session.commit()
        return position

    return make


def position_input(service, *, fiscal_code=CF_PERSON, name="Mario Rossi", amount=10000, installments=(),
                   external_id=None, due=None, transfers=None, source="manual") -> PositionInput:
    """A valid position input: a single payment of ``amount`` cents and optional installments (amounts)."""
    due = due or date.today() + timedelta(days=30)
    return PositionInput(
        service_id=service.id,
        debtor=DebtorInput(fiscal_code=fiscal_code, name=name, street="Via Roma", civic_number="1",
                           postal_code="00100", city="Roma", province="RM"),
        subject="TARI 2027",
        single=OptionInput(amount_cents=amount, due_date=due, transfers=transfers or []) if amount else None,
        installments=[OptionInput(amount_cents=a, due_date=due + timedelta(days=30 * n))
                      for n, a in enumerate(installments)],
        external_id=external_id,
        source=source,
    )


@pytest.fixture
def make_position(creditor, service):
    def make(**kwargs):
        svc = kwargs.pop("service", service)
        position, _ = ledger.create_position(db.session, creditor, position_input(svc, **kwargs), actor="test")
        db.session.commit()
        return position

    return make


__all__ = ["TransferInput", "position_input"]
