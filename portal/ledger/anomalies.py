"""Receipts that need an officer: money arrived but could not simply pay an open option.

Every flagged receipt (unknown notice or another creditor's, amount different from what was due, a notice already
paid, a cancelled position) stays listed until an officer resolves it with a note (refund made, offset against
another credit, …). Resolving never changes the money: it records who looked at it, when and what was done, on the
receipt and, when there is one, on the position's timeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload

from portal.ledger.models import Position, Receipt
from portal.ledger.payments import (
    FLAG_ALREADY_PAID,
    FLAG_AMOUNT_MISMATCH,
    FLAG_CANCELLED_POSITION,
    FLAG_UNKNOWN_IUV,
)
from portal.ledger.services import record_event
from portal.ledger.types import utcnow

#: What each flag means, for officers.
KINDS = {
    FLAG_UNKNOWN_IUV: "Avviso sconosciuto o di un altro ente",
    FLAG_AMOUNT_MISMATCH: "Importo diverso dal dovuto",
    FLAG_ALREADY_PAID: "Avviso già pagato",
    FLAG_CANCELLED_POSITION: "Posizione o rata annullata",
}
#: Longest resolution note kept.
NOTE_MAX = 1000


class AnomalyError(ValueError):
    """The resolution cannot be recorded (no note, already resolved); the message says why, in Italian."""


@dataclass(frozen=True)
class AnomalyFilter:
    """Which flagged receipts to list: one kind or all, open ones or resolved ones too; ``scope`` is the
    services the officer sees (``None``: all, and then receipts that match no position too)."""

    kind: str = ""
    include_resolved: bool = False
    scope: frozenset[int] | None = None


def _visible(creditor_id: int, scope: frozenset[int] | None) -> list:
    conditions = [Receipt.creditor_id == creditor_id, Receipt.flag.is_not(None)]
    if scope is not None:
        # A scoped officer sees the receipts of positions of their services; nobody's receipts are for the
        # officers who see every service.
        conditions.append(Receipt.position_id.in_(
            sa.select(Position.id).where(Position.service_id.in_(scope or {-1}))))
    return conditions


def list_anomalies(session: Session, creditor_id: int, flt: AnomalyFilter, *, limit: int = 200) -> list[Receipt]:
    """Flagged receipts, newest first, with their position loaded."""
    conditions = _visible(creditor_id, flt.scope)
    if flt.kind in KINDS:
        conditions.append(Receipt.flag == flt.kind)
    if not flt.include_resolved:
        conditions.append(Receipt.resolved_at.is_(None))
    return list(session.scalars(
        sa.select(Receipt).where(*conditions).options(joinedload(Receipt.position).joinedload(Position.debtor))
        .order_by(Receipt.received_at.desc(), Receipt.id.desc()).limit(limit)
    ).unique())


def count_open(session: Session, creditor_id: int, scope: frozenset[int] | None = None) -> dict[str, int]:
    """Open anomalies per kind (only kinds that have some)."""
    rows = session.execute(
        sa.select(Receipt.flag, sa.func.count())
        .where(*_visible(creditor_id, scope), Receipt.resolved_at.is_(None))
        .group_by(Receipt.flag)
    )
    return {flag: count for flag, count in rows}


def get_anomaly(session: Session, creditor_id: int, receipt_id: int, scope: frozenset[int] | None) -> Receipt | None:
    """One flagged receipt the officer may see, or ``None``."""
    return session.scalar(sa.select(Receipt).where(Receipt.id == receipt_id, *_visible(creditor_id, scope)))


def mark_resolved(record, note: str, actor_user_id: int | None, *, example: str) -> None:
    """Stamp an anomaly (a flagged receipt, a reconciliation anomaly: anything with ``resolved_at``,
    ``resolved_by_id`` and ``resolution_note``) as handled, with the note of what was done.

    :raise AnomalyError: without a note (``example`` says what one looks like), or when it was resolved already.
    """
    note = " ".join((note or "").split())
    if not note:
        raise AnomalyError(f"Indicare come è stata risolta l'anomalia ({example}).")
    if record.resolved_at is not None:
        raise AnomalyError("L'anomalia è già stata risolta.")
    record.resolved_at = utcnow()
    record.resolved_by_id = actor_user_id
    record.resolution_note = note[:NOTE_MAX]


def resolve(session: Session, receipt: Receipt, *, note: str, actor: str, actor_user_id: int | None) -> None:
    """Mark a flagged receipt as handled, with what was done.

    :raise AnomalyError: without a note, or when it was resolved already.
    """
    mark_resolved(receipt, note, actor_user_id, example="rimborso, compensazione, …")
    if receipt.position is not None:
        record_event(session, receipt.position, "receipt_resolved", actor=actor, actor_user_id=actor_user_id,
                     receipt_id=receipt.receipt_id, flag=receipt.flag, note=receipt.resolution_note)
    session.flush()
