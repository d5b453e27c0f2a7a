"""Where a login may send the officer next: a path of this site, never another host (no open redirect)."""

import unicodedata
from urllib.parse import urlsplit


def same_site_path(value: str | None) -> str | None:
    """``value`` if it is a plain path of this site (``/officer/positions?status=paid``), else ``None``.

    Browsers drop tabs and newlines from URLs and read ``\\`` as ``/``, so ``/\\t/evil.com`` or ``/\\evil.com`` would
    lead to ``//evil.com``: any control character, space or backslash refuses the value, as does anything with a
    scheme or a host, or a path starting with ``//``.
    """
    if not value or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    return value
