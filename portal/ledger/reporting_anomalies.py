"""What reconciliation of the reporting flows could not square, listed until an officer resolves it with a note.

The same pattern as the receipts' anomalies (:mod:`portal.ledger.anomalies`): resolving never changes the money; it
records who looked, when and what was done, on the anomaly and on the position's timeline when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload

from portal.ledger import reporting
from portal.ledger.anomalies import AnomalyError, mark_resolved  # noqa: F401  (AnomalyError: raised through here)
from portal.ledger.flows import ReportingAnomaly
from portal.ledger.models import Position
from portal.ledger.services import record_event

#: What each kind means, for officers.
KINDS = {
    reporting.UNKNOWN_PAYMENT: "Pagamento rendicontato senza ricevuta",
    reporting.AMOUNT_MISMATCH: "Importo rendicontato diverso",
    reporting.ALREADY_REPORTED: "Pagamento rendicontato due volte",
    reporting.FLOW_TOTALS: "Totali del flusso incoerenti",
    reporting.FLOW_UNREADABLE: "Flusso illeggibile",
    reporting.NOT_REPORTED: "Ricevuta non ancora rendicontata",
    reporting.REPORT_WITHDRAWN: "Rendicontazione ritirata da una revisione",
}


@dataclass(frozen=True)
class AnomalyFilter:
    """Which anomalies to list: one kind or all, open ones or resolved too; ``scope``: the services the officer
    sees (``None``: all, and then the anomalies tied to no position too)."""

    kind: str = ""
    include_resolved: bool = False
    scope: frozenset[int] | None = None
    flow_id: int | None = None


def _visible(creditor_id: int, scope: frozenset[int] | None) -> list:
    conditions = [ReportingAnomaly.creditor_id == creditor_id]
    if scope is not None:
        conditions.append(ReportingAnomaly.position_id.in_(
            sa.select(Position.id).where(Position.service_id.in_(scope or {-1}))))
    return conditions


def list_anomalies(session: Session, creditor_id: int, flt: AnomalyFilter, *, limit: int = 200
                   ) -> list[ReportingAnomaly]:
    """Anomalies, newest first, with their flow and position loaded."""
    conditions = _visible(creditor_id, flt.scope)
    if flt.kind in KINDS:
        conditions.append(ReportingAnomaly.kind == flt.kind)
    if not flt.include_resolved:
        conditions.append(ReportingAnomaly.resolved_at.is_(None))
    if flt.flow_id is not None:
        conditions.append(ReportingAnomaly.flow_id == flt.flow_id)
    return list(session.scalars(
        sa.select(ReportingAnomaly).where(*conditions)
        .options(joinedload(ReportingAnomaly.flow), joinedload(ReportingAnomaly.position).joinedload(Position.debtor))
        .order_by(ReportingAnomaly.detected_at.desc(), ReportingAnomaly.id.desc()).limit(limit)
    ).unique())


def count_open(session: Session, creditor_id: int, scope: frozenset[int] | None = None) -> dict[str, int]:
    """Open anomalies per kind (only kinds that have some)."""
    rows = session.execute(sa.select(ReportingAnomaly.kind, sa.func.count())
                           .where(*_visible(creditor_id, scope), ReportingAnomaly.resolved_at.is_(None))
                           .group_by(ReportingAnomaly.kind))
    return {kind: count for kind, count in rows}


def get_anomaly(session: Session, creditor_id: int, anomaly_id: int, scope: frozenset[int] | None
                ) -> ReportingAnomaly | None:
    """One anomaly the officer may see, or ``None``."""
    return session.scalar(sa.select(ReportingAnomaly).where(ReportingAnomaly.id == anomaly_id,
                                                            *_visible(creditor_id, scope)))


def resolve(session: Session, anomaly: ReportingAnomaly, *, note: str, actor: str, actor_user_id: int | None) -> None:
    """Mark an anomaly as handled, with what was done.

    :raise AnomalyError: without a note, or when it was resolved already.
    """
    mark_resolved(anomaly, note, actor_user_id, example="verifica con il PSP, rimborso, …")
    if anomaly.position is not None:
        record_event(session, anomaly.position, "report_resolved", actor=actor, actor_user_id=actor_user_id,
                     anomaly=anomaly.kind, flow_id=anomaly.flow.fdr if anomaly.flow else None,
                     note=anomaly.resolution_note)
    session.flush()
