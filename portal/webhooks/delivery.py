"""Sending due webhook deliveries: claimed from the database with a lease, signed, posted, recorded.

Every attempt is driven by the ``webhook_deliveries`` rows, never by memory: a worker claims a batch (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL, so workers never take the same row), moves their ``next_attempt_at`` a lease ahead and
commits before calling anyone. A worker killed mid-call leaves rows that come due again when the lease ends: each
event arrives at least once, and its ``PayBox-Event-Id`` lets the receiver drop a repeat. Only the oldest pending
delivery of a position (per subscriber) is claimable, so a subscriber hears of a position's events in order.

A delivery job does not stop at the first empty claim: it keeps looking for ``linger`` seconds (a steady stream of
payments is served by one job instead of a new work horse per commit), and a claim that comes back full (a
backlog) asks for the next *lane*, a second delivery job under its own id, so another worker joins in; the lanes
share the work through the row locks, and the per-position rule above holds across them. The results of a batch
are written in one executemany, not one round trip per delivery.

A run ends for lack of work only when its *presence* (the job layer's bell, :mod:`portal.jobs.lingering`) says no
change asked for a run since its last look, atomically with leaving: a delivery committed just as the run ends is
either seen by one more look or finds the run gone and gets a new one, never the next periodic run. A run stopped
by its time limit while it still found work asks for a successor.

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
from functools import cache
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from portal import outbox
from portal.ledger.locks import take_write_lock
from portal.ledger.types import utcnow
from portal.webhooks.events import DELIVER_JOB_ID, DELIVER_TASK
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
    #: Seconds a delivery run keeps looking for new due deliveries once none is left, and how often it looks.
    linger: float = 0.0
    poll_interval: float = 0.1
    #: Delivery jobs that may run at once (lane 0 asks for lane 1 when its claim comes back full, and so on).
    lanes: int = 1

    @classmethod
    def from_config(cls, config) -> DeliverySettings:
        return cls(timeout=float(config.get("WEBHOOKS_TIMEOUT_SECONDS") or 5.0),
                   allow_private=bool(config.get("WEBHOOKS_ALLOW_PRIVATE")),
                   lease_seconds=int(config.get("WEBHOOKS_LEASE_SECONDS") or 60),
                   batch=int(config.get("WEBHOOKS_BATCH") or 100),
                   threads=int(config.get("WEBHOOKS_THREADS") or 8),
                   linger=float(config.get("WEBHOOKS_LINGER_SECONDS") or 0.0),
                   lanes=max(1, int(config.get("WEBHOOKS_LANES") or 1)))


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


def post(http: requests.Session, out: Outgoing, settings: DeliverySettings, *, checked: bool = False) -> Attempt:
    """One signed POST of an event's body (its URL checked first unless ``checked``); never raises."""
    url = out.url
    if not checked:
        refusal = _refusal(url, settings)
        if refusal:
            return Attempt(ok=False, error=refusal)
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


def _refusal(url: str, settings: DeliverySettings) -> str | None:
    try:
        check_url(url, allow_private=settings.allow_private)
    except UnsafeAddress as exc:
        return str(exc)
    return None


def backoff(attempts: int, settings: DeliverySettings, rng: random.Random = random) -> timedelta:  # noqa: S311
    """Exponential, with ±50 % jitter so a receiver back from an outage is not hit by every retry at once."""
    delay = min(settings.base_delay * 2 ** max(attempts - 1, 0), settings.max_delay)
    return timedelta(seconds=delay * rng.uniform(0.5, 1.5))  # noqa: S311 - jitter, not security


def claim(session: Session, settings: DeliverySettings, *, now: datetime | None = None,
          delivery_ids: list[int] | None = None) -> list[int]:
    """Take a batch of due deliveries for this worker (lease, attempt counted) and commit; their ids."""
    now = now or utcnow()
    take_write_lock(session)  # SQLite: one claimer at a time (PostgreSQL skips the rows others locked)
    postgresql = session.get_bind().dialect.name == "postgresql"
    if delivery_ids is None:
        query = _claim_statement(settings.batch, postgresql)
    else:
        query = _locking(claim_query(settings.batch).where(WebhookDelivery.id.in_(delivery_ids)), postgresql)
    ids = list(session.scalars(query, {"now": now}))
    if ids:
        session.execute(_lease_statement(), {"ids": ids, "now": now,
                                             "lease_until": now + timedelta(seconds=settings.lease_seconds)})
    session.commit()
    return ids


def claim_query(batch: int) -> sa.Select:
    """The ids of the due deliveries (due at the bound ``now``) with no older pending one of their position (per
    subscriber), in order, at most ``batch``."""
    older = aliased(WebhookDelivery)
    earlier = sa.select(older.id).where(older.subscriber_id == WebhookDelivery.subscriber_id,
                                        older.position_id == WebhookDelivery.position_id,
                                        older.id < WebhookDelivery.id, older.status == PENDING)
    # OFFSET 0: PostgreSQL keeps this a look-up per candidate row on ix_webhook_deliveries_order instead of
    # flattening it into an anti-join, whose plan (with statistics that think "pending" is rare) read every pending
    # row once per candidate.
    earlier = earlier.offset(0)
    now = sa.bindparam("now", type_=WebhookDelivery.next_attempt_at.type)
    return (sa.select(WebhookDelivery.id)
            .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now, ~earlier.exists())
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(batch))


def _locking(query: sa.Select, postgresql: bool) -> sa.Select:
    return query.with_for_update(skip_locked=True, of=WebhookDelivery) if postgresql else query


