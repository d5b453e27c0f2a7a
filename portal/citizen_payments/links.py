"""Signed, expiring links to a citizen's receipt, for the e-mail: whoever holds the link sees that receipt only,
and only until it expires; nothing can be reached by changing a number in it."""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeTimedSerializer

#: How long the link in the e-mail works.
LINK_MAX_AGE_SECONDS = 30 * 24 * 3600
_SALT = "paybox.citizen-receipt"


def sign(secret_key: str, token: str) -> str:
    """The signed form of a payment token, to put in a link."""
    return URLSafeTimedSerializer(secret_key, salt=_SALT).dumps(token)


def verify(secret_key: str, signed: str, *, max_age: int = LINK_MAX_AGE_SECONDS) -> str | None:
    """The payment token in a signed link, or ``None`` when it was altered or has expired."""
    if not signed or len(signed) > 300:
        return None
    try:
        return URLSafeTimedSerializer(secret_key, salt=_SALT).loads(signed, max_age=max_age)
    except BadSignature:  # SignatureExpired is a BadSignature
        return None
