"""Browser: the back-office forms at 1366 px. No fieldset legend overlaps the floating label of its first field,
the error summary follows the live check, and screenshots are kept for a person to look at."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser_support import sign_in

pytestmark = pytest.mark.browser

PAGES = {"new-position": "/officer/positions/new", "creditor": "/officer/settings/creditor"}


def screenshot_dir(tmp_path: Path) -> Path:
    """``PAYBOX_SCREENSHOTS`` when set (to keep them), else the test's temporary directory."""
    target = Path(os.environ.get("PAYBOX_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def overlaps(page) -> list[str]:
    """Legends whose text reaches into the text of a label of their fieldset (what covered the floating labels)."""
    return page.evaluate("""() => {
        const found = [];
        for (const fieldset of document.querySelectorAll('main fieldset')) {
            const legend = fieldset.querySelector(':scope > legend');
            if (!legend || legend.offsetParent === null) continue;
            // The legend's text, not its box (which may carry padding below the words on purpose).
            const range = document.createRange();
            range.selectNodeContents(legend);
            const l = range.getBoundingClientRect();
            for (const label of fieldset.querySelectorAll('label')) {
                if (label.offsetParent === null || label.classList.contains('visually-hidden')) continue;
                const words = document.createRange();
                words.selectNodeContents(label);
                const b = words.getBoundingClientRect();
                const apart = b.bottom <= l.top || b.top >= l.bottom || b.right <= l.left || b.left >= l.right;
                if (!apart) found.push(`${legend.textContent.trim()} / ${label.textContent.trim()}`);
            }
        }
        return found;
    }""")


@pytest.mark.parametrize("name", sorted(PAGES))
def test_legends_never_cover_labels_at_1366(page, make_user, service, name, tmp_path):
    make_user("amministratore", role="admin")
    page.set_viewport_size({"width": 1366, "height": 900})
    sign_in(page, "amministratore")
    page.goto(PAGES[name])
    if name == "new-position":
        page.locator("label[for=mode-2]").click()  # every section of the form shown
    page.screenshot(path=str(screenshot_dir(tmp_path) / f"{name}-1366.png"), full_page=True)
    assert overlaps(page) == []


def test_the_error_summary_follows_the_live_check(page, make_user, service):
    make_user("operatore", role="operator")
    page.set_viewport_size({"width": 1366, "height": 900})
    sign_in(page, "operatore")
    page.goto("/officer/positions/new")
    page.get_by_role("button", name="Crea posizione").click()
    summary = page.locator("#form-errors")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("Codice fiscale")
    page.locator("#debtor_fiscal_code").fill("RSSMRA80A01H501U")
    page.locator("#debtor_fiscal_code").blur()
    expect(page.locator("#debtor_fiscal_code-error")).to_have_text("")
    # The fixed field leaves the summary; the others stay.
    expect(summary.locator("li", has_text="Codice fiscale")).to_have_count(0)
    expect(summary).to_contain_text("Causale")
