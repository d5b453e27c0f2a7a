"""The webhook tables: who wants which events, each event once, and one delivery per (event, subscriber).

A delivery row *is* the outbox of the outbound call: written in the transaction of the change, claimed by a
worker with a lease (``next_attempt_at`` moved ahead before the call), so a worker killed mid-call leaves a row
another worker claims again once the lease ends: at least once, never lost. Receivers deduplicate on the event id.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.ledger.models import Creditor, Service
from portal.ledger.types import UTCDateTime, utcnow

BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")

#: Every event a subscriber may ask for.
EVENTS = {
    "position.paid": "Posizione pagata",
    "position.partially_paid": "Posizione pagata in parte",
    "position.reported": "Posizione rendicontata",
    "position.cancelled": "Posizione annullata",
    "position.reissued": "Posizione sostituita da un nuovo atto",
    "position.payment_reversed": "Pagamento fuori pagoPA annullato",
    "import.finished": "Importazione conclusa",
}

#: ``WebhookDelivery.status``.
PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

webhook_subscriber_services = sa.Table(
    "webhook_subscriber_services",
    db.metadata,
    sa.Column("subscriber_id", sa.ForeignKey("webhook_subscribers.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("service_id", sa.ForeignKey("services.id", ondelete="CASCADE"), primary_key=True),
)


class WebhookSubscriber(db.Model):
    """A system of the Comune that receives signed webhooks at one URL."""

    __tablename__ = "webhook_subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete="RESTRICT"), index=True)
    url: Mapped[str] = mapped_column(sa.String(500))
    #: The signing key, shown once when created or rotated. Kept readable (HMAC needs it), never displayed again.
    secret: Mapped[str] = mapped_column(sa.String(100))
    #: The events it wants (empty: all of them).
    events: Mapped[list] = mapped_column(sa.JSON, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    creditor: Mapped[Creditor] = relationship()
    #: Services whose positions it hears of; empty means every service.
    services: Mapped[list[Service]] = relationship(secondary=webhook_subscriber_services, order_by=Service.code)

    def wants(self, event: str, service_id: int | None) -> bool:
        """Whether this subscriber gets ``event`` about a position of ``service_id`` (``None``: not a position's)."""
        if not self.active or (self.events and event not in self.events):
            return False
        return not self.services or service_id is None or any(s.id == service_id for s in self.services)


class WebhookEvent(db.Model):
    """One thing that happened, with the exact body every subscriber receives (its id is ``PayBox-Event-Id``)."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(sa.String(40))
    position_id: Mapped[int | None] = mapped_column(sa.ForeignKey("positions.id", ondelete="RESTRICT"), index=True)
    #: The JSON body, serialised once: the signature covers these exact bytes on every attempt.
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(db.Model):
    """One event to one subscriber: its attempts, last answer, and when to try again."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_events.id", ondelete="RESTRICT"), index=True)
    subscriber_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_subscribers.id", ondelete="RESTRICT"))
    #: Denormalised from the event: deliveries of one position go out in order, per subscriber.
    position_id: Mapped[int | None] = mapped_column(BIGINT)
    status: Mapped[str] = mapped_column(sa.String(10), default=PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: After this, a failing delivery is given up ("failed"); "send again" moves it forward.
    retry_until: Mapped[datetime] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    response_excerpt: Mapped[str | None] = mapped_column(sa.String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    event: Mapped[WebhookEvent] = relationship()
    subscriber: Mapped[WebhookSubscriber] = relationship()

    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status_known"),
        sa.UniqueConstraint("event_id", "subscriber_id"),
        # The workers' claim, on pending rows only (a few among millions delivered): due ones in the claim's very
        # order, so a claim reads its batch and stops however long the backlog; and the "no older pending delivery
        # of this position" probe. Stale statistics that think "pending" is rare cannot turn either quadratic.
        sa.Index("ix_webhook_deliveries_due", "next_attempt_at", "id",
                 postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'")),
        sa.Index("ix_webhook_deliveries_order", "subscriber_id", "position_id", "id",
                 postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'")),
        sa.Index("ix_webhook_deliveries_subscriber", "subscriber_id", "id"),
    )
