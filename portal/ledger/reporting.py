"""Reconciliation of reporting flows (FdR) with our receipts: which money the Comune's bank actually received.

Plain Python like the rest of the ledger: it takes the session, flushes, never commits, and knows nothing of the
FdR API (the adapter in :mod:`portal.pagopa.fdr_sync` turns the API's answers into :class:`FlowHeader` and
:class:`FlowLine`).

Each line of a flow names IUV, IUR and transfer index. Matched to our receipt (same IUV, receipt id = IUR) and to
the transfer with that index, it *reports* the transfer: the line becomes ``active`` (a partial unique index
allows one active line per transfer, so nothing is ever counted twice). An option is reported once all its
transfers to the creditor itself are (a beneficiary's share, e.g. TEFA, is reported to that beneficiary), and a
paid position becomes ``reported`` once all its paid options are, with the flow's references on its timeline.

What does not square becomes a :class:`~portal.ledger.flows.ReportingAnomaly`: a line with no receipt of ours, an
amount different from the transfer's, money already reported by another flow, a header that disagrees with its
lines, and (checked by :func:`flag_unreported`) a receipt no flow covered within the configured days.

A later revision of a flow replaces the earlier one: the earlier lines stop counting, the new ones are matched,
and a payment the new revision no longer lists is reported withdrawn (an anomaly: a reported position stays
``reported``, which is final, and an officer checks it).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.ledger import offline_payments
from portal.ledger.flows import (
    FLOW_CURRENT,
    FLOW_REJECTED,
    FLOW_SUPERSEDED,
    LINE_ALREADY_REPORTED,
    LINE_AMOUNT_MISMATCH,
    LINE_MATCHED,
    LINE_SUPERSEDED,
    LINE_UNKNOWN,
    ReportedPayment,
    ReportingAnomaly,
    ReportingFlow,
)
from portal.ledger.locks import take_write_lock
from portal.ledger.models import Creditor, PaymentOption, Position, Receipt, Transfer
from portal.ledger.services import record_event, transition
from portal.ledger.status import OptionStatus, PositionStatus
from portal.ledger.types import utcnow

log = logging.getLogger(__name__)

ACTOR = "pagopa"

#: Anomaly kinds (``ReportingAnomaly.kind``).
UNKNOWN_PAYMENT = "unknown_payment"
AMOUNT_MISMATCH = "amount_mismatch"
ALREADY_REPORTED = "already_reported"
FLOW_TOTALS = "flow_totals"
FLOW_UNREADABLE = "flow_rejected"
NOT_REPORTED = "not_reported"
REPORT_WITHDRAWN = "report_withdrawn"

#: Receipts whose money should come back in a flow (a flagged "not ours" receipt may not).
_REPORTABLE_FLAGS = (None, "amount_mismatch")


@dataclass(frozen=True)
class FlowHeader:
    """The header of one flow revision, in our terms (cents, aware datetimes)."""

    fdr: str
    revision: int
    psp_id: str
    psp_name: str | None = None
    regulation: str | None = None
    regulation_date: date | None = None
    flow_date: datetime | None = None
    published_at: datetime | None = None
    total_payments: int = 0
    sum_cents: int = 0
    raw: dict | None = None


@dataclass(frozen=True)
class FlowLine:
    """One payment line of a flow."""

    index: int
    iuv: str
    iur: str
    id_transfer: int
    amount_cents: int
    pay_status: str = "EXECUTED"
    pay_date: datetime | None = None


@dataclass
class FlowOutcome:
    """What :func:`record_flow` did with one flow revision."""

    flow: ReportingFlow | None
    #: The same revision was stored already: nothing changed.
    duplicate: bool = False
    matched: int = 0
    anomalies: int = 0
    reported_positions: list[int] = field(default_factory=list)


def stored_revision(session: Session, creditor_id: int, fdr: str, psp_id: str) -> int | None:
    """The highest revision of this flow we stored (``None``: never seen)."""
    return session.scalar(sa.select(sa.func.max(ReportingFlow.revision)).where(
        ReportingFlow.creditor_id == creditor_id, ReportingFlow.fdr == fdr, ReportingFlow.psp_id == psp_id))


def last_published(session: Session, creditor_id: int) -> datetime | None:
    """Publication time of the newest flow stored for the creditor (where the next listing may start)."""
    return session.scalar(sa.select(sa.func.max(ReportingFlow.published_at))
                          .where(ReportingFlow.creditor_id == creditor_id))


def record_rejected_flow(session: Session, creditor: Creditor, *, fdr: str, psp_id: str, revision: int,
                         error: str) -> ReportingFlow | None:
    """Keep a flow revision we could not read (e.g. an amount with three decimals) and flag it; once only."""
    if _find(session, creditor.id, fdr, psp_id, revision) is not None:
        return None
    flow = ReportingFlow(creditor_id=creditor.id, fdr=fdr, psp_id=psp_id, revision=revision, status=FLOW_REJECTED,
                         error=error[:2000])
    session.add(flow)
    session.flush()
    session.add(ReportingAnomaly(creditor_id=creditor.id, kind=FLOW_UNREADABLE, flow_id=flow.id, detail=error[:2000]))
    session.flush()
    log.warning("flow %s rev %s (PSP %s) rejected: %s", fdr, revision, psp_id, error)
    return flow


def record_flow(session: Session, creditor: Creditor, header: FlowHeader, lines: list[FlowLine], *,
                actor: str = ACTOR, now: datetime | None = None) -> FlowOutcome:
    """Store one flow revision with its lines and reconcile it with our receipts (see the module docstring).

    The same revision again changes nothing (``duplicate``). A revision older than one stored is kept as
    superseded, unmatched.
    """
    now = now or utcnow()
    take_write_lock(session)
    if _find(session, creditor.id, header.fdr, header.psp_id, header.revision) is not None:
        return FlowOutcome(flow=None, duplicate=True)
    newest = stored_revision(session, creditor.id, header.fdr, header.psp_id)
    stale = newest is not None and newest > header.revision
    flow = ReportingFlow(
        creditor_id=creditor.id, fdr=header.fdr, revision=header.revision, psp_id=header.psp_id,
        psp_name=header.psp_name, status=FLOW_SUPERSEDED if stale else FLOW_CURRENT, regulation=header.regulation,
        regulation_date=header.regulation_date, flow_date=header.flow_date, published_at=header.published_at,
        total_payments=header.total_payments, sum_cents=header.sum_cents, raw=header.raw, fetched_at=now,
        superseded_at=now if stale else None)
    session.add(flow)
    session.flush()
    if stale:
        session.add_all(_line_row(flow, line, LINE_SUPERSEDED) for line in lines)
        session.flush()
        return FlowOutcome(flow=flow)

    withdrawn = _supersede_earlier(session, creditor, flow, now)
    outcome = FlowOutcome(flow=flow)
    touched_options = _match_lines(session, creditor, flow, lines, outcome)
    outcome.anomalies += _check_totals(session, flow, lines)
    refs = _refs(flow)
    still_withdrawn = _withdrawn_transfers(session, withdrawn)
    outcome.anomalies += _flag_withdrawn(session, creditor, flow, still_withdrawn, actor=actor)
    touched_options |= {transfer.option_id for transfer in withdrawn}
    outcome.reported_positions = _settle_options(session, creditor, touched_options, refs, actor=actor, now=now)
    session.flush()
    log.info("flow %s rev %s: %s lines, %s matched, %s anomalies", flow.fdr, flow.revision, len(lines),
             outcome.matched, outcome.anomalies)
    return outcome


def _find(session: Session, creditor_id: int, fdr: str, psp_id: str, revision: int) -> ReportingFlow | None:
    return session.scalar(sa.select(ReportingFlow).where(
        ReportingFlow.creditor_id == creditor_id, ReportingFlow.fdr == fdr, ReportingFlow.psp_id == psp_id,
        ReportingFlow.revision == revision))


def _line_row(flow: ReportingFlow, line: FlowLine, outcome: str) -> ReportedPayment:
    return ReportedPayment(flow_id=flow.id, creditor_id=flow.creditor_id, index=line.index, iuv=line.iuv,
                           iur=line.iur, id_transfer=line.id_transfer, amount_cents=line.amount_cents,
                           pay_status=line.pay_status, pay_date=line.pay_date, outcome=outcome, active=False)


def _refs(flow: ReportingFlow) -> dict:
    """The flow's references as they go on a timeline."""
    return {"flow_id": flow.fdr, "revision": flow.revision, "regulation": flow.regulation,
            "regulation_date": flow.regulation_date.isoformat() if flow.regulation_date else None,
            "psp_id": flow.psp_id, "psp_name": flow.psp_name}


