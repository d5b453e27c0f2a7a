"""Sending due webhook deliveries: claimed from the database with a lease, signed, posted, recorded.

Every attempt is driven by the ``webhook_deliveries`` rows, never by memory: a worker claims a batch (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL, so workers never take the same row), moves their ``next_attempt_at`` a lease ahead and
commits before calling anyone. A worker killed mid-call leaves rows that come due again when the lease ends: each
event arrives at least once, and its ``PayBox-Event-Id`` lets the receiver drop a repeat. Only the oldest pending
delivery of a position (per subscriber) is claimable, so a subscriber hears of a position's events in order.

A failure (timeout, connection refused, any answer but 2xx, a redirect, which is never followed) is retried with
exponential backoff and jitter until ``retry_until`` (a day), then the delivery is "failed" until someone sends it
again. Outbound calls refuse private, loopback and link-local addresses unless explicitly allowed (SSRF).

Signature (the scheme Stripe uses)::

    PayBox-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the subscriber's secret>
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from portal.ledger.locks import take_write_lock
from portal.ledger.types import utcnow
from portal.webhooks.models import DELIVERED, FAILED, PENDING, WebhookDelivery, WebhookEvent, WebhookSubscriber

log = logging.getLogger(__name__)

USER_AGENT = "PayBox-Webhooks/1"
EXCERPT = 500


@dataclass(frozen=True)
class DeliverySettings:
    """How deliveries go out (``WEBHOOKS_*`` settings)."""

    timeout: float = 5.0
    allow_private: bool = False
    lease_seconds: int = 60
    batch: int = 100
    threads: int = 8
    base_delay: float = 10.0
    max_delay: float = 3600.0

    @classmethod
    def from_config(cls, config) -> DeliverySettings:
        return cls(timeout=float(config.get("WEBHOOKS_TIMEOUT_SECONDS") or 5.0),
                   allow_private=bool(config.get("WEBHOOKS_ALLOW_PRIVATE")),
                   lease_seconds=int(config.get("WEBHOOKS_LEASE_SECONDS") or 60),
                   batch=int(config.get("WEBHOOKS_BATCH") or 100),
                   threads=int(config.get("WEBHOOKS_THREADS") or 8))


def sign(secret: str, timestamp: int, body: str) -> str:
    """The ``PayBox-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: str, *, tolerance: int = 300, now: float | None = None) -> bool:
    """Check a ``PayBox-Signature`` header as a receiver does (what the README shows in ten lines)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    t = int(parts.get("t", "0"))
    expected = hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    fresh = abs((now or time.time()) - t) <= tolerance
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))


class UnsafeAddress(ValueError):
    """The URL points at an address outbound calls may not reach (private, loopback, link-local, ...)."""


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse what is not an http(s) URL, and (unless allowed) hosts that resolve to a non-public address.

    :raise UnsafeAddress: with an Italian message.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeAddress("L'indirizzo deve iniziare con https:// (o http://) e indicare un host.")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UnsafeAddress(f"L'host {parts.hostname} non si risolve.") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise UnsafeAddress(f"L'host {parts.hostname} punta a un indirizzo non pubblico ({address}): "
                                "non consentito.")


@dataclass
class Attempt:
    """The outcome of one call."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    excerpt: str | None = None


@dataclass(frozen=True)
class Outgoing:
    """What one call sends: read from the rows before the calls, so no ORM object crosses the threads."""

    delivery_id: int
    url: str
    secret: str
    event_id: str
    name: str
    body: str


def post(http: requests.Session, out: Outgoing, settings: DeliverySettings) -> Attempt:
    """One signed POST of an event's body; never raises."""
    url = out.url
    try:
        check_url(url, allow_private=settings.allow_private)
    except UnsafeAddress as exc:
        return Attempt(ok=False, error=str(exc))
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "PayBox-Event-Id": out.event_id,
               "PayBox-Event": out.name, "PayBox-Signature": sign(out.secret, timestamp, out.body)}
    try:
        response = http.post(url, data=out.body.encode(), headers=headers, timeout=settings.timeout,
                             allow_redirects=False)
    except requests.Timeout:
        return Attempt(ok=False, error=f"Nessuna risposta entro {settings.timeout:g} secondi.")
    except requests.RequestException as exc:
        return Attempt(ok=False, error=f"Connessione non riuscita: {type(exc).__name__}.")
    excerpt = response.text[:EXCERPT] if response.content else None
    if 200 <= response.status_code < 300:
        return Attempt(ok=True, status_code=response.status_code, excerpt=excerpt)
    if 300 <= response.status_code < 400:
        return Attempt(ok=False, status_code=response.status_code, excerpt=excerpt,
                       error="Reindirizzamento non seguito: configurare l'indirizzo finale.")
    return Attempt(ok=False, status_code=response.status_code, excerpt=excerpt,
                   error=f"Il ricevente ha risposto {response.status_code}.")


