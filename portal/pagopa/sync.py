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
→ the error is stored on the position with a ``sync_failed`` event, and retried slowly. A periodic :func:`sweep`
finds what has not converged (``sync_pending`` and due) and hands it to jobs: never-published positions in bulk
(:func:`publish_batch`, GPD v2, ≤100 per call), the rest one by one. Rows are locked with ``FOR UPDATE SKIP
LOCKED`` while they sync, so two workers never sync the same position at once.

Plain Python: functions take the session and a :class:`~portal.pagopa.gpd.GPDClient`, flush, and never commit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from portal.ledger.models import Creditor, Event, PaymentOption, Position, Service
from portal.ledger.services import record_event, transition
from portal.ledger.status import OptionStatus, PositionStatus
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

#: First wait after a transient failure; it doubles at each attempt up to :data:`BACKOFF_MAX_SECONDS`.
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600
#: Wait before trying again what pagoPA refused (a data error needs an officer; a slow retry costs nothing).
REJECTED_RETRY_SECONDS = 3600
#: How long the sweep leaves a position it handed to a job before handing it out again (the job may have died).
LEASE_SECONDS = 300
#: GPD statuses in which an option was paid outside our knowledge: nothing may be changed any more.
GPD_PAID_STATUSES = frozenset({"PAID", "PARTIALLY_PAID", "REPORTED"})
#: The actor of what the synchronisation writes on the timeline.
ACTOR = "system"



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
        text = f"position {self.position_id}: {self.result}"
        if self.actions:
            text += f" ({', '.join(self.actions)})"
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


