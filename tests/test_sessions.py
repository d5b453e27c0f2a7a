"""Server-side ends of a session: logout, a new password and disabling a user end every session of that user, and
an officer idle for SESSION_IDLE_MINUTES is logged out (polling components do not count as activity)."""

import time

import pytest

from portal.accounts import services as accounts
from portal.extensions import db
from tests.conftest import PASSWORD, CSRFClient


@pytest.fixture
def operator(make_user):
    return make_user("operatore", role="operator")


def signed_in(app, user) -> CSRFClient:
    client = app.test_client()
    response = client.post("/officer/login", data={"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    return client


def copy_of(app, client) -> CSRFClient:
    """Another browser holding a copy of ``client``'s session cookie (as an attacker who captured it would)."""
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value, domain="localhost")
    return other


def opens_positions(client) -> bool:
    from flask import g, has_app_context

    if has_app_context():
        # The test's own app context (and session) is shared by the client's requests: drop what Flask-Login and
        # the session cached in it, as every real request (its own app context) starts without them.
        g.pop("_login_user", None)
        db.session.expire_all()
    return client.get("/officer/positions").status_code == 200


def test_logout_ends_the_session_even_for_a_copied_cookie(app, operator):
    browser = signed_in(app, operator)
    stolen = copy_of(app, browser)
    assert opens_positions(stolen)
    assert browser.post("/officer/logout").status_code == 302
    assert not opens_positions(browser)
    assert not opens_positions(stolen)


def changed(app, user_id: int, change) -> None:
    """Apply ``change(user)`` in its own app context and transaction (as another request would)."""
    from portal.accounts.models import User

    with app.app_context():
        change(db.session.get(User, user_id))
        db.session.commit()
        db.session.remove()


def test_a_new_password_ends_every_session(app, operator):
    laptop, phone = signed_in(app, operator), signed_in(app, operator)
    changed(app, operator.id, lambda user: accounts.set_password(db.session, user, "una-password-nuova-123"))
    assert not opens_positions(laptop)
    assert not opens_positions(phone)


def test_disabling_a_user_ends_their_sessions(app, operator, make_user):
    from portal.accounts.models import User

    admin_id = make_user("capo", role="admin").id
    browser = signed_in(app, operator)

    def active(flag):
        return lambda user: accounts.update_user(db.session, user, by=db.session.get(User, admin_id),
                                                 full_name=user.full_name, email=None, role=user.role,
                                                 services=None, active=flag)

    changed(app, operator.id, active(False))
    assert not opens_positions(browser)
    # Re-enabling does not bring the old cookie back to life.
    changed(app, operator.id, active(True))
    assert not opens_positions(browser)


@pytest.mark.parametrize("cookie", ["1", "abc:1", "1:", ":1", "99999999999999999999999:1", "1:2:3"])
def test_malformed_or_old_session_ids_open_nothing(ctx, operator, cookie):
    assert accounts.user_for_session(db.session, cookie) is None
    assert accounts.user_for_session(db.session, operator.get_id()) == operator


def test_an_idle_officer_is_logged_out_and_polling_is_not_activity(app, ctx, operator, monkeypatch):
    monkeypatch.setitem(app.config, "SESSION_IDLE_MINUTES", 30)
    browser = signed_in(app, operator)
    with browser.session_transaction() as session:
        session["seen"] = time.time() - 29 * 60
    # A poll 29 minutes later keeps nothing alive...
    assert browser.get("/officer/jobs", headers={"X-Paybox-Poll": "1", "HX-Request": "true"}).status_code == 403
    with browser.session_transaction() as session:
        assert session["seen"] < time.time() - 28 * 60
        session["seen"] = time.time() - 31 * 60
    # ...and past the limit the next request lands on the login page, with the page asked for as "next".
    response = browser.get("/officer/positions?status=paid")
    assert response.status_code == 302
    assert "/officer/login?next=/officer/positions?status%3Dpaid" in response.headers["Location"]
    assert not opens_positions(browser)
    hx = signed_in(app, operator)
    with hx.session_transaction() as session:
        session["seen"] = time.time() - 31 * 60
    answer = hx.get("/officer/positions", headers={"HX-Request": "true"})
    assert answer.status_code == 204
    assert answer.headers["HX-Redirect"].startswith("/officer/login")


def test_activity_keeps_the_session(app, ctx, operator, monkeypatch):
    monkeypatch.setitem(app.config, "SESSION_IDLE_MINUTES", 30)
    browser = signed_in(app, operator)
    with browser.session_transaction() as session:
        session["seen"] = time.time() - 20 * 60
    assert opens_positions(browser)
    with browser.session_transaction() as session:
        assert session["seen"] > time.time() - 60
