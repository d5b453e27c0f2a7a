"""Reminder (sollecito) and litigation batches: select, preview, then process as a job with progress.

A batch freezes its selection as items (one per position); a job works through the items still without an outcome,
a chunk per transaction, and asks for the next chunk, so a batch can be stopped and resumed, and running it again
doubles nothing (an item is done once; a position is reminded once per due date unless the batch says ``repeat``;
a litigation re-issue has the old position's id as its external id, so it exists once).

Reminder: the timeline gets a ``reminded`` event with the deadline; when the service charges a reminder cost, the
position is first updated through :func:`portal.ledger.changes.update_position` (a new version goes to pagoPA
through the sync, with the deadline as new due date; the NAV stays), else nothing changes on pagoPA. The letter
goes by PEC or e-mail where the debtor has an address, else into the batch's print package.

Litigation: the position is re-read on GPD first (a citizen may just have paid: that one stops, and says so), then
it moves to ``in_litigation``, its unpaid options are cancelled and pagoPA is asked to invalidate it (the sync
deletes a draft instead); a new position (``replaces_id``) asks tax + penalty + interest + costs from the engine,
each a line of its breakdown and, where the service says so, a transfer of its own (TEFA stays with the Province).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from portal import outbox
from portal.collections import charges
from portal.collections.models import CollectionBatch, CollectionBatchItem, CollectionPolicy, Reminder
from portal.collections.settings import policies_by_service, rate_table
from portal.imports import bulk
from portal.ledger import changes, queries, sync_state
from portal.ledger import services as ledger
from portal.ledger.errors import FieldError, ValidationFailed
from portal.ledger.inputs import DebtorInput, OptionInput, PositionInput, TransferInput, validate_position
from portal.ledger.locks import take_write_lock
from portal.ledger.models import Creditor, Event, PaymentOption, Position
from portal.ledger.status import OptionStatus, PositionStatus, check_transition
from portal.ledger.types import utcnow
from portal.pagopa.errors import DebtPositionNotFound, PagoPAError
from portal.pagopa.gpd import GPDClient
from portal.pagopa.sync import GPD_PAID_STATUSES

log = logging.getLogger(__name__)

S = PositionStatus
#: Statuses a position can be reminded in (overdue and still payable).
REMINDABLE = frozenset({S.PUBLISHED, S.PARTIALLY_PAID, S.EXPIRED, S.REMINDED})
#: Statuses a position can go to litigation from (nothing of it paid: see :func:`_litigation_refusal`).
LITIGABLE = frozenset({S.EXPIRED, S.REMINDED})
#: Items processed per job (one transaction).
CHUNK = 200
BATCH_TASK = "collections_batch"
FINISH_TASK = "collections_finish"
LITIGATION_SOURCE = "collections"
KIND_LABELS = {"reminder": "Solleciti", "litigation": "Accertamenti esecutivi"}
OUTCOME_LABELS = {"reminded": "sollecitata", "litigated": "passata al contenzioso", "skipped": "saltata",
                  "paid": "pagata su pagoPA", "retry": "da riprovare"}


class BatchError(ValueError):
    """The batch cannot be started or changed (Italian message)."""


# --- Selection --------------------------------------------------------------------------------------------------


def _reminded_for_due_date():
    return sa.exists().where(Reminder.position_id == Position.id,
                             sa.or_(Reminder.due_date == Position.due_date, Reminder.deadline == Position.due_date))


def eligible_ids(creditor_id: int, kind: str, flt: queries.PositionFilter, *, today: date, repeat: bool = False,
                 ids: list[int] | None = None) -> sa.Select:
    """The ids of the positions a batch of ``kind`` would take from the filter (or from ``ids``), oldest first."""
    query = queries.matching_ids(creditor_id, flt, today).where(Position.due_date < today)
    if ids is not None:
        query = query.where(Position.id.in_(ids or [-1]))
    if kind == "reminder":
        query = query.where(Position.status.in_(REMINDABLE))
        if not repeat:
            query = query.where(~_reminded_for_due_date())
    elif kind == "litigation":
        query = query.where(Position.status.in_(LITIGABLE), Position.paid_cents == 0)
        expired_reminder = sa.exists().where(Reminder.position_id == Position.id, Reminder.deadline < today)
        needs = sa.select(CollectionPolicy.requires_reminder).where(
            CollectionPolicy.service_id == Position.service_id).scalar_subquery()
        query = query.where(sa.or_(expired_reminder, sa.func.coalesce(needs, True).is_(False)))
    else:
        raise BatchError("Tipo di lotto sconosciuto.")
    return query.order_by(None).order_by(Position.id)


@dataclass(frozen=True)
class PlannedReminder:
    position: Position
    owed_cents: int
    cost_cents: int
    deadline: date
    channel: str


@dataclass(frozen=True)
class PlannedAssessment:
    position: Position
    tax_cents: int
    breakdown: charges.Breakdown
    deadline: date


@dataclass(frozen=True)
class Preview:
    count: int
    owed_cents: int
    first: list


def channel_of(debtor) -> tuple[str, str | None]:
    """How a letter reaches the debtor: PEC, e-mail, or the print package."""
    if debtor.pec:
        return "pec", debtor.pec
    if debtor.email:
        return "email", debtor.email
    return "print", None


def preview(session: Session, creditor: Creditor, kind: str, flt: queries.PositionFilter, *, today: date,
            repeat: bool = False, ids: list[int] | None = None, first: int = 10) -> Preview:
    """Count, amount still owed and the first positions with what the batch would do to each (nothing written)."""
    selected = eligible_ids(creditor.id, kind, flt, today=today, repeat=repeat, ids=ids).subquery()
    count, owed = session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(Position.amount_cents - Position.paid_cents), 0))
        .where(Position.id.in_(sa.select(selected.c.id)))).one()
    positions = session.scalars(sa.select(Position).where(Position.id.in_(sa.select(selected.c.id)))
                                .order_by(Position.id).limit(first)).all()
    policies = policies_by_service(session, creditor.id)
    rates = rate_table(session) if kind == "litigation" else []
    plans = [plan_reminder(p, policies[p.service_id], today) if kind == "reminder"
             else plan_assessment(session, p, policies[p.service_id], rates, today) for p in positions]
    return Preview(int(count), int(owed), plans)


def plan_reminder(position: Position, policy: CollectionPolicy, today: date) -> PlannedReminder:
    channel, _ = channel_of(position.debtor)
    return PlannedReminder(position, changes.owed_cents(position), policy.reminder_cost_cents or 0,
                           today + timedelta(days=policy.reminder_days), channel)


def _reminders(session: Session, position: Position) -> list[Reminder]:
    return _reminders_of(session, [position.id]).get(position.id, [])


def _reminders_of(session: Session, position_ids: list[int]) -> dict[int, list[Reminder]]:
    """The reminders of each position (one query), oldest first."""
    found: dict[int, list[Reminder]] = {}
    for reminder in session.scalars(sa.select(Reminder).where(Reminder.position_id.in_(position_ids or [-1]))
                                    .order_by(Reminder.id)):
        found.setdefault(reminder.position_id, []).append(reminder)
    return found


def plan_assessment(session: Session, position: Position, policy: CollectionPolicy, rates, today: date, *,
                    reminders: list[Reminder] | None = None) -> PlannedAssessment:
    """What the act would ask: the tax (what is owed, less reminder costs) from its original due date.

    ``reminders``: the position's reminders when the caller read them already (else they are read here)."""
    if reminders is None:
        reminders = _reminders(session, position)
    reminder_costs = sum(r.cost_cents for r in reminders)
    tax = changes.owed_cents(position) - reminder_costs
    due = min([r.due_date for r in reminders] + [position.due_date])
    base = charges.assessment(tax, due, today, rates, policy.assessment_policy())
    lines = list(base.lines)
    if reminder_costs:
        lines.insert(len(lines) - (1 if base.amount("notification") else 0),
                     charges.Line("reminder", "Spese del sollecito", reminder_costs, "già addebitate con il sollecito"))
    return PlannedAssessment(position, tax, charges.Breakdown(tuple(lines)),
                             today + timedelta(days=policy.appeal_days))


