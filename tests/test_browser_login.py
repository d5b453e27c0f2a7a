"""Browser: an officer logs in with the real login page and reaches the dashboard."""

import pytest
from playwright.sync_api import expect

from tests.browser_support import sign_in

pytestmark = pytest.mark.browser


def test_officer_logs_in_and_sees_dashboard(page, make_user):
    make_user("admin", role="admin")
    sign_in(page, "admin")
    expect(page.get_by_role("heading", name="Cruscotto")).to_be_visible()


def test_wrong_password_shows_italian_message(page, make_user):
    make_user("admin", role="admin")
    page.goto("/officer/login")
    page.get_by_label("Nome utente").fill("admin")
    page.get_by_label("Password").fill("sbagliata")
    page.get_by_role("button", name="Accedi").click()
    expect(page.get_by_text("Nome utente o password non corretti.")).to_be_visible()
