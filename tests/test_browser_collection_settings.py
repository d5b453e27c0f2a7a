"""Browser: an admin corrects the legal rate and a service's spread and penalty in Impostazioni → Interessi, sanzioni
e solleciti, and the litigation preview's breakdown changes by what the engine says; the pages pass axe-core."""

from datetime import date
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from portal.collections import charges
from portal.collections.models import CollectionPolicy
from portal.collections.settings import SEED_RATES
from portal.extensions import db
from portal.ledger.status import PositionStatus
from tests.accessibility import check_page
from tests.browser_support import sign_in
from tests.test_browser_collections import cents

pytestmark = pytest.mark.browser


def breakdown(page) -> dict[str, int]:
    """The litigation preview's lines for the one position: label → cents."""
    page.goto("/officer/collections/new?kind=litigation")
    expect(page.get_by_test_id("preview-summary")).to_contain_text("1 posizione")
    lines = {}
    for item in page.get_by_test_id("breakdown").locator("li").all():
        label, _, rest = item.inner_text().partition(":")
        lines[label.strip()] = cents(rest)
    return lines


def test_admin_changes_rate_spread_and_penalty_and_the_preview_follows(app, page, make_user, service, legal_rates,
                                                                       overdue_position):
    position = overdue_position(days=400, status=PositionStatus.EXPIRED)
    due, today, code = position.due_date, date.today(), service.code
    db.session.add(CollectionPolicy(service_id=service.id, requires_reminder=False))
    db.session.commit()
    make_user("admin", role="admin")
    db.session.remove()
    rates = [charges.Rate(date(y, 1, 1), Decimal(p)) for y, p, _d in SEED_RATES]

    sign_in(page, "admin")
    before = breakdown(page)
    assert before["Sanzione"] == 6250  # 25% (a due date after 1 September 2024)
    assert before["Interessi"] == charges.interest(25000, due, today, rates).cents

    # --- The legal rate of the current year, corrected in place (htmx) ---------------------------------------------
    page.get_by_role("navigation", name="Menu principale").get_by_role("link", name="Impostazioni").click()
    page.get_by_role("link", name="Gestisci le impostazioni di riscossione").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Interessi, sanzioni e solleciti")
    check_page(page, "settings-collections")
    year = max(r.effective_from for r in rates if r.effective_from <= today)
    table = page.get_by_test_id("legal-rates")
    table.get_by_role("link", name=f"Correggi il tasso dal {year:%d/%m/%Y}").click()
    editing = page.get_by_test_id("rate-editing")
    editing.get_by_label("Tasso annuo (%)").fill("tre")
    editing.get_by_role("button", name="Salva la correzione").click()
    expect(page.locator("#edit-percent-error")).to_contain_text("Tasso non valido")
    expect(page.get_by_test_id("rate-editing").get_by_label("Tasso annuo (%)")).to_have_attribute("aria-invalid",
                                                                                                   "true")
    check_page(page, "settings-collections-editing")
    page.get_by_test_id("rate-editing").get_by_label("Tasso annuo (%)").fill("4,6")
    page.get_by_test_id("rate-editing").get_by_role("button", name="Salva la correzione").click()
    expect(page.get_by_test_id("rates-message")).to_have_text(f"Tasso legale dal {year:%d/%m/%Y} corretto.")
    expect(page.get_by_test_id("rate-editing")).to_have_count(0)
    row = page.get_by_test_id("legal-rates").locator("tbody tr").filter(has_text=f"{year:%d/%m/%Y}").first
    expect(row).to_contain_text("4,6%")
    history = page.get_by_test_id("settings-history")  # swapped out of band with the table
    expect(history.locator("tbody tr").first).to_contain_text("Admin")
    expect(history.locator("tbody tr").first).to_contain_text("Tasso (%)")
    expect(history.locator("tbody tr").first).to_contain_text("4,6")
    check_page(page, "settings-collections-history")
    rates = [charges.Rate(r.effective_from, Decimal("4.6") if r.effective_from == year else r.percent)
             for r in rates]

    # --- The service's spread and penalty: a wrong spread first, then the right one ---------------------------------
    page.get_by_test_id("policies").get_by_role("link", name=f"Modifica {code}").click()
    spread = page.get_by_label("Maggiorazione sul tasso legale (punti, da -3 a +3)")
    spread.fill("3,5")
    expect(page.locator("#interest_spread-error")).to_contain_text("fra -3 e 3")  # checked as typed (htmx)
    page.get_by_role("button", name="Salva").click()
    expect(page.get_by_role("alert").filter(has_text="Controllare i dati inseriti")).to_contain_text(
        "Maggiorazione sul tasso legale")
    expect(page.locator("#interest_spread-error")).to_contain_text("fra -3 e 3")
    expect(spread).to_have_attribute("aria-invalid", "true")
    check_page(page, "settings-collection-policy-error")
    spread.fill("1")
    page.get_by_label("Sanzione per violazioni dal cambio di regime (%)").fill("20")
    page.get_by_role("button", name="Salva").click()
    expect(page.get_by_text(f"Impostazioni di {code} salvate.")).to_be_visible()
    changes = page.get_by_test_id("settings-history")
    expect(changes).to_contain_text("Maggiorazione sul tasso legale")
    expect(changes).to_contain_text("Sanzione per violazioni dal cambio di regime (%)")

    # --- The preview now follows the new figures, to the cent --------------------------------------------------------
    after = breakdown(page)
    assert after["Sanzione"] == 5000  # 20%
    expected = charges.interest(25000, due, today, rates, spread=Decimal(1)).cents
    assert after["Interessi"] == expected
    assert after["Interessi"] > before["Interessi"]
    assert after["Imposta non versata"] == before["Imposta non versata"] == 25000
