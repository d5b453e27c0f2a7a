"""Download the reporting flows (FdR) published for a creditor and hand them to the ledger's reconciliation.

The list gives the latest revision of each flow; a flow we already hold at that revision is skipped, a new flow
or a new revision is fetched (header, then its lines page by page) and reconciled by
:func:`portal.ledger.reporting.record_flow`. Each flow is committed on its own, like the receipts poller does, so
no lock is held across the next HTTP call and a failure half way keeps what was already reconciled; a flow we
cannot read (an amount with three decimals, a malformed line) is stored as rejected and flagged, once. pagoPA
being unavailable propagates (:class:`~portal.pagopa.errors.PagoPAUnavailable`), so the job tries again later.

No Flask: the job calls :func:`sync_flows` with a session and a :class:`~portal.pagopa.fdr.FdrClient`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from portal.ledger import reporting
from portal.ledger.models import Creditor
from portal.ledger.types import utcnow
from portal.pagopa.errors import PagoPAError, PagoPAUnavailable
from portal.pagopa.fdr import Flow, FlowPayment, FlowSummary

log = logging.getLogger(__name__)

#: How far before the newest flow we hold the next listing starts (late publications, clock skew).
LISTING_MARGIN = timedelta(days=1)
#: The FdR API lists the last 30 days by default: never ask for more.
LISTING_WINDOW = timedelta(days=30)


@dataclass
class SyncResult:
    """What one run found, for the job's summary."""

    listed: int = 0
    recorded: int = 0
    rejected: int = 0
    matched: int = 0
    anomalies: int = 0
    not_reported: int = 0
    reported_positions: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.recorded} flussi nuovi ({self.listed} elencati, {self.rejected} illeggibili), "
                f"{self.matched} pagamenti riconciliati, {len(self.reported_positions)} posizioni rendicontate, "
                f"{self.anomalies + self.not_reported} anomalie")


def header_of(flow: Flow, summary: FlowSummary) -> reporting.FlowHeader:
    """The ledger's view of a flow's header."""
    return reporting.FlowHeader(
        fdr=flow.fdr, revision=flow.revision, psp_id=flow.psp_id or summary.psp_id, psp_name=flow.psp_name,
        regulation=flow.regulation, regulation_date=flow.regulation_date, flow_date=flow.fdr_date,
        published_at=flow.published or summary.published, total_payments=flow.total_payments,
        sum_cents=flow.sum_cents, raw=flow.raw)


def line_of(payment: FlowPayment) -> reporting.FlowLine:
    return reporting.FlowLine(index=payment.index, iuv=payment.iuv, iur=payment.iur, id_transfer=payment.id_transfer,
                              amount_cents=payment.amount_cents, pay_status=payment.status,
                              pay_date=payment.pay_date)


def sync_flows(session: Session, creditor: Creditor, client, *, unreported_after: timedelta | None = None,
               now: datetime | None = None) -> SyncResult:
    """Fetch and reconcile the creditor's new flows and revisions; then flag receipts no flow covered in time.

    :param client: an :class:`~portal.pagopa.fdr.FdrClient` (or anything with its three methods).
    :param unreported_after: flag receipts older than this that no flow reported (``None``: skip the check).
    """
    now = now or utcnow()
    result = SyncResult()
    newest = reporting.last_published(session, creditor.id)
    since = max(newest - LISTING_MARGIN, now - LISTING_WINDOW) if newest else None
    creditor_id, fiscal_code = creditor.id, creditor.fiscal_code
    session.commit()  # no snapshot or lock across the HTTP calls
    page = 1
    while True:
        listing = client.list_flows(fiscal_code, page=page, published_after=since)
        for summary in listing.flows:
            result.listed += 1
            known = reporting.stored_revision(session, creditor_id, summary.fdr, summary.psp_id)
            session.commit()
            if known is not None and known >= summary.revision:
                continue
            _one_flow(session, creditor_id, fiscal_code, client, summary, result, now)
        if not listing.has_next or not listing.flows:
            break
        page += 1
    if unreported_after is not None:
        creditor = session.get(Creditor, creditor_id)
        result.not_reported = reporting.flag_unreported(session, creditor, older_than=unreported_after, now=now)
        session.commit()
    return result


def _one_flow(session: Session, creditor_id: int, fiscal_code: str, client, summary: FlowSummary,
              result: SyncResult, now: datetime) -> None:
    try:
        flow = client.get_flow(fiscal_code, summary.fdr, summary.revision, summary.psp_id)
        lines = [line_of(p) for p in client.iter_flow_payments(fiscal_code, summary.fdr, summary.revision,
                                                               summary.psp_id)]
    except PagoPAUnavailable:
        raise
    except (PagoPAError, ValueError, TypeError) as exc:
        detail = getattr(exc, "detail", None)
        error = f"{exc}" + (f" ({detail})" if detail else "")
        if reporting.record_rejected_flow(session, session.get(Creditor, creditor_id), fdr=summary.fdr,
                                          psp_id=summary.psp_id, revision=summary.revision, error=error):
            result.rejected += 1
        session.commit()
        return
    outcome = reporting.record_flow(session, session.get(Creditor, creditor_id), header_of(flow, summary), lines,
                                    now=now)
    session.commit()
    if not outcome.duplicate:
        result.recorded += 1
        result.matched += outcome.matched
        result.anomalies += outcome.anomalies
        result.reported_positions += outcome.reported_positions
