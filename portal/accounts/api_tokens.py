"""API tokens of the Comune's other systems: shown once, stored as a SHA-256 hash, scoped, expiring, revocable.

A token is ``pbx_`` and 43 random URL-safe characters (256 bits): guessing one is hopeless, so a fast hash is the
right one (as GitHub and GitLab store theirs) and a lookup is one indexed equality. The first characters are kept
in clear (``prefix``) so an officer can tell tokens apart in the list and in logs.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from portal.extensions import db
from portal.ledger.models import Creditor, Service
from portal.ledger.types import UTCDateTime, utcnow

PREFIX = "pbx_"
SCOPES = ("read", "write")
SCOPE_LABELS = {"read": "Sola lettura", "write": "Lettura e scrittura"}
NAME_MAX = 30
#: How often ``last_used_at`` is written at most (a busy system calls many times a second).
LAST_USED_RESOLUTION = timedelta(minutes=1)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

api_token_services = sa.Table(
    "api_token_services",
    db.metadata,
    sa.Column("token_id", sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("service_id", sa.ForeignKey("services.id", ondelete="CASCADE"), primary_key=True),
)


class ApiToken(db.Model):
    """One system's access to the REST API of one creditor."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete="RESTRICT"), index=True)
    #: The system's name: the actor on the timeline (``api:<name>``) and the source of its positions.
    name: Mapped[str] = mapped_column(sa.String(NAME_MAX))
    prefix: Mapped[str] = mapped_column(sa.String(12))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    scope: Mapped[str] = mapped_column(sa.String(5))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    creditor: Mapped[Creditor] = relationship()
    #: Services the token may touch; empty means every service of the creditor.
    services: Mapped[list[Service]] = relationship(secondary=api_token_services, order_by=Service.code)

    __table_args__ = (
        sa.UniqueConstraint("creditor_id", "name"),
        sa.CheckConstraint("scope IN ('read', 'write')", name="scope_known"),
    )

    @property
    def actor(self) -> str:
        return f"api:{self.name}"

    @property
    def source(self) -> str:
        """The ``source`` of the positions it creates: external ids are unique per system."""
        return f"api:{self.name}"

    @property
    def can_write(self) -> bool:
        return self.scope == "write"

    def service_scope(self) -> set[int] | None:
        """Ids of the services this token may touch, or ``None`` for all of them."""
        return {s.id for s in self.services} or None

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"


class TokenError(ValueError):
    """A token cannot be created as asked; the message is Italian and names the field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``secret`` exists only here, to be shown once."""

    token: ApiToken
    secret: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(session: Session, creditor: Creditor, *, name: str, scope: str, services: list[Service] = (),
                 expires_at: datetime | None = None, created_by_id: int | None = None) -> IssuedToken:
    """A new token for ``creditor``; the clear secret is returned once and never stored."""
    name = (name or "").strip().lower()
    if not _NAME.match(name) or len(name) > NAME_MAX:
        raise TokenError("name", f"Il nome è di 1–{NAME_MAX} caratteri: lettere minuscole, cifre, punto, trattino "
                                 "o trattino basso (es. «tari-software»).")
    if scope not in SCOPES:
        raise TokenError("scope", "L'ambito è «read» (sola lettura) o «write» (lettura e scrittura).")
    if any(s.creditor_id != creditor.id for s in services):
        raise TokenError("services", "Servizio sconosciuto.")
    if expires_at is not None and expires_at <= utcnow():
        raise TokenError("expires_at", "La scadenza deve essere nel futuro.")
    taken = session.scalar(sa.select(ApiToken.id).where(ApiToken.creditor_id == creditor.id, ApiToken.name == name))
    if taken is not None:
        raise TokenError("name", "Esiste già un token con questo nome: revocarlo o sceglierne un altro.")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(creditor_id=creditor.id, name=name, prefix=secret[:12], token_hash=hash_secret(secret),
                     scope=scope, services=list(services), expires_at=expires_at, created_by_id=created_by_id)
    session.add(token)
    session.flush()
    return IssuedToken(token, secret)


def authenticate(session: Session, secret: str | None, *, now: datetime | None = None) -> ApiToken | None:
    """The active token with this secret (``None`` for an unknown, expired or revoked one); notes its use."""
    if not secret or not secret.startswith(PREFIX) or len(secret) > 100:
        return None
    token = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_secret(secret)))
    now = now or utcnow()
    if token is None or token.state(now) != "active":
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
    return token


def revoke(session: Session, token: ApiToken, *, by_id: int | None = None) -> None:
    """End a token now; calls made with it are refused from the next request on."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        token.revoked_by_id = by_id


def tokens_of(session: Session, creditor_id: int) -> list[ApiToken]:
    return list(session.scalars(sa.select(ApiToken).where(ApiToken.creditor_id == creditor_id)
                                .order_by(ApiToken.revoked_at.is_not(None), ApiToken.name)))
