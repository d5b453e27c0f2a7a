"""Protection of the public forms: rate limits per client address and per fiscal code, and a honeypot field that
people never see and simple bots fill in (no third-party CAPTCHA)."""

from __future__ import annotations

from flask import abort, current_app, request
from flask_babel import gettext as _

from portal import ratelimit, timing
from portal.extensions import db

#: The honeypot input: hidden from people (and from screen readers), left empty by them.
HONEYPOT = "sito_web"


def client_address() -> str:
    """The client's address (behind a proxy, ProxyFix makes it the real one)."""
    return (request.remote_addr or "unknown")[:45]


def limit(action: str, *, fiscal_code: str | None = None) -> None:
    """Count one ``action`` for this client (and this fiscal code); 429 past the configured limits."""
    config = current_app.config
    limits = [(f"{action}:ip:{client_address()}", int(config.get("CITIZEN_RATE_PER_IP_PER_MINUTE") or 30), 60)]
    if fiscal_code:
        limits.append((f"{action}:cf:{ratelimit.hashed(fiscal_code.upper())}",
                       int(config.get("CITIZEN_RATE_PER_FISCAL_CODE_PER_HOUR") or 20), 3600))
    with timing.phase("ratelimit"):
        allowed = ratelimit.hit_all(db.engine, limits)
    if not allowed:
        abort(429, description=_("Troppe richieste in poco tempo: attenda qualche minuto e riprovi."))


def honeypot_filled(form) -> bool:
    """Whether the hidden field was filled in (a bot): the request is refused without saying why."""
    return bool((form.get(HONEYPOT) or "").strip())