def backoff(attempts: int, settings: DeliverySettings, rng: random.Random = random) -> timedelta:  # noqa: S311
    """Exponential, with ±50 % jitter so a receiver back from an outage is not hit by every retry at once."""
    delay = min(settings.base_delay * 2 ** max(attempts - 1, 0), settings.max_delay)
    return timedelta(seconds=delay * rng.uniform(0.5, 1.5))  # noqa: S311 - jitter, not security


def claim(session: Session, settings: DeliverySettings, *, now: datetime | None = None,
          delivery_ids: list[int] | None = None) -> list[int]:
    """Take a batch of due deliveries for this worker (lease, attempt counted) and commit; their ids."""
    now = now or utcnow()
    take_write_lock(session)  # SQLite: one claimer at a time (PostgreSQL skips the rows others locked)
    older = aliased(WebhookDelivery)
    earlier = sa.select(older.id).where(older.subscriber_id == WebhookDelivery.subscriber_id,
                                        older.position_id == WebhookDelivery.position_id,
                                        older.id < WebhookDelivery.id, older.status == PENDING)
    query = (sa.select(WebhookDelivery.id)
             .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now, ~earlier.exists())
             .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(settings.batch))
    if delivery_ids is not None:
        query = query.where(WebhookDelivery.id.in_(delivery_ids))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
    ids = list(session.scalars(query))
    if ids:
        session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(
            next_attempt_at=now + timedelta(seconds=settings.lease_seconds),
            attempts=WebhookDelivery.attempts + 1, last_attempt_at=now))
    session.commit()
    return ids


def _record(session: Session, delivery_id: int, attempt: Attempt, settings: DeliverySettings) -> str:
    delivery = session.get(WebhookDelivery, delivery_id)
    now = utcnow()
    delivery.last_status_code = attempt.status_code
    delivery.last_error = (attempt.error or None) and attempt.error[:500]
    delivery.response_excerpt = attempt.excerpt
    if attempt.ok:
        delivery.status, delivery.delivered_at = DELIVERED, now
    else:
        retry_at = now + backoff(delivery.attempts, settings)
        if retry_at > delivery.retry_until:
            delivery.status = FAILED
        else:
            delivery.next_attempt_at = retry_at
    return delivery.status


def deliver_due(session: Session, settings: DeliverySettings, *, max_seconds: float = 50.0,
                http: requests.Session | None = None) -> dict[str, int]:
    """Send due deliveries batch after batch until none is due or ``max_seconds`` passed; counts by outcome."""
    counts = {DELIVERED: 0, PENDING: 0, FAILED: 0}
    started = time.monotonic()
    http = http or requests.Session()
    with ThreadPoolExecutor(max_workers=settings.threads) as pool:
        while time.monotonic() - started < max_seconds:
            ids = claim(session, settings)
            if not ids:
                break
            rows = [Outgoing(*row) for row in session.execute(
                sa.select(WebhookDelivery.id, WebhookSubscriber.url, WebhookSubscriber.secret, WebhookEvent.event_id,
                          WebhookEvent.name, WebhookEvent.body)
                .join(WebhookSubscriber, WebhookSubscriber.id == WebhookDelivery.subscriber_id)
                .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.id.in_(ids)).order_by(WebhookDelivery.id))]
            session.commit()
            attempts = list(pool.map(lambda out: (out.delivery_id, post(http, out, settings)), rows))
            for delivery_id, attempt in attempts:
                counts[_record(session, delivery_id, attempt, settings)] += 1
            session.commit()
    return counts