# --- Starting, stopping, resuming -------------------------------------------------------------------------------


def start(session: Session, creditor: Creditor, kind: str, flt: queries.PositionFilter, *, today: date,
          title: str, repeat: bool = False, ids: list[int] | None = None,
          actor_user_id: int | None = None) -> CollectionBatch:
    """Freeze the selection as a batch and ask for its first chunk after the commit.

    :raise BatchError: when nothing is selected.
    """
    selected = [row[0] for row in session.execute(
        eligible_ids(creditor.id, kind, flt, today=today, repeat=repeat, ids=ids))]
    if not selected:
        raise BatchError("Nessuna posizione da lavorare con questi criteri.")
    batch = CollectionBatch(creditor_id=creditor.id, kind=kind, status="running", title=title[:140] or
                            KIND_LABELS[kind], repeat=repeat, total=len(selected), done=0,
                            created_by_id=actor_user_id)
    session.add(batch)
    session.flush()
    session.execute(sa.insert(CollectionBatchItem), [{"batch_id": batch.id, "position_id": pid} for pid in selected])
    _schedule_chunk(session, batch)
    return batch


def _schedule_chunk(session: Session, batch: CollectionBatch) -> None:
    outbox.schedule(session, BATCH_TASK, batch.id, job_id=f"collections-batch-{batch.id}-{batch.done}",
                    creditor_id=batch.creditor_id, created_by_id=batch.created_by_id, total=batch.total)


