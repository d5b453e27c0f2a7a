"""What pagoPA should hold for each position, what it was confirmed to hold, and when to try again.

Each position records its *desired* pagoPA state (``pagopa_target``, ``pagopa_version``) and the state pagoPA last
*confirmed* (``pagopa_synced_target``, ``pagopa_synced_version``), plus the bookkeeping of getting there:
``sync_pending``, attempts, the next attempt, the last error. This module owns those columns: the services record an
intent with :func:`request_sync`, the sweep hands due positions to jobs, and the pagoPA adapter
(:mod:`portal.pagopa.sync`) reports each attempt's outcome with :func:`succeeded`, :func:`retry_later` or
:func:`refused`. It never talks to pagoPA and never imports the job system: work is asked for through the outbox.

A position handed to a job is *leased*: its next attempt moves :data:`LEASE_SECONDS` ahead, so the sweep leaves it
to that job; if the job is lost, the lease runs out and the sweep hands it out again. Nothing is lost in between.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal import outbox
from portal.ledger.models import Position
from portal.ledger.types import utcnow

log = logging.getLogger(__name__)

#: Values of ``Position.pagopa_target``.
PAGOPA_TARGETS = ("absent", "published", "invalid", "deleted")
#: First wait after a transient failure; it doubles at each attempt up to :data:`BACKOFF_MAX_SECONDS`.
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600
#: Wait before trying again what pagoPA refused (a data error needs an officer; a slow retry costs nothing).
REJECTED_RETRY_SECONDS = 3600
#: How long a position handed to a job by the sweep is left to it before it is handed out again (the job may have
#: have died, or still wait behind others in the queue).
LEASE_SECONDS = 300
#: The same for a position handed to its own job when it changed: such a job normally runs within a second, so a
#: lost one (worker killed, queue unreachable) is taken over by the next sweep after a minute.
OWN_JOB_LEASE_SECONDS = 60
#: Positions in one bulk publication (GPD v2 takes at most 100).
BULK_SIZE = 100
#: The tasks that do the work (declared in the job registry).
SYNC_TASK = "sync_position"
PUBLISH_TASK = "publish_batch"


# --- Decisions ---------------------------------------------------------------------------------------------------


def next_action(position: Position) -> str | None:
    """The pagoPA operation that brings pagoPA closer to the position's target, or ``None`` when they agree.

    ``create``, ``update``, ``invalidate``, ``delete``, or ``mark_paid`` (tell GPD of options paid outside pagoPA;
    a create does that too).
    """
    target, synced = position.pagopa_target, position.pagopa_synced_target
    if target == "published":
        if synced != "published":
            return "create"
        if position.pagopa_synced_version != position.pagopa_version:
            return "update"
        return "mark_paid" if position.pagopa_paid_pending else None
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


def backoff_seconds(attempts: int, retry_after: float | None = None) -> int:
    """Seconds to wait after the ``attempts``-th consecutive transient failure: 30 s doubling, at most an hour.

    A ``Retry-After`` from pagoPA is honoured when longer (still capped at the maximum).
    """
    attempts = max(attempts, 1)
    delay = BACKOFF_BASE_SECONDS * 2 ** min(attempts - 1, 20)
    if retry_after:
        delay = max(delay, int(retry_after + 0.999))
    return int(min(delay, BACKOFF_MAX_SECONDS))


def sync_job_id(position_id: int) -> str:
    """The deterministic job id of a position's sync (double clicks and repeated sweeps share it)."""
    return f"sync-position-{position_id}"


# --- Intents -----------------------------------------------------------------------------------------------------


def initial_state(*, publish: bool, now: datetime | None = None) -> dict:
    """The sync columns of a new position: to be published (the sweep does it in bulk) or kept here as a draft."""
    return {
        "pagopa_target": "published" if publish else "absent",
        "pagopa_version": 1,
        "sync_pending": publish,
        "sync_attempts": 0,
        "sync_next_at": (now or utcnow()) if publish else None,
    }


def request_sync(session: Session, position: Position, *, target: str | None = None, content_changed: bool = False,
                 enqueue: bool = True, actor_user_id: int | None = None) -> bool:
    """Record what pagoPA should now hold for ``position`` and, if that differs from what it confirmed, ask
    for a sync job after the commit.

    Call it whenever a change must reach pagoPA: ``target='published'`` when an officer publishes a draft,
    ``content_changed=True`` after editing amounts, due dates or the debtor (GPD update), ``target='invalid'``
    when cancelling a published position. With ``enqueue=False`` the periodic sweep does it (in bulk for new
    positions).

    :return: whether a sync is now pending.
    :raise ValueError: for an unknown target.
    """
    if target is not None:
        if target not in PAGOPA_TARGETS:
            raise ValueError(f"unknown pagoPA target {target!r}")
        position.pagopa_target = target
    if content_changed:
        position.pagopa_version = (position.pagopa_version or 1) + 1
    if is_converged(position):
        position.sync_pending = False
        position.sync_next_at = None
        return False
    position.sync_pending = True
    # A new intent starts a fresh series of attempts, now.
    position.sync_attempts = 0
    position.sync_next_at = utcnow()
    if enqueue:
        schedule_sync(session, position, actor_user_id=actor_user_id)
    return True


