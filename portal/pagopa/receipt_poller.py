"""The fallback for receipts that never reached our SOAP endpoint: ask GPD's receipts API for them.

paSendRT(V2) is the primary channel (DESIGN.md §3); the node gives up after its retries, and a broadcast station
can be misconfigured for a while. This poller lists the creditor's receipts on GPD since a given time, fetches
the XML of each one we do not have (the paSendRT payload), and stores it through the very same parser and
:func:`portal.ledger.payments.record_receipt` as the SOAP endpoint, with source ``receipts-api``. Running it
twice, or while paSendRT calls arrive, records each payment once.

No Flask: a job calls it with a session and a :class:`portal.pagopa.receipts_api.ReceiptsClient`.
"""

import logging
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal import metrics
from portal.ledger.models import Creditor, Receipt
from portal.ledger.payments import ReceiptRejected, record_receipt
from portal.pagopa import soap
from portal.pagopa.errors import PagoPANotFound

log = logging.getLogger(__name__)

SOURCE = "receipts-api"


class ReceiptsApi(Protocol):
    """What the poller needs of :class:`portal.pagopa.receipts_api.ReceiptsClient`."""

    def list_receipts(self, org_cf: str, *, from_date=None, to_date=None, page: int = 0,
                      page_size: int = 100): ...

    def get_receipt_xml(self, org_cf: str, iuv: str) -> str: ...


def poll_receipts(session: Session, creditor: Creditor, client: ReceiptsApi, *, since: datetime,
                  until: datetime | None = None, page_size: int = 100, max_pages: int = 1000) -> int:
    """Store every receipt GPD has for ``creditor`` since ``since`` that we do not have yet.

    It commits after each stored receipt: the position locks of :func:`record_receipt` must not be held across
    the next HTTP call (a paSendRT for the same position would wait for them), and a failure half way keeps what
    was already stored. A receipt whose XML is unusable is logged and skipped; pagoPA being unavailable
    propagates (:class:`portal.pagopa.errors.PagoPAUnavailable`) so the job retries later.

    :param since: start of the window (the previous successful poll, minus a margin).
    :return: how many receipts were stored now.
    """
    stored = 0
    page = 0
    while page < max_pages:
        result = client.list_receipts(creditor.fiscal_code, from_date=since, to_date=until, page=page,
                                      page_size=page_size)
        iuvs = [summary.iuv for summary in result.receipts if summary.iuv]
        known = set(session.scalars(
            sa.select(Receipt.iuv).where(Receipt.creditor_id == creditor.id, Receipt.iuv.in_(iuvs))
        )) if iuvs else set()
        # The lookup above opened a transaction; end it so no snapshot or lock lives across the HTTP calls.
        session.commit()
        for iuv in iuvs:
            if iuv in known:
                continue
            if _store_one(session, creditor, client, iuv):
                stored += 1
                known.add(iuv)
        if not result.has_next:
            break
        page += 1
    if stored:
        log.info("receipts poll for %s since %s: %d receipt(s) stored", creditor.fiscal_code, since.isoformat(),
                 stored)
    return stored


def _store_one(session: Session, creditor: Creditor, client: ReceiptsApi, iuv: str) -> bool:
    """Fetch, parse and record the receipt of one IUV; ``True`` when it was stored now."""
    try:
        xml = client.get_receipt_xml(creditor.fiscal_code, iuv)
    except PagoPANotFound:
        log.warning("receipts poll: GPD lists IUV %s of %s but has no receipt XML for it", iuv,
                    creditor.fiscal_code)
        return False
    metrics.RECEIPTS_RECEIVED.labels(SOURCE).inc()
    try:
        parsed = soap.parse_receipt_payload(xml)
        data = soap.receipt_data(parsed)
    except soap.SoapFault as fault:
        log.error("receipts poll: receipt of IUV %s (%s) unusable: %s", iuv, creditor.fiscal_code, fault)
        metrics.RECEIPTS_REFUSED.labels(SOURCE, fault.code).inc()
        return False
    if data.iuv != iuv or data.org_fiscal_code != creditor.fiscal_code:
        log.error("receipts poll: asked for %s/%s, got a receipt for %s/%s: skipped", creditor.fiscal_code, iuv,
                  data.org_fiscal_code, data.iuv)
        metrics.RECEIPTS_REFUSED.labels(SOURCE, "mismatch").inc()
        return False
    try:
        outcome = record_receipt(session, creditor, data, source=SOURCE, raw_xml=xml)
    except ReceiptRejected as exc:
        session.rollback()
        log.error("receipts poll: receipt of IUV %s (%s) rejected: %s", iuv, creditor.fiscal_code, exc)
        metrics.RECEIPTS_REFUSED.labels(SOURCE, soap.PAA_SEMANTICA).inc()
        return False
    except Exception:
        session.rollback()
        metrics.RECEIPTS_REFUSED.labels(SOURCE, soap.PAA_SYSTEM_ERROR).inc()
        raise
    session.commit()
    if outcome.duplicate:
        metrics.RECEIPTS_REFUSED.labels(SOURCE, soap.PAA_RECEIPT_DUPLICATA).inc()
    else:
        metrics.RECEIPTS_STORED.labels(SOURCE, outcome.flag or "none").inc()
    log.info("receipts poll: receiptId=%s iuv=%s %s%s", data.receipt_id, iuv,
             "duplicate" if outcome.duplicate else "stored", f" flag={outcome.flag}" if outcome.flag else "")
    return not outcome.duplicate
