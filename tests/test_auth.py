"""Officer authentication: attempts recorded in the database, throttling, CSRF, safe redirects."""

from datetime import timedelta
from functools import partial

import pytest
import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from portal.accounts import services as accounts
from portal.accounts.models import LoginAttempt
from portal.accounts.services import LoginThrottled, authenticate
from portal.extensions import db
from portal.ledger.types import utcnow
from tests.conftest import PASSWORD

ADDR = "192.0.2.10"
WRONG_MESSAGE = "Nome utente o password non corretti."


@pytest.fixture(autouse=True)
def fast_hashing(request, monkeypatch):
    """Scrypt costs ~70 ms a check; these tests check dozens of passwords, so they use a cheap hash.

    The real one is kept by :func:`test_passwords_are_hashed_with_scrypt`.
    """
    if request.node.name != "test_passwords_are_hashed_with_scrypt":
        cheap = partial(generate_password_hash, method="pbkdf2:sha256:1")
        monkeypatch.setattr(accounts, "generate_password_hash", cheap)


@pytest.fixture
def limits(app):
    return {"max_failures": app.config["LOGIN_MAX_FAILURES"], "lockout_minutes": app.config["LOGIN_LOCKOUT_MINUTES"],
            "max_failures_per_ip": app.config["LOGIN_MAX_FAILURES_PER_IP"]}


def _attempts():
    return [(a.username, a.remote_addr, a.success)
            for a in db.session.scalars(sa.select(LoginAttempt).order_by(LoginAttempt.id))]


def test_success_is_recorded(make_user, limits):
    user = make_user()
    assert user.last_login_at is None
    assert authenticate(db.session, "  Operatore ", PASSWORD, ADDR, **limits) is user
    db.session.commit()
    assert _attempts() == [("operatore", ADDR, True)]
    assert user.last_login_at is not None


def test_passwords_are_hashed_with_scrypt(make_user, limits):
    user = make_user()
    assert user.password_hash.startswith("scrypt:")
    assert PASSWORD not in user.password_hash
    assert check_password_hash(user.password_hash, PASSWORD)
    assert authenticate(db.session, "operatore", PASSWORD, ADDR, **limits) is user


@pytest.mark.parametrize(("username", "password"), [("operatore", "sbagliata-123"), ("nessuno", PASSWORD),
                                                    ("operatore", ""), ("", "")])
def test_failure_is_recorded(make_user, limits, username, password):
    make_user()
    assert authenticate(db.session, username, password, ADDR, **limits) is None
    db.session.commit()
    assert _attempts() == [(username, ADDR, False)]


def test_inactive_user_cannot_log_in(make_user, limits):
    user = make_user()
    user.active = False
    db.session.commit()
    assert authenticate(db.session, "operatore", PASSWORD, ADDR, **limits) is None


def test_throttled_after_max_failures_even_with_the_right_password(make_user, limits):
    make_user()
    for _ in range(limits["max_failures"]):
        assert authenticate(db.session, "operatore", "sbagliata-123", ADDR, **limits) is None
    db.session.commit()
    with pytest.raises(LoginThrottled):
        authenticate(db.session, "operatore", PASSWORD, ADDR, **limits)
    with pytest.raises(LoginThrottled):  # from another address too: the account is locked
        authenticate(db.session, "OPERATORE", PASSWORD, "198.51.100.7", **limits)
    # A throttled attempt does not even check the password, and is not recorded as one more failure.
    assert len(_attempts()) == limits["max_failures"]


def test_one_failure_less_still_lets_the_user_in(make_user, limits):
    user = make_user()
    for _ in range(limits["max_failures"] - 1):
        authenticate(db.session, "operatore", "sbagliata-123", ADDR, **limits)
    assert authenticate(db.session, "operatore", PASSWORD, ADDR, **limits) is user