def stop(session: Session, batch: CollectionBatch) -> None:
    """Stop a running batch after the chunk at work (what is done stays done)."""
    if batch.status != "running":
        raise BatchError("Il lotto non è in corso.")
    batch.status = "stopped"


def resume(session: Session, batch: CollectionBatch) -> None:
    """Resume a stopped batch, or retry the positions pagoPA could not be asked about."""
    if batch.status == "running":
        raise BatchError("Il lotto è già in corso.")
    retried = session.execute(sa.update(CollectionBatchItem).where(
        CollectionBatchItem.batch_id == batch.id, CollectionBatchItem.outcome == "retry").values(
        outcome=None, message=None)).rowcount
    if batch.status == "done" and not retried:
        raise BatchError("Il lotto è concluso: non c'è nulla da riprendere.")
    batch.done -= retried
    batch.status = "running"
    batch.finished_at = None
    _schedule_chunk(session, batch)


def counts(session: Session, batch: CollectionBatch) -> dict[str | None, int]:
    """How many items have each outcome (``None``: still to do)."""
    return {outcome: n for outcome, n in session.execute(
        sa.select(CollectionBatchItem.outcome, sa.func.count()).where(CollectionBatchItem.batch_id == batch.id)
        .group_by(CollectionBatchItem.outcome))}


# --- The job ----------------------------------------------------------------------------------------------------


def run_chunk(session: Session, batch_id: int, *, today: date, client: GPDClient | None = None,
              chunk: int | None = None) -> str:
    """Process the next ``chunk`` items of a running batch; ask for the next chunk, or for the finish.

    Set-based: the chunk's positions are locked and read with their options, transfers and debtors, and their
    reminders, in a few statements; what the chunk writes (reminders, events, new positions with their options and
    transfers, status changes, sync requests) goes in a few multi-row statements too."""
    batch = session.scalar(sa.select(CollectionBatch).where(CollectionBatch.id == batch_id).with_for_update())
    if batch is None:
        return "lotto inesistente"
    if batch.status != "running":
        return "lotto fermato" if batch.status == "stopped" else "lotto concluso"
    items = session.scalars(sa.select(CollectionBatchItem).where(
        CollectionBatchItem.batch_id == batch.id, CollectionBatchItem.outcome.is_(None))
        .order_by(CollectionBatchItem.id).limit(chunk or CHUNK)).all()
    work(session, batch, items, today=today, client=client)
    session.flush()
    left = session.scalar(sa.select(sa.func.count()).where(CollectionBatchItem.batch_id == batch.id,
                                                           CollectionBatchItem.outcome.is_(None)))
    if left:
        _schedule_chunk(session, batch)
    else:
        batch.status = "done"
        batch.finished_at = utcnow()
        outbox.schedule(session, FINISH_TASK, batch.id, job_id=f"collections-finish-{batch.id}-{batch.done}",
                        creditor_id=batch.creditor_id, created_by_id=batch.created_by_id)
    log.info("collections batch %s (%s): %d positions done, %d left", batch.id, batch.kind, len(items), left)
    return f"{len(items)} posizioni lavorate, {left} ancora da lavorare"


