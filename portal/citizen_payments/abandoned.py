"""Spontaneous payments a citizen started and never paid: after ``CITIZEN_ABANDONED_DAYS`` their positions are
cancelled through the ledger (an event on the timeline, the notice no longer payable, pagoPA asked to invalidate
it), so abandoned forms do not stay among the Comune's open credits.

Only positions the portal created for a form (source ``citizen``) with nothing paid are touched: a notice a citizen
paid from the cart is the Comune's own position and never cancelled here. Each is locked first, so a receipt
arriving at the same moment either lands before (and the position is no longer a candidate) or after (and is
recorded and flagged, as for any cancelled position).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.citizen_payments.spontaneous import SOURCE
from portal.ledger import services as ledger
from portal.ledger.models import Position
from portal.ledger.status import InvalidTransition, PositionStatus

log = logging.getLogger(__name__)

#: Who cancels them, on the timeline.
ACTOR = "system"
#: Statuses of a position that was never paid: waiting for pagoPA, payable, or past its due date.
UNPAID = (PositionStatus.DRAFT, PositionStatus.PUBLISHED, PositionStatus.EXPIRED)
#: Positions handled in one run (the periodic job takes the rest at its next run).
BATCH = 500


def candidates(session: Session, *, days: int, now: datetime, limit: int = BATCH) -> list[int]:
    """Ids of citizen positions created more than ``days`` days before ``now`` and never paid, oldest first."""
    return list(session.scalars(
        sa.select(Position.id)
        .where(Position.source == SOURCE, Position.status.in_(UNPAID), Position.paid_cents == 0,
               Position.created_at < now - timedelta(days=days))
        .order_by(Position.id).limit(limit)))


def cancel_abandoned(session: Session, *, days: int, now: datetime, limit: int = BATCH) -> list[int]:
    """Cancel the citizen positions abandoned for more than ``days`` days; returns the ids cancelled.

    Flushes, never commits (the job commits once).
    :raise ValueError: when ``days`` is not positive.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    reason = (f"Pagamento online non completato entro {days} giorni: annullato automaticamente "
              f"(CITIZEN_ABANDONED_DAYS).")
    cancelled = []
    for position_id in candidates(session, days=days, now=now, limit=limit):
        position = session.scalar(sa.select(Position).where(Position.id == position_id)
                                  .with_for_update(skip_locked=True, of=Position))
        # Locked by a receipt or a sync right now, or changed since the selection: the next run looks again.
        if position is None or position.status not in UNPAID or position.paid_cents:
            continue
        try:
            ledger.cancel_position(session, position, reason=reason, actor=ACTOR)
        except InvalidTransition as exc:
            log.warning("abandoned citizen position %s not cancelled: %s", position.iupd, exc)
            continue
        cancelled.append(position.id)
    session.flush()
    if cancelled:
        log.info("%d abandoned citizen positions cancelled (older than %d days)", len(cancelled), days)
    return cancelled
