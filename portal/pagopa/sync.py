"""Durable synchronisation of positions with GPD: converge what pagoPA has to what the position says it should have.

Each position records its *desired* pagoPA state (``pagopa_target``, ``pagopa_version``) and the state pagoPA last
*confirmed* (``pagopa_synced_target``, ``pagopa_synced_version``). :func:`sync_position` performs the one GPD call
that closes the gap (create, update, invalidate, delete), idempotently:

- a create answered 409 (``DEBT_POSITION_UNIQUE_VIOLATION``) is a success once a GET finds the position (a previous
  attempt got through but its answer was lost); decisions never parse GPD's ``title``, which is a sentence;
- an invalidation answered 404 or ``DEBT_POSITION_NOT_INVALIDABLE`` looks at GPD's status (a DRAFT or EXPIRED
  position is deleted instead, an INVALID one is already fine);
- a delete answered 404 is a success.

Failures never lose the intent: pagoPA unreachable (network, 5xx, 429) → exponential backoff; pagoPA refusing (4xx)
→ the error is stored on the position with a ``sync_failed`` event, and retried slowly. The state itself (targets,
attempts, backoff, the sweep that hands due positions to jobs) is the ledger's :mod:`portal.ledger.sync_state`;
this module only talks to pagoPA: one position (:func:`sync_position`) or never-published ones in bulk
(:func:`publish_batch`, GPD v2, ≤100 per call). Rows are locked with ``FOR UPDATE SKIP LOCKED`` while they sync,
so two workers never sync the same position at once.

Plain Python: functions take the session and a :class:`~portal.pagopa.gpd.GPDClient`, flush, and never commit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload, selectinload

from portal import metrics, outbox
from portal.ledger import offline_payments, sync_state
from portal.ledger.models import Creditor, Event, PaymentOption, Position, Service
from portal.ledger.services import record_event, transition
from portal.ledger.status import OptionStatus, PositionStatus
from portal.ledger.sync_state import is_converged, next_action
from portal.ledger.types import utcnow
from portal.pagopa.errors import (
    DebtPositionConflict,
    DebtPositionNotFound,
    PagoPAError,
    PagoPARejected,
    PagoPAUnavailable,
)
from portal.pagopa.gpd import BULK_MAX, DebtPosition, GPDClient
from portal.pagopa.mapping import position_payload

log = logging.getLogger(__name__)

#: GPD statuses in which an option was paid outside our knowledge: nothing may be changed any more.
GPD_PAID_STATUSES = frozenset({"PAID", "PARTIALLY_PAID", "REPORTED"})
#: The actor of what the synchronisation writes on the timeline.
ACTOR = "system"


#: How the outcome of an attempt and its pagoPA operations read on the jobs page.
RESULTS = {"synced": "allineata con pagoPA", "noop": "già allineata", "busy": "in lavorazione da un'altra attività",
           "missing": "inesistente", "retry": "pagoPA non raggiungibile, si riprova", "rejected": "rifiutata da pagoPA"}
ACTIONS = {"create": "caricamento", "update": "aggiornamento", "invalidate": "annullamento", "delete": "eliminazione",
           "mark_paid": "segnalazione del pagamento"}


@dataclass(frozen=True)
class SyncOutcome:
    """What one synchronisation attempt of one position did.

    ``result`` is ``synced`` (pagoPA now matches), ``noop`` (nothing was due), ``busy`` (another worker holds the
    row), ``missing`` (no such position), ``retry`` (pagoPA unavailable: backoff) or ``rejected`` (pagoPA refused).
    """

    position_id: int
    result: str
    actions: tuple[str, ...] = ()
    message: str | None = None
    next_at: datetime | None = None

    def __str__(self) -> str:
        text = f"posizione {self.position_id}: {RESULTS.get(self.result, self.result)}"
        if self.actions:
            text += f" ({', '.join(ACTIONS.get(a, a) for a in self.actions)})"
        if self.message:
            text += f": {self.message}"
        return text


@dataclass
class BatchOutcome:
    """What :func:`publish_batch` did: positions published in bulk, one by one after a bulk refusal, or failed."""

    published: list[int] = field(default_factory=list)
    fallback: list[SyncOutcome] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    skipped: int = 0
    calls: int = 0

    def __str__(self) -> str:
        fallback = sum(1 for o in self.fallback if o.result == "synced")
        return (f"{len(self.published)} pubblicate in blocco, {fallback} una per una, {len(self.retry)} da ritentare, "
                f"{len(self.rejected)} rifiutate, {self.skipped} saltate ({self.calls} chiamate in blocco)")


# --- One position ------------------------------------------------------------------------------------------------


def lock_position(session: Session, position_id: int) -> Position | None:
    """The position, locked for this transaction; ``None`` if another transaction holds it (or it does not exist).

    Loaded with what GPD's payload needs (service and Ente, debtor, options and their transfers) in one round trip
    (a row per transfer: a position has a handful). What the session already holds of them is overwritten with the
    rows read under the lock (``populate_existing``): a caller that kept its objects loaded across a commit syncs
    what the database has.
    """
    return session.execute(
        sa.select(Position).where(Position.id == position_id).with_for_update(skip_locked=True, of=Position)
        .options(joinedload(Position.service, innerjoin=True).joinedload(Service.creditor, innerjoin=True),
                 joinedload(Position.debtor, innerjoin=True),
                 joinedload(Position.options).joinedload(PaymentOption.transfers))
        .execution_options(populate_existing=True)
    ).unique().scalar_one_or_none()


def sync_position(session: Session, position_id: int, client: GPDClient, *, now: datetime | None = None) -> SyncOutcome:
    """Converge one position with GPD (the row stays locked until the caller commits).

    :return: the outcome; pagoPA errors are recorded on the position, never raised.
    """
    position = lock_position(session, position_id)
    if position is None:
        exists = session.scalar(sa.select(Position.id).where(Position.id == position_id)) is not None
        outcome = SyncOutcome(position_id, "busy" if exists else "missing")
        metrics.SYNC_ATTEMPTS.labels(outcome.result).inc()
        return outcome
    return sync_locked(session, position, client, now=now)


def sync_locked(session: Session, position: Position, client: GPDClient, *,
                now: datetime | None = None) -> SyncOutcome:
    """Converge a position the caller has already locked (each attempt counted in ``paybox_sync_attempts_total``)."""
    outcome = _sync_locked(session, position, client, now=now)
    metrics.SYNC_ATTEMPTS.labels(outcome.result).inc()
    return outcome


def _sync_locked(session: Session, position: Position, client: GPDClient, *,
                 now: datetime | None = None) -> SyncOutcome:
    now = now or utcnow()
    if is_converged(position):
        if position.sync_pending:
            sync_state.succeeded(position)
        return SyncOutcome(position.id, "noop")
    org_cf = _org_fiscal_code(session, position)
    actions: list[str] = []
    action = None
    try:
        # A few steps at most: e.g. a create answered "already exists" whose content is older → an update.
        for _ in range(4):
            action = next_action(position)
            if action is None:
                break
            _ACTIONS[action](session, position, client, org_cf, now)
            actions.append(action)
    except PagoPAUnavailable as exc:
        return _transient(position, exc, now, actions)
    except PagoPARejected as exc:
        return _rejected(session, position, exc, now, actions, action)
    except PagoPAError as exc:  # an answer we cannot read: treat as a passing trouble
        return _transient(position, exc, now, actions)
    sync_state.succeeded(position)
    return SyncOutcome(position.id, "synced", tuple(actions))


def _create(session: Session, position: Position, client: GPDClient, org_cf: str, now: datetime) -> None:
    remote: DebtPosition | None = None
    version: int | None = position.pagopa_version
    try:
        client.create(org_cf, position_payload(position), to_publish=True)
    except DebtPositionConflict as exc:
        # GPD's only 409 on create is the uniqueness violation (IUPD, IUV or NAV already there). Its ProblemJson
        # title is a sentence, not the enum name, so the GET decides: our IUPD there means an earlier attempt won.
        try:
            remote = client.get(org_cf, position.iupd)
        except DebtPositionNotFound:
            raise exc from None  # the IUV or NAV belongs to another position: a real conflict
        if remote.status == "INVALID":
            raise DebtPositionConflict(
                "La posizione risulta annullata su pagoPA e non può essere ripubblicata.",
                status=409, title=exc.title, detail=f"GPD status {remote.status}", request_id=exc.request_id,
            ) from None
        if remote.status == "DRAFT":
            client.publish(org_cf, position.iupd)
        log.info("position %s already on GPD (%s): create counted as done", position.iupd, remote.status)
        # pagoPA has *a* version of it: when ours was edited since the first attempt, an update follows.
        if position.pagopa_version != 1 and remote.status not in GPD_PAID_STATUSES:
            version = None
    _reconcile_payments(session, position, client, org_cf, remote, now)
    _confirm_published(session, position, version, now)


def _update(session: Session, position: Position, client: GPDClient, org_cf: str, now: datetime) -> None:
    try:
        client.update(org_cf, position.iupd, position_payload(position), to_publish=True)
    except DebtPositionNotFound:
        # GPD lost it (or it was deleted by hand): create it again.
        position.pagopa_synced_target = None
        position.pagopa_synced_version = None
        return
    position.pagopa_synced_version = position.pagopa_version
    record_event(session, position, "pagopa_updated", actor=ACTOR, at=now, version=position.pagopa_version)


def _invalidate(session: Session, position: Position, client: GPDClient, org_cf: str, now: datetime) -> None:
    how = "invalidated"
    try:
        client.invalidate(org_cf, position.iupd)
    except DebtPositionNotFound:
        how = "absent"  # never reached pagoPA: nothing can be paid there
    except DebtPositionConflict as exc:
        try:
            remote = client.get(org_cf, position.iupd)
        except DebtPositionNotFound:
            remote = None
        if remote is None:
            how = "absent"
        elif remote.status == "INVALID":
            how = "already_invalid"
        elif remote.status in ("DRAFT", "EXPIRED"):
            # GPD only invalidates PUBLISHED/VALID positions; a draft or expired one is deleted instead.
            with contextlib.suppress(DebtPositionNotFound):
                client.delete(org_cf, position.iupd)
            how = "deleted"
        else:
            raise exc
    position.pagopa_synced_target = "invalid"
    position.pagopa_synced_version = position.pagopa_version
    if how != "absent":
        record_event(session, position, "pagopa_invalidated", actor=ACTOR, at=now, how=how)


def _delete(session: Session, position: Position, client: GPDClient, org_cf: str, now: datetime) -> None:
    try:
        client.delete(org_cf, position.iupd)
        found = True
    except DebtPositionNotFound:
        found = False
    position.pagopa_synced_target = "absent" if position.pagopa_target == "absent" else "deleted"
    position.pagopa_synced_version = position.pagopa_version
    if found:
        record_event(session, position, "pagopa_deleted", actor=ACTOR, at=now)


def _mark_paid(session: Session, position: Position, client: GPDClient, org_cf: str, now: datetime) -> None:
    """Tell GPD of the options paid outside pagoPA since the position was published (at the counter, ...)."""
    told = set()
    for payment in offline_payments.awaiting_pagopa(session, position.id):
        option = payment.option
        try:
            _tell_paid(position, client, org_cf, option, now)
        except DebtPositionNotFound:
            # GPD lost the position (or it was deleted by hand): create it again, with its paid options.
            position.pagopa_synced_target = None
            position.pagopa_synced_version = None
            return
        told.add(option.id)
    offline_payments.confirm_told(session, position, told, now=now)


_ACTIONS: dict[str, Callable[[Session, Position, GPDClient, str, datetime], None]] = {
    "create": _create, "update": _update, "invalidate": _invalidate, "delete": _delete, "mark_paid": _mark_paid,
}


def _reconcile_payments(session: Session, position: Position, client: GPDClient, org_cf: str,
                        remote: DebtPosition | None, now: datetime) -> None:
    """Tell GPD about options paid in Pay Box that GPD still shows unpaid (paid at the counter, or demo history).

    ``remote`` is GPD's copy when we have one; ``None`` right after a create, when every option is unpaid there.
    Payments outside pagoPA of the options GPD now shows paid can no longer be reversed.
    """
    paid = _paid_options(position)
    for option in paid:
        if remote is not None:
            state = remote.option(option.iuv)
            if state is not None and state.status != "PO_UNPAID":
                continue
        _tell_paid(position, client, org_cf, option, now)
    if paid or position.pagopa_paid_pending:
        offline_payments.confirm_told(session, position, {o.id for o in paid}, now=now)


def _tell_paid(position: Position, client: GPDClient, org_cf: str, option: PaymentOption, now: datetime) -> None:
    # A 409 on this call means PAYMENT_OPTION_ALREADY_PAID: what we wanted.
    with contextlib.suppress(DebtPositionConflict):
        client.mark_paid(org_cf, option.notice_number, option.paid_at or now)
    log.info("position %s: option %s marked paid on GPD", position.iupd, option.notice_number)


def _paid_options(position: Position) -> list[PaymentOption]:
    return [o for o in position.options if o.status == OptionStatus.PAID]


def _confirm_published(session: Session, position: Position, version: int | None, now: datetime) -> None:
    position.pagopa_synced_target = "published"
    position.pagopa_synced_version = version
    if position.status == PositionStatus.DRAFT:
        transition(session, position, PositionStatus.PUBLISHED, actor=ACTOR, at=now, channel="gpd")


def _transient(position: Position, exc: PagoPAError, now: datetime, actions: Sequence[str]) -> SyncOutcome:
    next_at = sync_state.retry_later(position, _error_text(exc), now, retry_after=getattr(exc, "retry_after", None))
    return SyncOutcome(position.id, "retry", tuple(actions), position.sync_error, next_at)


def _rejected(session: Session, position: Position, exc: PagoPAError, now: datetime, actions: Sequence[str],
              action: str | None) -> SyncOutcome:
    message = _error_text(exc)
    repeated = position.sync_error is not None and _same_as_last_failure(session, position, action, exc)
    sync_state.refused(position, message, now)
    if not repeated:  # an hourly retry failing the same way does not fill the timeline
        record_event(session, position, "sync_failed", actor="pagopa", at=now, action=action, status=exc.status,
                     title=exc.title, detail=exc.detail, message=exc.message, request_id=exc.request_id)
    log.warning("position %s: pagoPA refused %s: %s", position.iupd, action, message)
    return SyncOutcome(position.id, "rejected", tuple(actions), message, position.sync_next_at)


def _same_as_last_failure(session: Session, position: Position, action: str | None, exc: PagoPAError) -> bool:
    """Whether the last ``sync_failed`` event says the same (action, HTTP status, title): GPD's ``detail`` may
    carry the current time, so the message itself is not compared."""
    last = session.scalar(sa.select(Event.details).where(Event.position_id == position.id, Event.kind == "sync_failed")
                          .order_by(Event.id.desc()).limit(1))
    return bool(last) and (last.get("action"), last.get("status"), last.get("title")) == (action, exc.status, exc.title)


def _internal_error(session: Session, position: Position, exc: Exception, now: datetime) -> None:
    message = f"Errore interno nella preparazione dei dati per pagoPA: {type(exc).__name__}: {exc}"[:2000]
    if position.sync_error != message:
        record_event(session, position, "sync_failed", actor=ACTOR, at=now, action="create", message=message)
    sync_state.refused(position, message, now)


def _error_text(exc: PagoPAError) -> str:
    text = exc.message or str(exc)
    extra = " - ".join(part for part in (exc.title, exc.detail) if part)
    if extra and extra not in text:
        text = f"{text} ({extra})"
    if exc.status:
        text = f"HTTP {exc.status}: {text}"
    return text[:2000]


def _org_fiscal_code(session: Session, position: Position) -> str:
    # From the identity map when the Ente is loaded already (lock_position loads it with the service).
    return session.get(Creditor, position.creditor_id).fiscal_code


# --- Many positions ----------------------------------------------------------------------------------------------


def publish_batch(session: Session, position_ids: Iterable[int], client: GPDClient, *,
                  now: datetime | None = None) -> BatchOutcome:
    """Publish never-published positions with GPD's v2 bulk create (≤100 per call, grouped by creditor).

    Positions another worker holds, or that no longer need a first publication, are skipped. When GPD refuses a
    bulk call (one invalid position, or one that already exists), each position of it is synced on its own, so
    one bad position does not hold back the others.
    """
    now = now or utcnow()
    ids = sorted(set(position_ids))
    outcome = BatchOutcome()
    if not ids:
        return outcome
    positions = session.scalars(
        sa.select(Position)
        .where(Position.id.in_(ids), Position.sync_pending.is_(True), Position.pagopa_target == "published",
               Position.pagopa_synced_target.is_(None))
        .order_by(Position.id)
        .with_for_update(skip_locked=True, of=Position)
        .options(selectinload(Position.options).selectinload(PaymentOption.transfers),
                 selectinload(Position.debtor), selectinload(Position.service).selectinload(Service.creditor))
    ).all()
    outcome.skipped = len(ids) - len(positions)
    by_creditor: dict[int, list[Position]] = {}
    for position in positions:
        by_creditor.setdefault(position.creditor_id, []).append(position)
    done = outcome.skipped
    for group in by_creditor.values():
        org_cf = group[0].service.creditor.fiscal_code
        for start in range(0, len(group), BULK_MAX):
            chunk = group[start:start + BULK_MAX]
            _publish_chunk(session, chunk, client, org_cf, now, outcome,
                           progress=lambda n, base=done: outbox.report_progress(base + n, len(ids)))
            done += len(chunk)
    outbox.report_progress(len(ids), len(ids))
    fallback = {o.position_id for o in outcome.fallback}
    for result, count in (("published", len(outcome.published)), ("fallback", len(fallback)),
                          ("retry", len(set(outcome.retry) - fallback)),
                          ("rejected", len(set(outcome.rejected) - fallback))):
        if count:
            metrics.SYNC_BULK_POSITIONS.labels(result).inc(count)
    return outcome


def _publish_chunk(session: Session, chunk: list[Position], client: GPDClient, org_cf: str, now: datetime,
                   outcome: BatchOutcome, progress: Callable[[int], None]) -> None:
    """Publish one bulk call's worth; ``progress(n)`` hears how many of the chunk are done."""
    progress(0)
    payloads, ready = [], []
    for position in chunk:
        try:
            payloads.append(position_payload(position))
        except Exception as exc:  # noqa: BLE001 - one position with unmappable data must not block the others
            log.exception("position %s: cannot build the GPD payload", position.iupd)
            _internal_error(session, position, exc, now)
            outcome.rejected.append(position.id)
            continue
        ready.append(position)
    if not ready:
        return
    try:
        outcome.calls += 1
        client.bulk_create(org_cf, payloads, to_publish=True)
    except PagoPAUnavailable as exc:
        for position in ready:
            _transient(position, exc, now, ())
            outcome.retry.append(position.id)
        return
    except PagoPAError as exc:
        log.info("bulk create of %d positions refused (%s %s): one by one", len(ready), exc.status, exc.title)
        for number, position in enumerate(ready, start=1):
            result = sync_locked(session, position, client, now=now)
            progress(number)
            outcome.fallback.append(result)
            if result.result == "retry":
                outcome.retry.append(position.id)
            elif result.result == "rejected":
                outcome.rejected.append(position.id)
        return
    for position in ready:
        try:
            _reconcile_payments(session, position, client, org_cf, None, now)
        except PagoPAUnavailable as exc:
            # Created, but a paid option is not marked yet: the next attempt finds it (409 → GET) and finishes.
            _transient(position, exc, now, ("create",))
            outcome.retry.append(position.id)
            continue
        except PagoPAError as exc:
            _rejected(session, position, exc, now, ("create",), "mark_paid")
            outcome.rejected.append(position.id)
            continue
        _confirm_published(session, position, position.pagopa_version, now)
        sync_state.succeeded(position)
        outcome.published.append(position.id)