@dataclass
class SweepResult:
    """What :func:`sweep` handed out."""

    batches: list[list[int]] = field(default_factory=list)
    singles: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Positions handed to jobs."""
        return len(self.singles) + sum(len(b) for b in self.batches)

    def __str__(self) -> str:
        return (f"{self.count} posizioni da sincronizzare: {len(self.batches)} blocchi di pubblicazione, "
                f"{len(self.singles)} singole")


# --- Decisions (no I/O) ------------------------------------------------------------------------------------------


def backoff_seconds(attempts: int, retry_after: float | None = None) -> int:
    """Seconds to wait after the ``attempts``-th consecutive transient failure: 30 s doubling, at most an hour.

    A ``Retry-After`` from pagoPA is honoured when longer (still capped at the maximum).
    """
    attempts = max(attempts, 1)
    delay = BACKOFF_BASE_SECONDS * 2 ** min(attempts - 1, 20)
    if retry_after:
        delay = max(delay, int(retry_after + 0.999))
    return int(min(delay, BACKOFF_MAX_SECONDS))


def next_action(position: Position) -> str | None:
    """The GPD operation that brings pagoPA closer to the position's target, or ``None`` when they agree.

    ``create``, ``update``, ``invalidate`` or ``delete``.
    """
    target, synced = position.pagopa_target, position.pagopa_synced_target
    if target == "published":
        if synced != "published":
            return "create"
        if position.pagopa_synced_version != position.pagopa_version:
            return "update"
        return None
    if target == "invalid":
        return None if synced == "invalid" else "invalidate"
    if target == "deleted":
        return None if synced == "deleted" else "delete"
    # absent: only something we published must go away (an invalidated position stays as GPD keeps it).
    return "delete" if synced == "published" else None


def is_converged(position: Position) -> bool:
    """Whether pagoPA was confirmed to hold what the position says it should."""
    return next_action(position) is None


def is_due(position: Position, now: datetime | None = None) -> bool:
    """Whether the sweep would pick the position now."""
    now = now or utcnow()
    return bool(position.sync_pending) and (position.sync_next_at is None or position.sync_next_at <= now)


# --- One position ------------------------------------------------------------------------------------------------


def lock_position(session: Session, position_id: int) -> Position | None:
    """The position, locked for this transaction; ``None`` if another transaction holds it (or it does not exist)."""
    return session.scalar(
        sa.select(Position).where(Position.id == position_id).with_for_update(skip_locked=True, of=Position)
    )


def sync_position(session: Session, position_id: int, client: GPDClient, *, now: datetime | None = None) -> SyncOutcome:
    """Converge one position with GPD (the row stays locked until the caller commits).

    :return: the outcome; pagoPA errors are recorded on the position, never raised.
    """
    position = lock_position(session, position_id)
    if position is None:
        exists = session.scalar(sa.select(Position.id).where(Position.id == position_id)) is not None
        return SyncOutcome(position_id, "busy" if exists else "missing")
    return sync_locked(session, position, client, now=now)


def sync_locked(session: Session, position: Position, client: GPDClient, *,
                now: datetime | None = None) -> SyncOutcome:
    """Converge a position the caller has already locked."""
    now = now or utcnow()
    if is_converged(position):
        if position.sync_pending:
            _succeeded(position)
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
    _succeeded(position)
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
    _reconcile_payments(position, client, org_cf, remote, now)
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


_ACTIONS: dict[str, Callable[[Session, Position, GPDClient, str, datetime], None]] = {
    "create": _create, "update": _update, "invalidate": _invalidate, "delete": _delete,
}


def _reconcile_payments(position: Position, client: GPDClient, org_cf: str, remote: DebtPosition | None,
                        now: datetime) -> None:
    """Tell GPD about options paid in Pay Box that GPD still shows unpaid (paid at the counter, or demo history).

    ``remote`` is GPD's copy when we have one; ``None`` right after a create, when every option is unpaid there.
    """
    for option in _paid_options(position):
        if remote is not None:
            state = remote.option(option.iuv)
            if state is not None and state.status != "PO_UNPAID":
                continue
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


def _succeeded(position: Position) -> None:
    position.sync_pending = not is_converged(position)
    position.sync_attempts = 0
    position.sync_next_at = None
    position.sync_error = None
    position.sync_error_at = None


def _transient(position: Position, exc: PagoPAError, now: datetime, actions: Sequence[str]) -> SyncOutcome:
    position.sync_pending = True
    position.sync_attempts = (position.sync_attempts or 0) + 1
    delay = backoff_seconds(position.sync_attempts, getattr(exc, "retry_after", None))
    position.sync_next_at = now + timedelta(seconds=delay)
    position.sync_error = _error_text(exc)
    position.sync_error_at = now
    log.warning("position %s: pagoPA unavailable (attempt %d), next try in %d s: %s", position.iupd,
                position.sync_attempts, delay, position.sync_error)
    return SyncOutcome(position.id, "retry", tuple(actions), position.sync_error, position.sync_next_at)


def _rejected(session: Session, position: Position, exc: PagoPAError, now: datetime, actions: Sequence[str],
              action: str | None) -> SyncOutcome:
    message = _error_text(exc)
    repeated = position.sync_error is not None and _same_as_last_failure(session, position, action, exc)
    position.sync_pending = True
    position.sync_attempts = (position.sync_attempts or 0) + 1
    position.sync_next_at = now + timedelta(seconds=REJECTED_RETRY_SECONDS)
    position.sync_error = message
    position.sync_error_at = now
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
    position.sync_attempts = (position.sync_attempts or 0) + 1
    position.sync_next_at = now + timedelta(seconds=REJECTED_RETRY_SECONDS)
    position.sync_error = message
    position.sync_error_at = now


def _error_text(exc: PagoPAError) -> str:
    text = exc.message or str(exc)
    extra = " - ".join(part for part in (exc.title, exc.detail) if part)
    if extra and extra not in text:
        text = f"{text} ({extra})"
    if exc.status:
        text = f"HTTP {exc.status}: {text}"
    return text[:2000]


def _org_fiscal_code(session: Session, position: Position) -> str:
    return session.scalar(sa.select(Creditor.fiscal_code).where(Creditor.id == position.creditor_id))


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
    for group in by_creditor.values():
        org_cf = group[0].service.creditor.fiscal_code
        for start in range(0, len(group), BULK_MAX):
            _publish_chunk(session, group[start:start + BULK_MAX], client, org_cf, now, outcome)
    return outcome


def _publish_chunk(session: Session, chunk: list[Position], client: GPDClient, org_cf: str, now: datetime,
                   outcome: BatchOutcome) -> None:
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
        for position in ready:
            result = sync_locked(session, position, client, now=now)
            outcome.fallback.append(result)
            if result.result == "retry":
                outcome.retry.append(position.id)
            elif result.result == "rejected":
                outcome.rejected.append(position.id)
        return
    for position in ready:
        try:
            _reconcile_payments(position, client, org_cf, None, now)
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
        _succeeded(position)
        outcome.published.append(position.id)


def due_position_ids(session: Session, *, limit: int, now: datetime | None = None, lock: bool = True) -> list[tuple]:
    """``(id, creditor_id, bulk)`` of pending positions whose next attempt is due, oldest first.

    ``bulk``: a first publication with no failed attempt yet, which :func:`publish_batch` can do in bulk.
    With ``lock``, the rows are locked (``SKIP LOCKED``: rows a worker is syncing right now are left out).
    """
    now = now or utcnow()
    bulk = sa.and_(Position.pagopa_target == "published", Position.pagopa_synced_target.is_(None),
                   Position.sync_attempts == 0)
    query = (
        sa.select(Position.id, Position.creditor_id, sa.case((bulk, True), else_=False))
        .where(Position.sync_pending.is_(True),
               sa.or_(Position.sync_next_at.is_(None), Position.sync_next_at <= now))
        .order_by(Position.sync_next_at.asc().nulls_first(), Position.id)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True, of=Position)
    return [tuple(row) for row in session.execute(query)]


def sweep(session: Session, *, limit: int = 5000, now: datetime | None = None,
          enqueue: Callable[..., object] | None = None, batch_size: int = BULK_MAX,
          lease_seconds: int = LEASE_SECONDS) -> SweepResult:
    """Hand every due, unconverged position to a job: first publications in bulk batches, the rest one by one.

    Each position handed out is leased (its next attempt moved ``lease_seconds`` ahead), so the next sweep does
    not hand it out again while its job waits in the queue; if the job dies, the lease runs out and it is handed
    out again. Jobs are enqueued after the caller commits (:func:`portal.jobs.queue.enqueue_after_commit`).
    """
    if enqueue is None:
        from portal.jobs.queue import enqueue_after_commit as enqueue
    now = now or utcnow()
    rows = due_position_ids(session, limit=limit, now=now)
    result = SweepResult()
    groups: dict[int, list[int]] = {}
    # A new position whose own sync job is still queued (or running) stays with that job: no bulk copy of it.
    with_job = _positions_with_live_job(session, [row[0] for row in rows if row[2]])
    for position_id, creditor_id, bulk in rows:
        if bulk and position_id not in with_job:
            groups.setdefault(creditor_id, []).append(position_id)
        else:
            result.singles.append(position_id)
    creditor_of = {row[0]: row[1] for row in rows}
    for ids in groups.values():
        for start in range(0, len(ids), batch_size):
            result.batches.append(ids[start:start + batch_size])
    if not rows:
        return result
    lease_until = now + timedelta(seconds=lease_seconds)
    all_ids = [row[0] for row in rows]
    for start in range(0, len(all_ids), 1000):
        session.execute(sa.update(Position).where(Position.id.in_(all_ids[start:start + 1000]))
                        .values(sync_next_at=lease_until).execution_options(synchronize_session=False))
    for batch in result.batches:
        enqueue("publish_batch", *batch, session=session, job_id=f"publish-batch-{batch[0]}-{batch[-1]}",
                replace_started=True, total=len(batch), creditor_id=creditor_of[batch[0]])
    for position_id in result.singles:
        enqueue("sync_position", position_id, session=session, job_id=sync_job_id(position_id),
                replace_started=True, creditor_id=creditor_of[position_id])
    log.info("sync sweep: %s", result)
    return result


def _positions_with_live_job(session: Session, position_ids: list[int]) -> set[int]:
    from portal.jobs.models import JobRecord

    found: set[int] = set()
    for start in range(0, len(position_ids), 1000):
        job_ids = [sync_job_id(i) for i in position_ids[start:start + 1000]]
        found.update(int(rq_id.rsplit("-", 1)[1]) for rq_id in session.scalars(
            sa.select(JobRecord.rq_id).where(JobRecord.rq_id.in_(job_ids), JobRecord.status.in_(("queued", "running")))
        ))
    return found


def sync_job_id(position_id: int) -> str:
    """The deterministic job id of a position's sync (double clicks and repeated sweeps share it)."""
    return f"sync-position-{position_id}"


# --- What officers see -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncSummary:
    """Counts for the dashboard: positions waiting for pagoPA, and those pagoPA could not take (with an error)."""

    pending: int
    failing: int
    oldest_failure_at: datetime | None


def sync_summary(session: Session, creditor_id: int) -> SyncSummary:
    """How many of the creditor's positions wait for pagoPA, and how many of them have an error."""
    pending = sa.and_(Position.creditor_id == creditor_id, Position.sync_pending.is_(True))
    failing = Position.sync_error.is_not(None)
    row = session.execute(
        sa.select(sa.func.count(), sa.func.count().filter(failing), sa.func.min(Position.sync_error_at))
        .where(pending)
    ).one()
    return SyncSummary(pending=row[0], failing=row[1], oldest_failure_at=row[2])


def failing_positions(session: Session, creditor_id: int, *, limit: int = 50) -> list[Position]:
    """The creditor's positions whose last pagoPA attempt failed, most recent failure first."""
    return list(session.scalars(
        sa.select(Position)
        .where(Position.creditor_id == creditor_id, Position.sync_pending.is_(True), Position.sync_error.is_not(None))
        .order_by(Position.sync_error_at.desc(), Position.id.desc())
        .limit(limit)
    ))