def _supersede_earlier(session: Session, creditor: Creditor, flow: ReportingFlow, now: datetime) -> list[Transfer]:
    """Retire the earlier revisions of ``flow``: their lines stop counting, their open anomalies close.

    Returns the transfers they reported (the new revision may report them again).
    """
    earlier = session.scalars(sa.select(ReportingFlow).where(
        ReportingFlow.creditor_id == creditor.id, ReportingFlow.fdr == flow.fdr, ReportingFlow.psp_id == flow.psp_id,
        ReportingFlow.id != flow.id, ReportingFlow.status != FLOW_SUPERSEDED)).all()
    if not earlier:
        return []
    ids = [f.id for f in earlier]
    for old in earlier:
        old.status = FLOW_SUPERSEDED
        old.superseded_at = now
    transfers = list(session.scalars(
        sa.select(Transfer).join(ReportedPayment, ReportedPayment.transfer_id == Transfer.id)
        .where(ReportedPayment.flow_id.in_(ids), ReportedPayment.active)))
    session.execute(sa.update(ReportedPayment).where(ReportedPayment.flow_id.in_(ids), ReportedPayment.active)
                    .values(active=False))
    session.execute(sa.update(ReportingAnomaly).where(ReportingAnomaly.flow_id.in_(ids),
                                                      ReportingAnomaly.resolved_at.is_(None))
                    .values(resolved_at=now, resolution_note=f"Sostituita dalla revisione {flow.revision} del flusso."))
    session.flush()
    return transfers


