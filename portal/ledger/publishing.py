"""Publishing drafts: a service that keeps new positions as drafts (``draft_first``) hands them to pagoPA only when
an officer says so, one position or a whole selection of the list, with the checks a new position passes.

Publishing records the intent (the sync then loads the position on GPD and it turns "Caricata su pagoPA" once GPD
confirms) and an event; a selection is written set-based and published by the sweep in GPD bulk calls, which the
outbox asks for at once after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal import outbox
from portal.ledger import queries, sync_state
from portal.ledger.models import Event, PaymentOption, Position, Service
from portal.ledger.services import record_event
from portal.ledger.status import OptionStatus, PositionStatus
from portal.ledger.types import utcnow

#: The timeline event of a publication asked for by an officer.
EVENT = "publish_requested"


class PublishRefused(ValueError):
    """The position cannot be published; the message says why, in Italian."""


def is_publishable_draft(position: Position) -> bool:
    """A draft kept here (not already on its way to pagoPA)."""
    return position.status == PositionStatus.DRAFT and position.pagopa_target == "absent"


def check_publishable(position: Position, *, today: date) -> None:
    """The checks of a new position, again at publication: a draft, an active service, no due date passed.

    :raise PublishRefused: with the reason.
    """
    if not is_publishable_draft(position):
        if position.status == PositionStatus.DRAFT:
            raise PublishRefused("La pubblicazione su pagoPA è già stata richiesta.")
        raise PublishRefused("Solo una bozza può essere pubblicata.")
    if not position.service.active:
        raise PublishRefused("Il servizio non è attivo: riattivarlo prima di pubblicare.")
    past = [o for o in position.options if o.status == OptionStatus.UNPAID and o.due_date < today]
    if past:
        raise PublishRefused("Una scadenza è già passata: correggere la posizione prima di pubblicarla.")


def publish_position(session: Session, position: Position, *, actor: str, actor_user_id: int | None = None,
                     today: date | None = None) -> None:
    """Ask for the draft to be loaded on pagoPA (its own sync job, after the commit).

    :raise PublishRefused: if it is not a publishable draft.
    """
    check_publishable(position, today=today or date.today())
    record_event(session, position, EVENT, actor=actor, actor_user_id=actor_user_id)
    sync_state.request_sync(session, position, target="published", actor_user_id=actor_user_id)


@dataclass(frozen=True)
class SelectionResult:
    """What publishing a selection did: drafts handed to pagoPA, and those left because of a check."""

    published: int
    past_due: int
    inactive_service: int


def _drafts(creditor_id: int, flt: queries.PositionFilter, today: date) -> sa.Select:
    """Ids of the kept drafts among the positions ``flt`` selects."""
    return queries.matching_ids(creditor_id, flt, today).where(
        Position.status == PositionStatus.DRAFT, Position.pagopa_target == "absent")


def count_selection(session: Session, creditor_id: int, flt: queries.PositionFilter, *,
                    today: date | None = None) -> int:
    """How many kept drafts the filter selects (what the confirmation says)."""
    ids = _drafts(creditor_id, flt, today or date.today()).subquery()
    return session.scalar(sa.select(sa.func.count()).select_from(ids)) or 0


def publish_selection(session: Session, creditor_id: int, flt: queries.PositionFilter, *, actor: str,
                      actor_user_id: int | None = None, today: date | None = None) -> SelectionResult:
    """Publish every kept draft the filter selects that passes the checks; one event each; set-based."""
    today = today or date.today()
    drafts = _drafts(creditor_id, flt, today)
    past_due = sa.select(PaymentOption.position_id).where(PaymentOption.status == OptionStatus.UNPAID,
                                                          PaymentOption.due_date < today)
    inactive = sa.select(Service.id).where(Service.creditor_id == creditor_id, Service.active.is_(False))
    counts = session.execute(sa.select(
        sa.func.count(),
        sa.func.count().filter(Position.id.in_(past_due)),
        sa.func.count().filter(Position.service_id.in_(inactive)),
    ).where(Position.id.in_(drafts))).one()
    ready = drafts.where(Position.id.not_in(past_due), Position.service_id.not_in(inactive))
    ids = list(session.scalars(ready.order_by(Position.id)))
    now = utcnow()
    for start in range(0, len(ids), 1000):
        chunk = ids[start:start + 1000]
        session.execute(sa.update(Position).where(Position.id.in_(chunk)).values(
            pagopa_target="published", sync_pending=True, sync_attempts=0, sync_next_at=now, updated_at=now,
        ).execution_options(synchronize_session=False))
        session.execute(sa.insert(Event), [
            {"position_id": pid, "kind": EVENT, "actor": actor, "actor_user_id": actor_user_id, "at": now,
             "details": {"selection": True}} for pid in chunk])
    session.expire_all()
    if ids:
        # The sweep publishes them in GPD bulk calls: now, rather than at its next period.
        outbox.schedule(session, "sync_sweep", job_id="periodic-sync_sweep", creditor_id=creditor_id,
                        created_by_id=actor_user_id)
    return SelectionResult(published=len(ids), past_due=counts[1], inactive_service=counts[2])