def test_lockout_expires(make_user, limits):
    user = make_user()
    past = utcnow() - timedelta(minutes=limits["lockout_minutes"] + 1)
    for _ in range(limits["max_failures"]):
        authenticate(db.session, "operatore", "sbagliata-123", ADDR, now=past, **limits)
    assert authenticate(db.session, "operatore", PASSWORD, ADDR, **limits) is user


def test_throttled_by_address(make_user, limits):
    user = make_user()
    per_ip = dict(limits, max_failures_per_ip=3)
    for n in range(3):
        authenticate(db.session, f"utente{n}", "sbagliata-123", ADDR, **per_ip)
    with pytest.raises(LoginThrottled):
        authenticate(db.session, "operatore", PASSWORD, ADDR, **per_ip)
    assert authenticate(db.session, "operatore", PASSWORD, "198.51.100.7", **per_ip) is user


# --- through HTTP -------------------------------------------------------------------------------------------------


def _post_login(client, password, username="operatore", **kwargs):
    return client.post("/officer/login", data={"username": username, "password": password}, **kwargs)


def test_wrong_password_shows_the_italian_message(client, make_user):
    make_user()
    response = _post_login(client, "sbagliata-123")
    assert response.status_code == 200
    assert WRONG_MESSAGE in response.get_data(as_text=True)
    with client.application.app_context():
        assert _attempts() == [("operatore", "127.0.0.1", False)]


def test_sixth_attempt_is_refused_with_429(app, client, make_user):
    make_user()
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        assert _post_login(client, "sbagliata-123").status_code == 200
    response = _post_login(client, PASSWORD)
    assert response.status_code == 429
    assert "Troppi tentativi" in response.get_data(as_text=True)
    assert client.get("/officer/").status_code == 302  # still not logged in


def test_login_without_csrf_token_is_refused(client, make_user):
    make_user()
    response = _post_login(client, PASSWORD, csrf=False)
    assert response.status_code == 400
    with client.application.app_context():
        assert _attempts() == []


def test_login_and_logout(client, make_user, login):
    login(make_user())
    assert client.get("/officer/").status_code == 200
    assert client.get("/officer/logout").status_code == 405  # a link cannot log anybody out
    assert client.get("/officer/").status_code == 200
    assert client.post("/officer/logout", csrf=False).status_code == 400
    assert client.get("/officer/").status_code == 200
    response = client.post("/officer/logout")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/officer/login")
    assert client.get("/officer/").status_code == 302


@pytest.mark.parametrize("target", ["//evil.example", "//evil.example/officer/", "https://evil.example/",
                                    "evil.example", "javascript:alert(1)", "", "/\t/evil.example", "/\\evil.example",
                                    "/\r\nSet-Cookie: x=1", "/ /evil.example", "/\x00/evil.example",
                                    "/\u2028/evil.example"])
def test_next_never_leaves_the_site(client, make_user, target):
    make_user()
    response = _post_login(client, PASSWORD, query_string={"next": target})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert "evil" not in location
    assert "javascript" not in location
    assert location.removeprefix("http://localhost") == "/officer/"


def test_a_header_splitting_next_neither_fails_nor_loses_the_attempt_record(client, make_user):
    make_user()
    response = client.post("/officer/login?next=/%0d%0aX-Evil:%201", data={"username": "operatore",
                                                                           "password": PASSWORD})
    assert response.status_code == 302
    assert response.headers["Location"].removeprefix("http://localhost") == "/officer/"
    assert "X-Evil" not in response.headers
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LoginAttempt)) == 1


def test_next_to_a_local_page_is_followed(client, make_user):
    make_user()
    response = _post_login(client, PASSWORD, query_string={"next": "/officer/?x=1"})
    assert response.headers["Location"].removeprefix("http://localhost") == "/officer/?x=1"


def test_unauthenticated_officer_page_redirects_to_login(client):
    response = client.get("/officer/")
    assert response.status_code == 302
    location = response.headers["Location"].removeprefix("http://localhost")
    assert location.startswith("/officer/login")
    assert "next=" in location