def schedule_sync(session: Session, position: Position, *, actor_user_id: int | None = None,
                  now: datetime | None = None) -> None:
    """Hand a pending position to its own sync job after the commit, leasing it to that job for a minute."""
    session.flush()
    schedule_syncs(session, [position], actor_user_id=actor_user_id, now=now)


def schedule_syncs(session: Session, positions: list[Position], *, actor_user_id: int | None = None,
                   now: datetime | None = None) -> None:
    """:func:`schedule_sync` for many positions already stored (they have their ids: no flush), once their
    intents are recorded."""
    now = now or utcnow()
    lease = now + timedelta(seconds=OWN_JOB_LEASE_SECONDS)
    for position in positions:
        position.sync_next_at = lease
        outbox.schedule(session, SYNC_TASK, position.id, job_id=sync_job_id(position.id),
                        creditor_id=position.creditor_id, created_by_id=actor_user_id)


def schedule_publications(session: Session, creditor_id: int, position_ids: list[int], *,
                          actor_user_id: int | None = None, now: datetime | None = None) -> None:
    """Hand new positions, written in bulk and due for their first publication, to GPD bulk-publication jobs after
    the commit (:data:`BULK_SIZE` each), leased to those jobs as the sweep does."""
    now = now or utcnow()
    ids = sorted(position_ids)
    for start in range(0, len(ids), BULK_SIZE):
        part = ids[start:start + BULK_SIZE]
        session.execute(sa.update(Position).where(Position.id.in_(part), Position.sync_pending.is_(True))
                        .values(sync_next_at=now + timedelta(seconds=LEASE_SECONDS))
                        .execution_options(synchronize_session=False))
        outbox.schedule(session, PUBLISH_TASK, *part, job_id=f"publish-batch-{part[0]}-{part[-1]}", total=len(part),
                        creditor_id=creditor_id, created_by_id=actor_user_id)


def set_intents(session: Session, creditor_id: int, *, published: sa.ColumnElement,
                invalid: sa.ColumnElement, now: datetime | None = None) -> None:
    """Reset the sync state of a creditor's positions in bulk: those matching ``published`` must be on pagoPA,
    those matching ``invalid`` invalidated there, the rest stay here; the sweep does the work.

    For loads that write many positions at once (the demo); confirmed states are forgotten.
    """
    now = now or utcnow()
    mine = Position.creditor_id == creditor_id
    session.execute(sa.update(Position).where(mine).values(
        pagopa_target="absent", pagopa_version=1, pagopa_synced_target=None, pagopa_synced_version=None,
        sync_pending=False, sync_attempts=0, sync_next_at=None, sync_error=None, sync_error_at=None,
    ).execution_options(synchronize_session=False))
    for target, condition in (("published", published), ("invalid", invalid)):
        session.execute(sa.update(Position).where(mine, condition).values(
            pagopa_target=target, sync_pending=True, sync_next_at=now,
        ).execution_options(synchronize_session=False))
    session.expire_all()


# --- Outcomes of an attempt --------------------------------------------------------------------------------------


def succeeded(position: Position) -> None:
    """pagoPA confirmed what was asked: clear the error and the attempts (pending only if more is left)."""
    position.sync_pending = not is_converged(position)
    position.sync_attempts = 0
    position.sync_next_at = None
    position.sync_error = None
    position.sync_error_at = None


def retry_later(position: Position, error: str, now: datetime, *, retry_after: float | None = None) -> datetime:
    """pagoPA could not be reached: keep the intent and try again after the backoff; returns when."""
    position.sync_pending = True
    position.sync_attempts = (position.sync_attempts or 0) + 1
    delay = backoff_seconds(position.sync_attempts, retry_after)
    position.sync_next_at = now + timedelta(seconds=delay)
    position.sync_error = error[:2000]
    position.sync_error_at = now
    log.warning("position %s: pagoPA unavailable (attempt %d), next try in %d s: %s", position.iupd,
                position.sync_attempts, delay, position.sync_error)
    return position.sync_next_at


