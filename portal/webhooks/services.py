"""What admins do with webhooks: add a subscriber (its secret shown once), rotate the secret, switch it off, read
the delivery log, send a delivery (or every failed one) again. Plain Python: flush, never commit."""

from __future__ import annotations

import secrets
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload

from portal.ledger.models import Creditor, Position, Service
from portal.ledger.types import utcnow
from portal.webhooks import events as webhook_events
from portal.webhooks.delivery import UnsafeAddress, check_url
from portal.webhooks.models import EVENTS, FAILED, PENDING, WebhookDelivery, WebhookSubscriber

SECRET_PREFIX = "whsec_"  # noqa: S105 - a label, not a secret
URL_MAX = 500


class SubscriberError(ValueError):
    """A subscriber cannot be saved as given; the message says why, in Italian."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def add_subscriber(session: Session, creditor: Creditor, *, url: str, events: list[str] | None = None,
                   service_codes: list[str] | None = None, secret: str | None = None, allow_private: bool = False,
                   created_by_id: int | None = None) -> tuple[WebhookSubscriber, str]:
    """A new active subscriber and its secret (given, or generated: return it to show once).

    :raise SubscriberError: for an unsafe or malformed URL, an unknown event or service, a short secret.
    """
    url = (url or "").strip()
    if len(url) > URL_MAX:
        raise SubscriberError("url", f"L'indirizzo può avere al massimo {URL_MAX} caratteri.")
    try:
        check_url(url, allow_private=allow_private)
    except UnsafeAddress as exc:
        raise SubscriberError("url", str(exc)) from None
    unknown = [e for e in events or () if e not in EVENTS]
    if unknown:
        raise SubscriberError("events", f"Evento sconosciuto: {', '.join(unknown)}. Eventi: {', '.join(EVENTS)}.")
    services = []
    for code in service_codes or ():
        service = session.scalar(sa.select(Service).where(Service.creditor_id == creditor.id, Service.code == code))
        if service is None:
            raise SubscriberError("services", f"Servizio sconosciuto: {code}.")
        services.append(service)
    secret = secret or new_secret()
    if len(secret) < 16:
        raise SubscriberError("secret", "Il segreto deve avere almeno 16 caratteri.")
    subscriber = WebhookSubscriber(creditor_id=creditor.id, url=url, secret=secret, events=list(events or []),
                                   services=services, active=True, created_by_id=created_by_id)
    session.add(subscriber)
    session.flush()
    return subscriber, secret


def rotate_secret(session: Session, subscriber: WebhookSubscriber) -> str:
    """A new secret, used from the next attempt on (pending deliveries too); return it to show once."""
    subscriber.secret = new_secret()
    subscriber.secret_rotated_at = utcnow()
    session.flush()
    return subscriber.secret


def set_active(session: Session, subscriber: WebhookSubscriber, active: bool) -> None:
    subscriber.active = active
    session.flush()


def list_subscribers(session: Session, creditor_id: int) -> list[WebhookSubscriber]:
    return list(session.scalars(sa.select(WebhookSubscriber).where(WebhookSubscriber.creditor_id == creditor_id)
                                .order_by(WebhookSubscriber.id)))


def get_subscriber(session: Session, creditor_id: int, subscriber_id: int) -> WebhookSubscriber | None:
    return session.scalar(sa.select(WebhookSubscriber).where(WebhookSubscriber.id == subscriber_id,
                                                             WebhookSubscriber.creditor_id == creditor_id))


def _visible(creditor_id: int, scope: set[int] | frozenset[int] | None) -> list:
    """Deliveries of the creditor; with ``scope`` (service ids), only those about positions of those services."""
    conditions = [WebhookSubscriber.creditor_id == creditor_id]
    if scope is not None:
        conditions.append(WebhookDelivery.position_id.in_(
            sa.select(Position.id).where(Position.service_id.in_(scope or {-1}))))
    return conditions


def list_deliveries(session: Session, creditor_id: int, *, subscriber_id: int | None = None,
                    position_id: int | None = None, status: str | None = None, limit: int = 200,
                    before_id: int | None = None, scope: set[int] | frozenset[int] | None = None
                    ) -> list[WebhookDelivery]:
    """The delivery log, newest first: per subscriber, per position, by status; ``before_id`` starts the page
    after that delivery (keyset), ``scope`` keeps the deliveries about positions of those services only."""
    query = (sa.select(WebhookDelivery).join(WebhookSubscriber)
             .where(*_visible(creditor_id, scope))
             .options(joinedload(WebhookDelivery.event), joinedload(WebhookDelivery.subscriber)))
    if subscriber_id is not None:
        query = query.where(WebhookDelivery.subscriber_id == subscriber_id)
    if position_id is not None:
        query = query.where(WebhookDelivery.position_id == position_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    return list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


def get_delivery(session: Session, creditor_id: int, delivery_id: int, *,
                 scope: set[int] | frozenset[int] | None = None) -> WebhookDelivery | None:
    """One delivery of the creditor (about a position of ``scope``'s services, when given), or ``None``."""
    return session.scalar(sa.select(WebhookDelivery).join(WebhookSubscriber).where(
        WebhookDelivery.id == delivery_id, *_visible(creditor_id, scope)))


def _again(query) -> dict:
    now = utcnow()
    return {"status": PENDING, "next_attempt_at": now,
            "retry_until": now + timedelta(hours=webhook_events.RETRY_WINDOW_HOURS)}


def send_again(session: Session, delivery: WebhookDelivery) -> None:
    """Queue one delivery again now (delivered or failed alike), with a new day of retries."""
    for name, value in _again(None).items():
        setattr(delivery, name, value)
    webhook_events.outbox.schedule(session, webhook_events.DELIVER_TASK, job_id=webhook_events.DELIVER_JOB_ID)
    session.flush()


def send_failed_again(session: Session, subscriber: WebhookSubscriber) -> int:
    """Queue every failed delivery of a subscriber again; how many."""
    result = session.execute(sa.update(WebhookDelivery).where(
        WebhookDelivery.subscriber_id == subscriber.id, WebhookDelivery.status == FAILED).values(**_again(None)))
    if result.rowcount:
        webhook_events.outbox.schedule(session, webhook_events.DELIVER_TASK, job_id=webhook_events.DELIVER_JOB_ID)
    return result.rowcount
