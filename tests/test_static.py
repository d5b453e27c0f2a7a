"""Static files: pages link fingerprinted copies, served gzipped and cached for a year; the rest for a day."""

import json
import re

import pytest

from portal.config import ROOT

MANIFEST = ROOT / "static" / "cache_manifest.json"


@pytest.fixture
def manifest():
    if not MANIFEST.exists():
        pytest.skip("static files not fingerprinted yet: run `make assets` (make test does)")
    return json.loads(MANIFEST.read_text())


def test_pages_link_fingerprinted_files_and_a_favicon(client, manifest):
    html = client.get("/officer/login").get_data(as_text=True)
    css = re.search(r'href="(/static/vendor/bootstrap-italia/css/bootstrap-italia\.min-[0-9a-f]{32}\.css)"', html)
    assert css, "the stylesheet is linked by its fingerprinted name"
    assert f'/static/{manifest["css/paybox.css"]}' in html
    assert f'rel="icon" type="image/svg+xml" href="/static/{manifest["favicon.svg"]}"' in html
    assert re.search(r'src="/static/vendor/htmx/htmx\.min-[0-9a-f]{32}\.js"', html)


def test_fingerprinted_files_are_gzipped_and_immutable(client, manifest):
    url = "/static/" + manifest["vendor/bootstrap-italia/css/bootstrap-italia.min.css"]
    with client.get(url, headers={"Accept-Encoding": "gzip"}) as response:
        assert response.status_code == 200
        assert response.headers["Content-Encoding"] == "gzip"
        assert "immutable" in response.headers["Cache-Control"]
        assert int(re.search(r"max-age=(\d+)", response.headers["Cache-Control"]).group(1)) >= 365 * 24 * 3600
        zipped = len(response.data)
    with client.get(url) as plain:
        assert "Content-Encoding" not in plain.headers
        assert len(plain.data) > zipped * 3


def test_files_without_a_fingerprint_are_cached_for_a_day(client, manifest):
    with client.get("/static/css/paybox.css") as response:
        assert response.status_code == 200
        assert "immutable" not in response.headers["Cache-Control"]
        assert "max-age=86400" in response.headers["Cache-Control"]