def refused(position: Position, error: str, now: datetime) -> datetime:
    """pagoPA (or the data) refused the change: keep the intent, show the error, retry slowly; returns when."""
    position.sync_pending = True
    position.sync_attempts = (position.sync_attempts or 0) + 1
    position.sync_next_at = now + timedelta(seconds=REJECTED_RETRY_SECONDS)
    position.sync_error = error[:2000]
    position.sync_error_at = now
    return position.sync_next_at


# --- The sweep ---------------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What :func:`sweep` handed out."""

    batches: list[list[int]] = field(default_factory=list)
    singles: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Positions handed to jobs."""
        return len(self.singles) + sum(len(b) for b in self.batches)

    @property
    def idle(self) -> bool:
        """Nothing was due."""
        return self.count == 0

    def __str__(self) -> str:
        return (f"{self.count} posizioni da sincronizzare: {len(self.batches)} blocchi di pubblicazione, "
                f"{len(self.singles)} singole")


def due_position_ids(session: Session, *, limit: int, now: datetime | None = None, lock: bool = True) -> list[tuple]:
    """``(id, creditor_id, bulk)`` of pending positions whose next attempt is due, oldest first.

    ``bulk``: a first publication with no failed attempt yet, which can be done in a bulk call.
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


def sweep(session: Session, *, limit: int = 5000, now: datetime | None = None, schedule: bool = True,
          batch_size: int = BULK_SIZE, lease_seconds: int = LEASE_SECONDS) -> SweepResult:
    """Hand every due, unconverged position to a job: first publications in bulk batches, the rest one by one.

    Each position handed out is leased (its next attempt moved ``lease_seconds`` ahead), so the next sweep does
    not hand it out again while its job waits in the queue. The jobs go through the outbox (after the caller's
    commit); with ``schedule=False`` none is asked for, and the caller does the work itself (``flask sync sweep
    --inline``).
    """
    now = now or utcnow()
    rows = due_position_ids(session, limit=limit, now=now)
    result = SweepResult()
    if not rows:
        return result
    groups: dict[int, list[int]] = {}
    for position_id, creditor_id, bulk in rows:
        if bulk:
            groups.setdefault(creditor_id, []).append(position_id)
        else:
            result.singles.append(position_id)
    for ids in groups.values():
        for start in range(0, len(ids), batch_size):
            result.batches.append(ids[start:start + batch_size])
    lease_until = now + timedelta(seconds=lease_seconds)
    all_ids = [row[0] for row in rows]
    for start in range(0, len(all_ids), 1000):
        session.execute(sa.update(Position).where(Position.id.in_(all_ids[start:start + 1000]))
                        .values(sync_next_at=lease_until).execution_options(synchronize_session=False))
    if schedule:
        creditor_of = {row[0]: row[1] for row in rows}
        for batch in result.batches:
            outbox.schedule(session, PUBLISH_TASK, *batch, job_id=f"publish-batch-{batch[0]}-{batch[-1]}",
                            replace_started=True, total=len(batch), creditor_id=creditor_of[batch[0]])
        for position_id in result.singles:
            outbox.schedule(session, SYNC_TASK, position_id, job_id=sync_job_id(position_id), replace_started=True,
                            creditor_id=creditor_of[position_id])
    log.info("sync sweep: %s", result)
    return result


# --- What officers see -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncSummary:
    """Counts for the dashboard and ``flask sync status``: positions waiting for pagoPA, due now, with an error."""

    pending: int
    due: int
    failing: int
    oldest_failure_at: datetime | None


def sync_summary(session: Session, creditor_id: int | None = None, *, now: datetime | None = None) -> SyncSummary:
    """How many positions (of one creditor, or all) wait for pagoPA, are due now, and have an error."""
    now = now or utcnow()
    due = sa.or_(Position.sync_next_at.is_(None), Position.sync_next_at <= now)
    failing = Position.sync_error.is_not(None)
    query = sa.select(sa.func.count(), sa.func.count().filter(due), sa.func.count().filter(failing),
                      sa.func.min(Position.sync_error_at)).where(Position.sync_pending.is_(True))
    if creditor_id is not None:
        query = query.where(Position.creditor_id == creditor_id)
    row = session.execute(query).one()
    return SyncSummary(pending=row[0], due=row[1], failing=row[2], oldest_failure_at=row[3])


def failing_positions(session: Session, creditor_id: int, *, limit: int = 50) -> list[Position]:
    """The creditor's positions whose last pagoPA attempt failed, most recent failure first."""
    return list(session.scalars(
        sa.select(Position)
        .where(Position.creditor_id == creditor_id, Position.sync_pending.is_(True), Position.sync_error.is_not(None))
        .order_by(Position.sync_error_at.desc(), Position.id.desc())
        .limit(limit)
    ))