def work(session: Session, batch: CollectionBatch, items: list[CollectionBatchItem], *, today: date,
         now: datetime | None = None, client: GPDClient | None = None, enqueue: bool = True) -> None:
    """Work ``items`` of ``batch`` (the body of a chunk): lock their positions, remind or litigate them, give each
    item its outcome and count them done.

    ``now``: the moment written on reminders and events (default: now). ``enqueue=False`` asks for no job after
    the commit (the syncs stay pending for the sweep): for loads that stand in for pagoPA, as the demo does."""
    creditor = session.get(Creditor, batch.creditor_id)
    policies = policies_by_service(session, creditor.id)
    actor = f"user:{batch.created_by_id}" if batch.created_by_id else "system"
    now = now or utcnow()
    if items:
        positions = _lock_positions(session, [item.position_id for item in items])
        if batch.kind == "reminder":
            _remind_chunk(session, items, positions, batch=batch, policies=policies, today=today, actor=actor,
                          now=now, enqueue=enqueue)
        else:
            _litigate_chunk(session, items, positions, creditor=creditor, batch=batch, policies=policies,
                            rates=rate_table(session), today=today, actor=actor, client=client, now=now,
                            enqueue=enqueue)
        _store_outcomes(session, items)
    batch.done += len(items)
    outbox.report_progress(batch.done, batch.total)


def _user_id(actor: str) -> int | None:
    return int(actor.split(":", 1)[1]) if actor.startswith("user:") else None


def _lock_positions(session: Session, ids: list[int]) -> dict[int, Position]:
    """Lock the positions (in id order) and read them afresh with their options, transfers and debtors, as
    :func:`portal.ledger.changes.lock` does for one (a payment may be arriving)."""
    take_write_lock(session)
    found = session.scalars(
        sa.select(Position).where(Position.id.in_(ids)).order_by(Position.id).with_for_update(of=Position)
        .options(selectinload(Position.options).selectinload(PaymentOption.transfers),
                 selectinload(Position.debtor))
        .execution_options(populate_existing=True)).all()
    return {p.id: p for p in found}


def _set(item: CollectionBatchItem, outcome: str, message: str | None = None, *, reminder_id: int | None = None,
         new_position_id: int | None = None) -> None:
    """Give the item its outcome, as stored: :func:`_store_outcomes` writes a chunk's in one statement."""
    set_committed_value(item, "outcome", outcome)
    set_committed_value(item, "message", message)
    if reminder_id is not None:
        set_committed_value(item, "reminder_id", reminder_id)
    if new_position_id is not None:
        set_committed_value(item, "new_position_id", new_position_id)


def _store_outcomes(session: Session, items: list[CollectionBatchItem]) -> None:
    """Write what :func:`_set` gave the items (one executemany; the objects already hold the values)."""
    session.execute(sa.update(CollectionBatchItem), [
        {"id": i.id, "outcome": i.outcome, "message": i.message, "reminder_id": i.reminder_id,
         "new_position_id": i.new_position_id} for i in items])


def _event(position_id: int, kind: str, *, now, actor: str, user_id: int | None, **details) -> dict:
    """One timeline entry as a row (what :func:`portal.ledger.services.record_event` adds, written in bulk)."""
    return {"position_id": position_id, "kind": kind, "at": now, "actor": actor, "actor_user_id": user_id,
            "details": details}


