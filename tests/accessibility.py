"""Accessibility checks for browser tests: axe-core (from npm, ``node_modules/axe-core``) injected into the page,
and screenshots at 360 px and 1366 px with a check that nothing overflows the narrow screen.

axe-core comes with ``make assets`` (``npm ci``); without it these checks skip, saying so, unless
``PAYBOX_REQUIRE_BROWSER=1`` (CI) makes that a failure. Screenshots go to ``PAYBOX_SCREENSHOTS_DIR`` (default
``instance/screenshots``) for a person to look at.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(os.environ.get("PAYBOX_SCREENSHOTS_DIR") or ROOT / "instance" / "screenshots")
#: The WCAG 2.1 A/AA rules (and axe's best practices would add noise about Bootstrap Italia's own markup).
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
WIDTHS = (1366, 360)


def axe_source() -> str:
    if not AXE.exists():
        message = f"axe-core is missing ({AXE}): run `make assets` (npm ci)"
        if os.environ.get("PAYBOX_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return AXE.read_text(encoding="utf-8")


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line each."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=axe_source())
    result = page.evaluate("async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}, "
                           "resultTypes: ['violations']})", TAGS)
    return [f"{v['id']} ({v['impact']}): {v['help']} — " + "; ".join(n["target"][0] for n in v["nodes"][:3])
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def check_page(page, name: str) -> None:
    """No serious/critical axe violation, at 1366 px and at 360 px; a full-page screenshot of each width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    try:
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            assert serious_violations(page) == [], f"{name} at {width} px"
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            if overflow > 1:
                culprit = page.evaluate("""() => { let worst = null;
                    for (const el of document.querySelectorAll('body *')) {
                      const r = el.getBoundingClientRect();
                      if (r.right > window.innerWidth + 1 && (!worst || r.right > worst.r)) {
                        const text = (el.textContent || '').trim().slice(0, 40);
                        worst = {r: r.right, d: el.tagName + '.' + el.className + ' ' + text};
                      } }
                    return worst && worst.d; }""")
                raise AssertionError(f"{name} at {width} px scrolls sideways by {overflow} px ({culprit})")
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    finally:
        page.set_viewport_size(size)