def _match_lines(session: Session, creditor: Creditor, flow: ReportingFlow, lines: list[FlowLine],
                 outcome: FlowOutcome) -> set[int]:
    """Write the lines, each matched to its receipt and transfer; returns the ids of the options reported."""
    iuvs = {line.iuv for line in lines}
    receipts: dict[str, Receipt] = {}
    for chunk in _chunks(sorted(iuvs), 500):
        receipts.update((r.iuv, r) for r in session.scalars(
            sa.select(Receipt).where(Receipt.creditor_id == creditor.id, Receipt.iuv.in_(chunk))))
    option_ids = {r.option_id for r in receipts.values() if r.option_id is not None}
    transfers: dict[tuple[int, int], Transfer] = {}
    for chunk in _chunks(sorted(option_ids), 500):
        transfers.update(((t.option_id, t.index), t) for t in session.scalars(
            sa.select(Transfer).where(Transfer.option_id.in_(chunk))))
    reported_elsewhere = set()
    for chunk in _chunks(sorted(t.id for t in transfers.values()), 500):
        reported_elsewhere.update(session.scalars(sa.select(ReportedPayment.transfer_id).where(
            ReportedPayment.transfer_id.in_(chunk), ReportedPayment.active)))
    positions = {r.option_id: r.position_id for r in receipts.values()}
    touched: set[int] = set()
    anomalies: list[tuple[ReportedPayment, dict]] = []
    for line in sorted(lines, key=lambda x: x.index):
        receipt = receipts.get(line.iuv)
        receipt_matches = receipt is not None and receipt.receipt_id == line.iur
        transfer = transfers.get((receipt.option_id, line.id_transfer)) if receipt_matches and receipt.option_id \
            else None
        row = _line_row(flow, line, LINE_UNKNOWN)
        session.add(row)
        base = {"creditor_id": creditor.id, "flow_id": flow.id, "iuv": line.iuv, "amount_cents": line.amount_cents}
        if transfer is None:
            if receipt is not None:
                row.receipt_id = receipt.id
                row.position_id = receipt.position_id
            detail = (f"IUV {line.iuv}, IUR {line.iur}, versamento {line.id_transfer}: "
                      + ("nessuna ricevuta con questo IUV." if receipt is None else
                         "la ricevuta con questo IUV ha un altro identificativo di riscossione." if not receipt_matches
                         else "la ricevuta non corrisponde a un versamento di una posizione."))
            anomalies.append((row, dict(kind=UNKNOWN_PAYMENT, receipt_id=receipt.id if receipt else None,
                                              position_id=receipt.position_id if receipt else None, detail=detail,
                                              **base)))
            continue
        row.receipt_id = receipt.id
        row.transfer_id = transfer.id
        row.position_id = positions.get(receipt.option_id)
        if transfer.id in reported_elsewhere:
            row.outcome = LINE_ALREADY_REPORTED
            anomalies.append((row, dict(kind=ALREADY_REPORTED, receipt_id=receipt.id, position_id=row.position_id,
                                              expected_cents=transfer.amount_cents,
                                              detail=f"IUV {line.iuv}, versamento {line.id_transfer}: già "
                                                     "rendicontato da un altro flusso.", **base)))
            continue
        reported_elsewhere.add(transfer.id)
        row.active = True
        row.outcome = LINE_MATCHED if line.amount_cents == transfer.amount_cents else LINE_AMOUNT_MISMATCH
        flow.matched_payments += 1
        flow.matched_cents += transfer.amount_cents
        outcome.matched += 1
        touched.add(transfer.option_id)
        if row.outcome == LINE_AMOUNT_MISMATCH:
            anomalies.append((row, dict(kind=AMOUNT_MISMATCH, receipt_id=receipt.id, position_id=row.position_id,
                                              expected_cents=transfer.amount_cents,
                                              detail=f"IUV {line.iuv}, versamento {line.id_transfer}.", **base)))
    session.flush()
    for row, values in anomalies:
        anomaly = ReportingAnomaly(reported_payment_id=row.id, **values)
        session.add(anomaly)
        if anomaly.position_id is not None:
            record_event(session, session.get(Position, anomaly.position_id), "report_flagged", actor=ACTOR,
                         anomaly=anomaly.kind, flow_id=flow.fdr, iuv=anomaly.iuv, amount_cents=anomaly.amount_cents,
                         expected_cents=anomaly.expected_cents)
    outcome.anomalies += len(anomalies)
    session.flush()
    return touched