def _remind_chunk(session: Session, items: list[CollectionBatchItem], positions: dict[int, Position], *,
                  batch: CollectionBatch, policies: dict[int, CollectionPolicy], today: date, actor: str,
                  now: datetime, enqueue: bool) -> None:
    """Send the reminders of a chunk (see the module docstring); each item gets its outcome."""
    user_id = _user_id(actor)
    previous_of = _reminders_of(session, [item.position_id for item in items])
    chosen: list[tuple[CollectionBatchItem, Position, date, int, date, int]] = []
    for item in items:
        position = positions[item.position_id]
        policy = policies[position.service_id]
        if position.status not in REMINDABLE or position.due_date >= today:
            _set(item, "skipped", "Non più da sollecitare: pagata, annullata o non ancora scaduta.")
            continue
        previous = previous_of.get(position.id, [])
        same = [r for r in previous if position.due_date in (r.due_date, r.deadline)]
        if same and not batch.repeat:
            _set(item, "skipped", "Già sollecitata per questa scadenza (un secondo sollecito va chiesto "
                                  "esplicitamente).")
            continue
        due = same[0].due_date if same else position.due_date
        sequence = max((r.sequence for r in previous if r.due_date == due), default=0) + 1
        chosen.append((item, position, due, sequence, today + timedelta(days=policy.reminder_days),
                       policy.reminder_cost_cents or 0))
    refused = _add_costs(session, [(p, cost, deadline, policies[p.service_id]) for _, p, _, _, deadline, cost
                                   in chosen if cost], today=today, now=now, actor=actor, user_id=user_id,
                         enqueue=enqueue)
    planned: list[tuple[CollectionBatchItem, Position, str | None]] = []
    rows = []
    for item, position, due, sequence, deadline, cost in chosen:
        message = None
        if position.id in refused:
            cost, message = 0, f"Spese del sollecito non addebitate: {refused[position.id]}"[:500]
        channel, address = channel_of(position.debtor)
        rows.append({"creditor_id": position.creditor_id, "position_id": position.id, "batch_id": batch.id,
                     "due_date": due, "sequence": sequence, "deadline": deadline,
                     "amount_cents": changes.owed_cents(position), "cost_cents": cost, "channel": channel,
                     "address": address, "issued_at": now, "issued_by_id": user_id, "delivery_status": "queued"})
        planned.append((item, position, message))
    if not rows:
        return
    # One reminder per position in a chunk: the ids come back keyed by position, in one multi-row INSERT.
    # render_nulls: rows with and without an address (or an issuer) stay in one statement.
    reminder_of = dict(session.execute(sa.insert(Reminder).returning(Reminder.position_id, Reminder.id)
                                       .execution_options(render_nulls=True), rows).all())
    events = []
    for (item, position, message), row in zip(planned, rows, strict=True):
        reminder_id = reminder_of[position.id]
        previous = position.status
        if previous != S.REMINDED:
            check_transition(previous, S.REMINDED)
            position.status = S.REMINDED
        events.append(_event(position.id, S.REMINDED.value, now=now, actor=actor, user_id=user_id,
                             previous=previous.value, deadline=row["deadline"].isoformat(),
                             due_date=row["due_date"].isoformat(), channel=row["channel"],
                             cost_cents=row["cost_cents"], sequence=row["sequence"], batch_id=batch.id,
                             reminder_id=reminder_id))
        _set(item, "reminded", message, reminder_id=reminder_id)
    bulk.insert_rows(session, Event.__table__, events)


@dataclass
class _Reissue:
    item: CollectionBatchItem
    position: Position
    plan: PlannedAssessment
    data: PositionInput
    iupd: str


def _litigation_refusal(position: Position, policy: CollectionPolicy, reminders: list[Reminder],
                        today: date) -> str | None:
    """Why the position no longer goes to litigation (``None`` when it does), in Italian."""
    if position.status not in LITIGABLE:
        return "Non più da portare in contenzioso: pagata, annullata o già in contenzioso."
    if position.paid_cents or any(o.status == OptionStatus.PAID for o in position.options):
        return "Pagata in parte: va riemessa per il solo residuo, a mano."
    if policy.requires_reminder and not any(r.deadline < today for r in reminders):
        return "Il termine del sollecito non è ancora scaduto."
    return None


