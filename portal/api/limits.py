"""Rate limits per API token (Flask-Limiter; counters in Redis when configured, so they hold across workers)."""

from flask import current_app, g, request
from flask_limiter import Limiter


def _key() -> str:
    token = getattr(g, "api_token", None)
    return f"token:{token.id}" if token is not None else f"addr:{request.remote_addr}"


limiter = Limiter(key_func=_key, default_limits=[], storage_uri=None, strategy="moving-window",
                  key_prefix="paybox-api", headers_enabled=True)


def api_limit() -> str:
    return current_app.config.get("API_RATE_LIMIT", "1200 per minute")