def _check_totals(session: Session, flow: ReportingFlow, lines: list[FlowLine]) -> int:
    """A header that disagrees with its own lines is flagged (the lines are what we matched)."""
    count, total = len(lines), sum(line.amount_cents for line in lines)
    if count == flow.total_payments and total == flow.sum_cents:
        return 0
    session.add(ReportingAnomaly(creditor_id=flow.creditor_id, kind=FLOW_TOTALS, flow_id=flow.id,
                                 amount_cents=flow.sum_cents, expected_cents=total,
                                 detail=f"Il flusso dichiara {flow.total_payments} pagamenti, ne elenca {count}."))
    return 1


def _withdrawn_transfers(session: Session, transfers: list[Transfer]) -> list[Transfer]:
    """Of the transfers an earlier revision reported, those the new one does not report again."""
    if not transfers:
        return []
    active = set(session.scalars(sa.select(ReportedPayment.transfer_id).where(
        ReportedPayment.transfer_id.in_([t.id for t in transfers]), ReportedPayment.active)))
    return [t for t in transfers if t.id not in active]


def _flag_withdrawn(session: Session, creditor: Creditor, flow: ReportingFlow, transfers: list[Transfer], *,
                    actor: str) -> int:
    for transfer in transfers:
        option = transfer.option
        session.add(ReportingAnomaly(
            creditor_id=creditor.id, kind=REPORT_WITHDRAWN, flow_id=flow.id, position_id=option.position_id,
            iuv=option.iuv, expected_cents=transfer.amount_cents,
            detail=f"La revisione {flow.revision} non elenca più il versamento {transfer.index} "
                   f"dello IUV {option.iuv}."))
        record_event(session, option.position, "report_withdrawn", actor=actor, flow_id=flow.fdr,
                     revision=flow.revision, iuv=option.iuv, amount_cents=transfer.amount_cents)
    return len(transfers)