def _paid_on_pagopa(position: Position, creditor: Creditor, client: GPDClient | None) -> tuple[str, str] | None:
    """Re-read a published position on GPD: (outcome, message) when it must not go on now, else ``None``."""
    if position.pagopa_synced_target != "published":
        return None
    if client is None:
        return "retry", "pagoPA non configurato: impossibile verificare che non sia stata pagata."
    try:
        remote = client.get(creditor.fiscal_code, position.iupd)
    except DebtPositionNotFound:
        remote = None
    except PagoPAError as exc:
        return "retry", f"pagoPA non raggiungibile, si riprova riprendendo il lotto: {exc}"[:500]
    if remote is not None and (remote.status in GPD_PAID_STATUSES
                               or any(o.status != "PO_UNPAID" for o in remote.options)):
        return ("paid", "Il cittadino ha appena pagato su pagoPA: la posizione non passa al contenzioso "
                        "(la ricevuta è in arrivo).")
    return None


def _litigate_chunk(session: Session, items: list[CollectionBatchItem], positions: dict[int, Position], *,
                    creditor: Creditor, batch: CollectionBatch, policies: dict[int, CollectionPolicy], rates,
                    today: date, actor: str, client: GPDClient | None, now: datetime, enqueue: bool) -> None:
    """Move a chunk's positions to litigation and re-issue them (see the module docstring)."""
    user_id = _user_id(actor)
    ids = [item.position_id for item in items]
    done = dict(session.execute(sa.select(Position.external_id, Position.id).where(
        Position.creditor_id == creditor.id, Position.source == LITIGATION_SOURCE,
        Position.external_id.in_([_external_id(positions[i]) for i in ids]))).all())
    reminders = _reminders_of(session, ids)
    reissues: list[_Reissue] = []
    for n, item in enumerate(items, start=1):
        position = positions[item.position_id]
        policy = policies[position.service_id]
        existing = done.get(_external_id(position))
        if existing is not None:
            _set(item, "litigated", "Già riemessa.", new_position_id=existing)
            continue
        refusal = _litigation_refusal(position, policy, reminders.get(position.id, []), today)
        if refusal:
            _set(item, "skipped", refusal)
            continue
        stop = _paid_on_pagopa(position, creditor, client)
        outbox.report_progress(batch.done + n, batch.total)
        if stop:
            _set(item, *stop)
            continue
        plan = plan_assessment(session, position, policy, rates, today, reminders=reminders.get(position.id, []))
        data = _assessment_input(position, creditor, policy, plan)
        service = position.service
        try:
            if not service.active:
                raise ValidationFailed([FieldError("service_id", "Il servizio non è attivo.")])
            validate_position(data, today=today, creditor_fiscal_code=creditor.fiscal_code,
                              default_iban=service.account.iban, default_taxonomy=service.taxonomy_code)
        except ValidationFailed as exc:
            _set(item, "skipped", f"Il nuovo avviso non si può emettere: {exc}"[:500])
            continue
        reissues.append(_Reissue(item, position, plan, data, ledger.new_iupd(creditor)))
    if reissues:
        _reissue(session, reissues, creditor=creditor, batch=batch, actor=actor, user_id=user_id, now=now,
                 enqueue=enqueue)


