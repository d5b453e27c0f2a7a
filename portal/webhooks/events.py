"""Webhook events written in the transaction of the change they tell about, never from a view.

A session listener watches what each flush writes: a timeline event of a position that a subscriber can hear of
(paid, partially paid, reported, cancelled, reissued) or an import that finished. For each it writes one
:class:`~portal.webhooks.models.WebhookEvent` (the exact JSON body, a fresh event id) and one delivery per
subscriber that wants it, then asks the outbox for a delivery run after the commit. The change and its webhooks
commit together or not at all; the domain does not know webhooks exist.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, joinedload

from portal import outbox
from portal.imports.models import Import
from portal.ledger.models import Creditor, Debtor, Event, Position, Service
from portal.ledger.offline_payments import PAGOPA_CHANNEL
from portal.ledger.types import utcnow
from portal.webhooks.models import WebhookDelivery, WebhookEvent, WebhookSubscriber

#: Timeline event kind → webhook event name.
KINDS = {
    "paid": "position.paid",
    "partially_paid": "position.partially_paid",
    "installment_paid": "position.partially_paid",
    "reported": "position.reported",
    "cancelled": "position.cancelled",
    "reissued": "position.reissued",
    "offline_payment_reversed": "position.payment_reversed",
}
#: The delivery job the outbox is asked for.
DELIVER_TASK = "deliver_webhooks"
DELIVER_JOB_ID = "webhooks-deliver"
#: How long a failing delivery is retried.
RETRY_WINDOW_HOURS = 24

_COLLECTED = "paybox.webhooks.collected"
#: Details of a timeline event that go in the body, by group.
RECEIPT_KEYS = ("receipt_id", "iuv", "notice_number", "amount_cents", "fee_cents", "psp_id", "psp_name",
                "payment_method", "payment_at", "installment_number")
FLOW_KEYS = ("flow_id", "revision", "regulation", "regulation_date", "psp_id", "psp_name")
#: A payment outside pagoPA (at the counter, bank transfer, F24): its channel and references.
OFFLINE_KEYS = ("offline_payment_id", "payment_channel", "reference", "amount_cents", "payment_date",
                "notice_number", "iuv", "installment_number")
PAYMENT_KINDS = ("paid", "partially_paid", "installment_paid")


def dumps(payload: dict) -> str:
    """The JSON body: compact, keys sorted, UTF-8 as is."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)


def position_data(position: Position, *, kind: str, details: dict) -> dict:
    """The small body of a position's event: ids, amounts, and the receipt's or flow's references."""
    service_code, debtor_fiscal_code, paid_cents = _facts(position)
    data = {
        "position": {
            "id": position.id, "iupd": position.iupd, "external_id": position.external_id,
            "source": position.source, "service": service_code, "status": position.status.value,
            "amount_cents": position.amount_cents, "paid_cents": _int(paid_cents),
            "debtor_fiscal_code": debtor_fiscal_code,
            "notice_numbers": [o.notice_number for o in position.options],
        },
    }
    if kind in PAYMENT_KINDS and details.get("receipt_id"):
        data["channel"] = PAGOPA_CHANNEL  # the others: offline_payments.CHANNELS
        data["receipt"] = {k: details.get(k) for k in RECEIPT_KEYS if details.get(k) is not None}
    if (kind in PAYMENT_KINDS or kind == "offline_payment_reversed") and details.get("offline_payment_id"):
        data["channel"] = details.get("payment_channel")
        data["offline_payment"] = _offline(details)
    if kind == "reported":
        data["flow"] = {k: details.get(k) for k in FLOW_KEYS if details.get(k) is not None}
    if kind in ("cancelled", "reissued", "offline_payment_reversed") and details.get("reason"):
        data["reason"] = details["reason"]
    return data


def _facts(position: Position) -> tuple[str, str, int | None]:
    """The service code, the debtor's fiscal code and the paid amount as flushed: what the position's object has
    loaded, and one SELECT for whatever it has not (a payment loads neither the service nor the debtor, and its
    ``paid_cents`` grew in SQL)."""
    state = sa.inspect(position)
    loaded = {"service", "debtor", "paid_cents"}.isdisjoint(state.unloaded)
    if loaded or state.session is None:
        return position.service.code, position.debtor.fiscal_code, position.paid_cents
    return state.session.execute(
        sa.select(Service.code, Debtor.fiscal_code, Position.paid_cents)
        .join(Service, Service.id == Position.service_id).join(Debtor, Debtor.id == Position.debtor_id)
        .where(Position.id == position.id)).one()


