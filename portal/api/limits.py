"""Rate limits per API token (Flask-Limiter; counters in Redis when configured, so they hold across workers)."""

from flask import current_app, request
from flask_limiter import Limiter

from portal.accounts.api_tokens import hash_secret


def _key() -> str:
    """The caller's bucket: its token (read from the header: the limit is checked before authentication)."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return "token:" + hash_secret(secret.strip())[:24]
    return f"addr:{request.remote_addr}"


limiter = Limiter(key_func=_key, default_limits=[], storage_uri=None, strategy="moving-window",
                  key_prefix="paybox-api", headers_enabled=True)


def api_limit() -> str:
    return current_app.config.get("API_RATE_LIMIT", "1200 per minute")