def _reissue(session: Session, reissues: list[_Reissue], *, creditor: Creditor, batch: CollectionBatch, actor: str,
             user_id: int | None, now: datetime, enqueue: bool) -> None:
    """Write the new positions in bulk (one block of IUVs, multi-row inserts), move the old ones to litigation
    (their unpaid options cancelled in one statement, pagoPA asked to invalidate them) and log both timelines."""
    services = {r.position.service_id: r.position.service for r in reissues}
    context = bulk.WriteContext(creditor=creditor, services=services, import_id=None, actor=actor,
                                actor_user_id=user_id)
    new_ids = bulk.write_new_positions(session, context, [r.data for r in reissues], now=now,
                                       extra=[{"iupd": r.iupd, "replaces_id": r.position.id} for r in reissues])
    old_ids = [r.position.id for r in reissues]
    session.execute(sa.update(PaymentOption).where(PaymentOption.position_id.in_(old_ids),
                                                   PaymentOption.status == OptionStatus.UNPAID)
                    .values(status=OptionStatus.CANCELLED).execution_options(synchronize_session=False))
    events, invalidate = [], []
    for r, new_id in zip(reissues, new_ids, strict=True):
        position = r.position
        for option in position.options:
            if option.status == OptionStatus.UNPAID:
                set_committed_value(option, "status", OptionStatus.CANCELLED)
        previous = position.status
        check_transition(previous, S.IN_LITIGATION)
        position.status = S.IN_LITIGATION
        if position.pagopa_target != "absent" and sync_state.request_sync(
                session, position, target="invalid", enqueue=False):
            invalidate.append(position)
        amount = r.data.single.amount_cents
        events += [
            _event(position.id, S.IN_LITIGATION.value, now=now, actor=actor, user_id=user_id,
                   previous=previous.value, batch_id=batch.id, new_position_id=new_id,
                   reason="Avviso di accertamento esecutivo"),
            _event(position.id, "reissued", now=now, actor=actor, user_id=user_id, new_position_id=new_id,
                   new_iupd=r.iupd, amount_cents=amount),
            _event(new_id, "reissue_of", now=now, actor=actor, user_id=user_id, old_position_id=position.id,
                   old_iupd=position.iupd, breakdown=r.plan.breakdown.as_dicts(),
                   deadline=r.plan.deadline.isoformat(), batch_id=batch.id),
        ]
        _set(r.item, "litigated", new_position_id=new_id)
    bulk.insert_rows(session, Event.__table__, events)
    if enqueue:
        sync_state.schedule_syncs(session, invalidate, actor_user_id=user_id, now=now)
        publish = [new_id for r, new_id in zip(reissues, new_ids, strict=True) if not r.position.service.draft_first]
        sync_state.schedule_publications(session, creditor.id, publish, actor_user_id=user_id, now=now)


def _add_costs(session: Session, charged: list[tuple[Position, int, date, CollectionPolicy]], *, today: date,
               now, actor: str, user_id: int | None, enqueue: bool) -> dict[int, Exception]:
    """Add each reminder cost to what is owed and give the overdue options the reminder's deadline, for a chunk's
    positions at once (:func:`portal.ledger.changes.update_positions`: a new version of each goes to pagoPA
    through the sync). Returns why a position could not be charged, by position id."""
    if not charged:
        return {}
    updates = [(position, _cost_input(position, cost, deadline, policy, today=today))
               for position, cost, deadline, policy in charged]
    results = changes.update_positions(session, updates, actor=actor, actor_user_id=user_id, today=today, now=now,
                                       reason="Sollecito: spese addebitate e nuovo termine di pagamento",
                                       enqueue=enqueue)
    return {position.id: result for (position, _), result in zip(updates, results, strict=True)
            if isinstance(result, Exception)}


def _cost_input(position: Position, cost: int, deadline: date, policy: CollectionPolicy, *,
                today: date) -> PositionInput:
    """The position with the reminder cost on the single payment and the first unpaid installment, the overdue
    options due on the reminder's deadline (installments a day apart from there: a plan's due dates grow)."""
    data = changes.position_input(position)
    charged = [o for o in ([data.single] if data.single else []) + data.installments[:1] if o]
    if data.single and data.single.due_date < today:
        data.single.due_date = deadline
    previous = None
    for option in data.installments:
        due = deadline if option.due_date < today else option.due_date
        option.due_date = due if previous is None else max(due, previous + timedelta(days=1))
        previous = option.due_date
    creditor_cf = position.service.creditor.fiscal_code
    for option in charged:
        option.amount_cents += cost
        if not option.transfers:
            continue
        if policy.costs_taxonomy_code and len(option.transfers) < 5:
            option.transfers.append(TransferInput(amount_cents=cost, taxonomy_code=policy.costs_taxonomy_code,
                                                  iban=position.service.account.iban,
                                                  beneficiary_fiscal_code=creditor_cf,
                                                  remittance="Spese del sollecito"))
        else:
            own = next((t for t in option.transfers if t.beneficiary_fiscal_code in (None, creditor_cf)),
                       option.transfers[0])
            own.amount_cents += cost
    return data


def _external_id(position: Position) -> str:
    return f"accertamento:{position.id}"


