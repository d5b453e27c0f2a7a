"""Fixtures for browser tests: Pay Box served on a free local port, and Debian's chromium driven by Playwright.

A missing chromium skips these tests, saying so, unless ``PAYBOX_REQUIRE_BROWSER=1`` (set by CI) makes it a failure.
Playwright never downloads a browser here: it launches ``/usr/bin/chromium``.
"""


import pytest

from tests.conftest import PASSWORD
from tests.prerequisites import found, require
from tests.servers import serving

#: Flags for a root, offline, headless run (no sandbox inside containers, no calls to Google's services).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def chromium_path():
    require("chromium")
    return found("chromium")


@pytest.fixture(scope="session")
def live_server(app):
    """Serve the test app over HTTP in a background thread; returns its base URL."""
    with serving(app) as base:
        yield base


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server, locale="it-IT", timezone_id="Europe/Rome")
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def sign_in(page, username: str, password: str = PASSWORD) -> None:
    """Log in through the back-office login form, as a person does, and land on the dashboard."""
    page.goto("/officer/login")
    page.get_by_label("Nome utente").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Accedi").click()
    page.wait_for_url("**/officer/")