@cache
def _claim_statement(batch: int, postgresql: bool) -> sa.Select:
    """The claim, built once: building it anew was half the CPU of a lingering run's empty look."""
    return _locking(claim_query(batch), postgresql)


@cache
def _outgoing_statement() -> sa.Select:
    """What the claimed deliveries (bound ``ids``) send, and their attempts so far."""
    return (sa.select(WebhookDelivery.id, WebhookSubscriber.url, WebhookSubscriber.secret, WebhookEvent.event_id,
                      WebhookEvent.name, WebhookEvent.body, WebhookDelivery.attempts, WebhookDelivery.retry_until)
            .join(WebhookSubscriber, WebhookSubscriber.id == WebhookDelivery.subscriber_id)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.id.in_(sa.bindparam("ids", expanding=True))).order_by(WebhookDelivery.id))


@cache
def _lease_statement() -> sa.Update:
    when = WebhookDelivery.next_attempt_at.type
    return (sa.update(WebhookDelivery).where(WebhookDelivery.id.in_(sa.bindparam("ids", expanding=True)))
            .values(next_attempt_at=sa.bindparam("lease_until", type_=when), attempts=WebhookDelivery.attempts + 1,
                    last_attempt_at=sa.bindparam("now", type_=when))
            .execution_options(synchronize_session=False))


def lane_job_id(lane: int) -> str:
    """The RQ job id of a delivery lane (lane 0 is the one every change asks for)."""
    return DELIVER_JOB_ID if lane == 0 else f"{DELIVER_JOB_ID}-{lane}"


def _outcomes(rows: list[tuple[Outgoing, int, datetime]], attempts: list[Attempt], settings: DeliverySettings
              ) -> list[dict]:
    """Each delivery's new column values after its attempt (delivered, retried later, or given up)."""
    now = utcnow()
    values = []
    for (out, tries, retry_until), attempt in zip(rows, attempts, strict=True):
        value = {"id": out.delivery_id, "last_status_code": attempt.status_code,
                 "last_error": (attempt.error or None) and attempt.error[:500], "response_excerpt": attempt.excerpt}
        if attempt.ok:
            value.update(status=DELIVERED, delivered_at=now)
        else:
            retry_at = now + backoff(tries, settings)
            if retry_at > retry_until:
                value["status"] = FAILED
            else:
                value.update(status=PENDING, next_attempt_at=retry_at)
        values.append(value)
    return values


def _sender(http: requests.Session, settings: DeliverySettings, refusals: dict[str, str | None]):
    def send(out: Outgoing) -> Attempt:
        refusal = refusals[out.url]
        return Attempt(ok=False, error=refusal) if refusal else post(http, out, settings, checked=True)

    return send


class _Alone:
    """No job layer watching (a direct call): a run may always stop."""

    def stay(self) -> None:
        pass

    def may_stop(self) -> bool:
        return True

    def close(self) -> None:
        pass


def deliver_due(session: Session, settings: DeliverySettings, *, max_seconds: float = 50.0,
                http: requests.Session | None = None, lane: int = 0, presence=None,
                clock=time.monotonic, sleep=time.sleep) -> dict[str, int]:
    """Send due deliveries batch after batch until none is due (for ``settings.linger`` seconds, and ``presence``
    lets it stop) or ``max_seconds`` passed; counts by outcome. A full batch asks for lane ``lane + 1`` (up to
    ``settings.lanes``). ``clock`` and ``sleep`` are the run's time (tests drive them)."""
    presence = presence or _Alone()
    counts = {DELIVERED: 0, PENDING: 0, FAILED: 0}
    started = clock()
    idle_since = None
    found = False
    http = http or requests.Session()
    try:
        with ThreadPoolExecutor(max_workers=settings.threads) as pool:
            while clock() - started < max_seconds:
                presence.stay()
                found = _one_batch(session, settings, pool, http, lane, counts)
                if found:
                    idle_since = None
                    continue
                now = clock()
                idle_since = now if idle_since is None else idle_since
                if now - idle_since >= settings.linger:
                    if presence.may_stop():
                        return counts
                    idle_since = None  # a change asked for a run meanwhile: look again
                    continue
                sleep(settings.poll_interval)
    finally:
        presence.close()
    if found and lane == 0:
        # Stopped by the time limit with work still coming: a successor goes on (released by the job's commit).
        outbox.schedule(session, DELIVER_TASK, job_id=DELIVER_JOB_ID)
    return counts


def _one_batch(session: Session, settings: DeliverySettings, pool: ThreadPoolExecutor, http: requests.Session,
               lane: int, counts: dict[str, int]) -> bool:
    """Claim, send and record one batch; whether there was one."""
    ids = claim(session, settings)
    if not ids:
        return False
    if len(ids) >= settings.batch and lane + 1 < settings.lanes:
        # A backlog: one more worker, please (deduplicated on the lane's job id; released by the commit below).
        outbox.schedule(session, DELIVER_TASK, lane + 1, job_id=lane_job_id(lane + 1))
    rows = [(Outgoing(*row[:6]), row[6], row[7]) for row in session.execute(_outgoing_statement(), {"ids": ids})]
    session.commit()
    # Each subscriber's address is checked once per batch, at send time (its DNS may have changed).
    refusals = {url: _refusal(url, settings) for url in {out.url for out, _, _ in rows}}
    attempts = list(pool.map(_sender(http, settings, refusals), [out for out, _, _ in rows]))
    values = _outcomes(rows, attempts, settings)
    session.execute(sa.update(WebhookDelivery), values)
    session.commit()
    for value in values:
        counts[value["status"]] += 1
    return True
