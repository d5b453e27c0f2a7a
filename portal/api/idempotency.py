"""``Idempotency-Key`` for the API's calls that are not idempotent by themselves (cancel, import confirm).

The first response to a key is stored with a hash of the request; the same key with the same request replays it
(nothing is done twice), the same key with another request is refused. Keys are per token and kept for
:data:`KEEP_DAYS` days (the draft standard "The Idempotency-Key HTTP Header Field" describes this behaviour).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal.extensions import db
from portal.ledger.types import UTCDateTime, utcnow

KEY_MAX = 255
KEEP_DAYS = 7


class IdempotencyKey(db.Model):
    """The stored answer to one key of one token."""

    __tablename__ = "api_idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(sa.ForeignKey("api_tokens.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(KEY_MAX))
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[int] = mapped_column()
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("token_id", "key"),)


@dataclass(frozen=True)
class Stored:
    status: int
    body: str
    same_request: bool


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\n".join([method.encode(), path.encode(), body])).hexdigest()


def lookup(session: Session, token_id: int, key: str, digest: str) -> Stored | None:
    """The answer stored for ``key`` (and whether it was for the same request), or ``None``."""
    fresh = IdempotencyKey.created_at > utcnow() - timedelta(days=KEEP_DAYS)
    row = session.scalar(sa.select(IdempotencyKey).where(IdempotencyKey.token_id == token_id,
                                                         IdempotencyKey.key == key, fresh))
    if row is None:
        return None
    return Stored(row.status, row.body, row.request_hash == digest)


def remember(session: Session, token_id: int, key: str, digest: str, status: int, body: str) -> None:
    """Store the answer in the caller's transaction (the change and its answer commit together)."""
    session.execute(sa.delete(IdempotencyKey).where(IdempotencyKey.token_id == token_id, IdempotencyKey.key == key))
    session.add(IdempotencyKey(token_id=token_id, key=key, request_hash=digest, status=status, body=body))