def _assessment_input(position: Position, creditor: Creditor, policy: CollectionPolicy,
                      plan: PlannedAssessment) -> PositionInput:
    """The new position: one single payment whose transfers split the breakdown (see the module docstring)."""
    bd = plan.breakdown
    groups: dict[tuple, int] = {}
    unpaid = [o for o in position.options if o.status == OptionStatus.UNPAID]
    single = next((o for o in unpaid if o.kind == "single"), None)
    for option in [single] if single else unpaid:
        for t in option.transfers:
            key = (t.beneficiary_fiscal_code, t.beneficiary_name, t.iban, t.taxonomy_code)
            groups[key] = groups.get(key, 0) + t.amount_cents
    if not groups:
        groups[(creditor.fiscal_code, creditor.name, position.service.account.iban, position.service.taxonomy_code)] = 1
    keys = list(groups)
    taxes = charges.split_by_shares(plan.tax_cents, [groups[k] for k in keys])
    penalties = charges.split_by_shares(bd.amount("penalty"), [groups[k] for k in keys])
    interests = charges.split_by_shares(bd.amount("interest"), [groups[k] for k in keys])
    costs = bd.amount("notification") + bd.amount("reminder")
    own_tax, own_penalty, transfers = [], 0, []
    tax_code = policy.assessment_taxonomy_code
    for key, tax, pen, intr in zip(keys, taxes, penalties, interests, strict=True):
        cf, name, iban, taxonomy = key
        if cf != creditor.fiscal_code:
            transfers.append(TransferInput(amount_cents=tax + pen + intr, iban=iban, taxonomy_code=taxonomy,
                                           beneficiary_fiscal_code=cf, beneficiary_name=name,
                                           remittance=f"Accertamento: quota {name}: tributo, sanzione, interessi"
                                           [:140]))
            continue
        separate = bool(policy.penalty_taxonomy_code)
        own_penalty += pen + intr if separate else 0
        own_tax.append(TransferInput(amount_cents=tax + (0 if separate else pen + intr), iban=iban,
                                     taxonomy_code=tax_code or taxonomy, beneficiary_fiscal_code=cf,
                                     beneficiary_name=name, remittance="Accertamento: tributo"
                                     + ("" if separate else ", sanzione e interessi")))
    if not own_tax:
        own_tax.append(TransferInput(amount_cents=0, iban=position.service.account.iban,
                                     taxonomy_code=tax_code or position.service.taxonomy_code,
                                     beneficiary_fiscal_code=creditor.fiscal_code, beneficiary_name=creditor.name,
                                     remittance="Accertamento: spese"))
    extra = []
    if own_penalty:
        extra.append(TransferInput(amount_cents=own_penalty, iban=position.service.account.iban,
                                   taxonomy_code=policy.penalty_taxonomy_code,
                                   beneficiary_fiscal_code=creditor.fiscal_code, beneficiary_name=creditor.name,
                                   remittance="Accertamento: sanzione e interessi"))
    if costs and policy.costs_taxonomy_code:
        extra.append(TransferInput(amount_cents=costs, iban=position.service.account.iban,
                                   taxonomy_code=policy.costs_taxonomy_code,
                                   beneficiary_fiscal_code=creditor.fiscal_code, beneficiary_name=creditor.name,
                                   remittance="Accertamento: spese di notifica"))
    elif costs:
        own_tax[0].amount_cents += costs
        own_tax[0].remittance = (own_tax[0].remittance or "") + " e spese"
    all_transfers = [t for t in own_tax + transfers + extra if t.amount_cents > 0]
    while len(all_transfers) > 5:  # GPD takes at most five: fold the extra ones into the first own transfer
        folded = all_transfers.pop()
        all_transfers[0].amount_cents += folded.amount_cents
    d = position.debtor
    subject = f"Avviso di accertamento esecutivo - {position.subject}"[:140]
    return PositionInput(
        service_id=position.service_id,
        debtor=DebtorInput(fiscal_code=d.fiscal_code, name=d.name, kind=d.kind, street=d.street,
                           civic_number=d.civic_number, postal_code=d.postal_code, city=d.city, province=d.province,
                           country=d.country or "IT", email=d.email, pec=d.pec, phone=d.phone),
        subject=subject,
        single=OptionInput(amount_cents=bd.cents, due_date=plan.deadline, transfers=all_transfers),
        external_id=_external_id(position),
        source=LITIGATION_SOURCE,
    )