def _offline(details: dict) -> dict:
    payment = {k: details.get(k) for k in OFFLINE_KEYS if details.get(k) is not None}
    payment["id"] = payment.pop("offline_payment_id")
    payment["channel"] = payment.pop("payment_channel", None)
    return payment


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def import_data(imp: Import) -> dict:
    return {"import": {"id": imp.id, "status": imp.status, "filename": imp.filename, "imported": imp.imported,
                       "positions_new": imp.positions_new, "positions_updated": imp.positions_updated,
                       "positions_refused": imp.positions_refused}}


def _wanted(session: Session, creditor_id: int, name: str, service_id: int | None) -> list[WebhookSubscriber]:
    return [s for s in _subscribers(session, creditor_id)[1] if s.wants(name, service_id)]


def record(session: Session, creditor_id: int, name: str, data, *, position_id: int | None = None,
           service_id: int | None = None, now: datetime | None = None) -> WebhookEvent | None:
    """Write one event and its deliveries to the subscribers that want it (none: nothing is written).

    :param data: the body's ``data``, or a callable building it (called only when someone wants the event).
    """
    subscribers = _wanted(session, creditor_id, name, service_id)
    if not subscribers:
        return None
    data = data() if callable(data) else data
    now = now or utcnow()
    event_id = str(uuid.uuid4())
    fiscal_code = _subscribers(session, creditor_id)[0]
    body = dumps({"id": event_id, "type": name, "created": now.isoformat(timespec="seconds"),
                  "creditor": fiscal_code, "data": data})
    event = WebhookEvent(event_id=event_id, creditor_id=creditor_id, name=name, position_id=position_id, body=body,
                         created_at=now)
    session.add(event)
    for subscriber in subscribers:
        session.add(WebhookDelivery(event=event, subscriber_id=subscriber.id, position_id=position_id,
                                    next_attempt_at=now, retry_until=now + timedelta(hours=RETRY_WINDOW_HOURS),
                                    created_at=now))
    outbox.schedule(session, DELIVER_TASK, job_id=DELIVER_JOB_ID, creditor_id=creditor_id)
    return event


def _subscribers(session: Session, creditor_id: int) -> tuple[str | None, list[WebhookSubscriber]]:
    """The creditor's fiscal code and active subscribers with their services: one SELECT per transaction."""
    cache = session.info.setdefault("paybox.webhooks.subscribers", {})
    if creditor_id not in cache:
        rows = session.execute(
            sa.select(WebhookSubscriber, Creditor.fiscal_code)
            .join(Creditor, Creditor.id == WebhookSubscriber.creditor_id)
            .where(WebhookSubscriber.creditor_id == creditor_id, WebhookSubscriber.active)
            .options(joinedload(WebhookSubscriber.services)).order_by(WebhookSubscriber.id)).unique().all()
        cache[creditor_id] = (rows[0][1] if rows else None, [subscriber for subscriber, _ in rows])
    return cache[creditor_id]


_paused: contextvars.ContextVar[bool] = contextvars.ContextVar("paybox_webhooks_paused", default=False)


@contextlib.contextmanager
def paused():
    """No webhook events inside the block: for tools working on a database older than the webhook tables
    (migration tests, restores of old backups)."""
    token = _paused.set(True)
    try:
        yield
    finally:
        _paused.reset(token)


@sa_event.listens_for(Session, "after_flush")
def _collect(session: Session, flush_context) -> None:
    """Note what this flush wrote that subscribers may hear of (bodies are built once the flush is over)."""
    if _paused.get():
        return
    found = []
    for obj in session.new:
        if isinstance(obj, Event) and obj.kind in KINDS:
            found.append(("position", obj))
    for obj in session.dirty:
        if isinstance(obj, Import):
            added = sa.inspect(obj).attrs.status.history.added
            if added and added[-1] in ("done", "failed"):
                found.append(("import", obj))
    if found:
        session.info.setdefault(_COLLECTED, []).extend(found)


@sa_event.listens_for(Session, "after_flush_postexec")
def _emit(session: Session, flush_context) -> None:
    """Write the events noted by :func:`_collect` (flushed with the next flush, at the latest by the commit)."""
    found = session.info.pop(_COLLECTED, None)
    if not found:
        return
    for what, obj in found:
        if what == "position":
            position = obj.position or session.get(Position, obj.position_id)
            record(session, position.creditor_id, KINDS[obj.kind],
                   lambda p=position, e=obj: position_data(p, kind=e.kind, details=e.details or {}),
                   position_id=position.id, service_id=position.service_id, now=obj.at)
        else:
            record(session, obj.creditor_id, "import.finished", lambda i=obj: import_data(i))


@sa_event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop("paybox.webhooks.subscribers", None)
        session.info.pop(_COLLECTED, None)