def _settle_options(session: Session, creditor: Creditor, option_ids: set[int], refs: dict, *, actor: str,
                    now: datetime) -> list[int]:
    """Set or clear ``reported_at`` of the options touched, and move fully reported positions to ``reported``."""
    if not option_ids:
        return []
    position_ids = set(session.scalars(sa.select(PaymentOption.position_id).where(PaymentOption.id.in_(option_ids))))
    # Lock the positions (receipts lock them too, in the same order: position first).
    positions = session.scalars(sa.select(Position).where(Position.id.in_(position_ids)).order_by(Position.id)
                                .with_for_update().execution_options(populate_existing=True)).all()
    options = session.scalars(sa.select(PaymentOption).where(PaymentOption.position_id.in_(position_ids))
                              .order_by(PaymentOption.id)).all()
    own = _own_transfers(session, creditor, [o.id for o in options])
    reported = set(session.scalars(sa.select(ReportedPayment.transfer_id).where(
        ReportedPayment.transfer_id.in_([t for ts in own.values() for t in ts] or [-1]), ReportedPayment.active)))
    by_position: dict[int, list[PaymentOption]] = defaultdict(list)
    for option in options:
        by_position[option.position_id].append(option)
    # An option paid at the counter (or by transfer, F24) never comes back in a flow: it does not hold the
    # position back from "reported" once its pagoPA payments are.
    outside = offline_payments.active_option_ids(session, [o.id for o in options if o.status == OptionStatus.PAID])
    moved = []
    for position in positions:
        newly = []
        for option in by_position[position.id]:
            transfers = own.get(option.id, [])
            done = bool(transfers) and all(t in reported for t in transfers)
            if done and option.reported_at is None:
                option.reported_at = now
                newly.append(option)
            elif not done and option.reported_at is not None:
                option.reported_at = None
        paid = [o for o in by_position[position.id] if o.status == OptionStatus.PAID and o.id not in outside]
        complete = bool(paid) and all(o.reported_at is not None for o in paid)
        if complete and position.status == PositionStatus.PAID:
            transition(session, position, PositionStatus.REPORTED, actor=actor, at=now,
                       iuvs=[o.iuv for o in newly], **refs)
            moved.append(position.id)
        else:
            for option in newly:
                record_event(session, position, "option_reported", actor=actor, at=now, iuv=option.iuv,
                             notice_number=option.notice_number, **refs)
        if any(o.reported_at is not None for o in by_position[position.id]):
            _close_not_reported(session, [o.id for o in by_position[position.id] if o.reported_at is not None], refs,
                                now)
    return moved


def _own_transfers(session: Session, creditor: Creditor, option_ids: list[int]) -> dict[int, list[int]]:
    """The ids of each option's transfers to the creditor itself."""
    own: dict[int, list[int]] = defaultdict(list)
    for chunk in _chunks(option_ids, 500):
        for option_id, transfer_id in session.execute(sa.select(Transfer.option_id, Transfer.id).where(
                Transfer.option_id.in_(chunk), Transfer.beneficiary_fiscal_code == creditor.fiscal_code)):
            own[option_id].append(transfer_id)
    return own


def _close_not_reported(session: Session, option_ids: list[int], refs: dict, now: datetime) -> None:
    """A "not reported" anomaly resolves itself once a flow reports the receipt."""
    receipts = sa.select(Receipt.id).where(Receipt.option_id.in_(option_ids))
    session.execute(sa.update(ReportingAnomaly).where(
        ReportingAnomaly.kind == NOT_REPORTED, ReportingAnomaly.resolved_at.is_(None),
        ReportingAnomaly.receipt_id.in_(receipts)).values(
        resolved_at=now, resolution_note=f"Rendicontata nel flusso {refs['flow_id']}."))


def flag_unreported(session: Session, creditor: Creditor, *, older_than: timedelta, now: datetime | None = None,
                    limit: int = 5000) -> int:
    """Flag the receipts paid more than ``older_than`` ago that no flow reported yet (once each); how many."""
    now = now or utcnow()
    cutoff = now - older_than
    active = sa.select(ReportedPayment.id).where(ReportedPayment.transfer_id == Transfer.id, ReportedPayment.active)
    missing = sa.select(Transfer.id).where(Transfer.option_id == Receipt.option_id,
                                           Transfer.beneficiary_fiscal_code == creditor.fiscal_code, ~active.exists())
    already = sa.select(ReportingAnomaly.id).where(ReportingAnomaly.receipt_id == Receipt.id,
                                                   ReportingAnomaly.kind == NOT_REPORTED,
                                                   ReportingAnomaly.resolved_at.is_(None))
    flags = [Receipt.flag.is_(None), Receipt.flag.in_([f for f in _REPORTABLE_FLAGS if f])]
    rows = session.execute(sa.select(Receipt.id, Receipt.position_id, Receipt.iuv, Receipt.amount_cents).where(
        Receipt.creditor_id == creditor.id, Receipt.option_id.is_not(None), sa.or_(*flags),
        sa.func.coalesce(Receipt.payment_at, Receipt.received_at) < cutoff, missing.exists(), ~already.exists(),
    ).order_by(Receipt.id).limit(limit)).all()
    days = older_than.days
    for receipt_id, position_id, iuv, amount in rows:
        session.add(ReportingAnomaly(creditor_id=creditor.id, kind=NOT_REPORTED, receipt_id=receipt_id,
                                     position_id=position_id, iuv=iuv, expected_cents=amount,
                                     detail=f"Nessun flusso ha rendicontato il pagamento entro {days} giorni."))
    session.flush()
    return len(rows)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- Reading, for the Rendicontazione page --------------------------------------------------------------------------


def list_flows(session: Session, creditor_id: int, *, include_superseded: bool = False,
               limit: int = 200) -> list[ReportingFlow]:
    """The creditor's flows, newest first (current and rejected ones; superseded revisions on request)."""
    query = sa.select(ReportingFlow).where(ReportingFlow.creditor_id == creditor_id)
    if not include_superseded:
        query = query.where(ReportingFlow.status != FLOW_SUPERSEDED)
    return list(session.scalars(query.order_by(ReportingFlow.published_at.desc().nulls_last(),
                                               ReportingFlow.id.desc()).limit(limit)))


def get_flow(session: Session, creditor_id: int, flow_id: int) -> ReportingFlow | None:
    """One flow of the creditor, or ``None``."""
    return session.scalar(sa.select(ReportingFlow).where(ReportingFlow.id == flow_id,
                                                         ReportingFlow.creditor_id == creditor_id))


def flow_lines(session: Session, flow: ReportingFlow, *, scope: frozenset[int] | None = None) -> list[ReportedPayment]:
    """A flow's lines in order, with their positions; a scoped officer sees the lines of their services only."""
    from sqlalchemy.orm import joinedload

    query = (sa.select(ReportedPayment).where(ReportedPayment.flow_id == flow.id)
             .options(joinedload(ReportedPayment.position).joinedload(Position.debtor))
             .order_by(ReportedPayment.index))
    if scope is not None:
        query = query.where(ReportedPayment.position_id.in_(
            sa.select(Position.id).where(Position.service_id.in_(scope or {-1}))))
    return list(session.scalars(query))
