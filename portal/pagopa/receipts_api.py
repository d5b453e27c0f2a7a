"""Client of GPD's payments-receipts service (``specs/gpd/gpd_payments.json``).

The fallback way to learn about payments when a paSendRT did not reach us: list the Ente's receipts, then
fetch each one's XML (the paSendRT receipt itself) and feed it to the same code that stores SOAP receipts.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from zoneinfo import ZoneInfo

import requests

from portal.pagopa.errors import PagoPANotFound
from portal.pagopa.http import PagoPAHttp, config_value, json_body, segment

ROME = ZoneInfo("Europe/Rome")
PAGE_SIZE_MAX = 100


@dataclass(frozen=True)
class ReceiptSummary:
    """One row of the receipts list.

    ``paid_at`` is aware. A value without an offset is read as Italian time, the node's time for receipts
    (an assumption: the receipts API does not state it; the receipt XML is the authoritative record).
    """

    org_cf: str
    iuv: str
    debtor: str | None
    paid_at: datetime | None
    status: str | None
    raw: dict


@dataclass(frozen=True)
class ReceiptsPage:
    """A page of receipts (``page`` counts from 0)."""

    page: int
    total_pages: int
    receipts: tuple[ReceiptSummary, ...]
    raw: dict

    @property
    def has_next(self) -> bool:
        """Whether another page follows."""
        return self.page + 1 < self.total_pages


class ReceiptsClient:
    """List and fetch the Ente's receipts.

    :param base_url: the versioned service root, e.g.
        ``https://api.platform.pagopa.it/gpd/payments-receipts-service/v1``.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0,
                 session: requests.Session | None = None):
        self.http = PagoPAHttp(base_url, api_key, timeout=timeout, session=session, name="GPD receipts")

    @classmethod
    def from_config(cls, config: Mapping) -> "ReceiptsClient":
        """Build from ``PAGOPA_RECEIPTS_URL``, ``PAGOPA_API_KEY`` and ``PAGOPA_TIMEOUT_SECONDS``."""
        return cls(config_value(config, "PAGOPA_RECEIPTS_URL"), config_value(config, "PAGOPA_API_KEY"),
                   timeout=float(config.get("PAGOPA_TIMEOUT_SECONDS") or 10.0))

    def list_receipts(self, org_cf: str, *, from_date: date | datetime | None = None,
                      to_date: date | datetime | None = None, page: int = 0,
                      page_size: int = PAGE_SIZE_MAX) -> ReceiptsPage:
        """One page of the Ente's receipts, optionally between two dates (inclusive).

        Dates are sent as ``yyyy-MM-dd``; aware datetimes as ``yyyy-MM-dd'T'HH:mm:ss`` without an offset, the
        only form the service takes. Which zone it reads them in is not documented, so ``from_date`` is written
        as UTC and ``to_date`` as Italian time: the window then covers the interval asked for whether the
        service reads UTC or Italian time (at most 2 hours wider, never narrower). The service answers 404
        when nothing matches: that is an empty page here.

        :raise ValueError: ``page_size`` outside 1..100 or a negative page.
        """
        if not 1 <= page_size <= PAGE_SIZE_MAX:
            raise ValueError(f"page_size must be 1..{PAGE_SIZE_MAX}")
        if page < 0:
            raise ValueError("page counts from 0")
        params = {"pageNum": page, "pageSize": page_size, "from": _when(from_date, UTC), "to": _when(to_date, ROME)}
        try:
            response = self.http.request("GET", f"/payments/{segment(org_cf)}/receipts", params=params)
        except PagoPANotFound:
            return ReceiptsPage(page=page, total_pages=0, receipts=(), raw={})
        data = json_body(response)
        rows = data.get("results")
        if rows is None:
            # The service's Java model names the list ``receipts_list``; the published OpenAPI says ``results``.
            rows = data.get("receipts_list") or []
        receipts = tuple(
            ReceiptSummary(
                org_cf=str(row.get("organizationFiscalCode") or org_cf),
                iuv=str(row.get("iuv") or ""),
                debtor=row.get("debtor"),
                paid_at=_local_datetime(row.get("paymentDateTime")),
                status=row.get("status"),
                raw=dict(row),
            )
            for row in rows
            if isinstance(row, dict)
        )
        return ReceiptsPage(page=int(data.get("currentPageNumber") or page),
                            total_pages=int(data.get("totalPages") or 0), receipts=receipts, raw=dict(data))

    def get_receipt_xml(self, org_cf: str, iuv: str) -> str:
        """The receipt of an IUV as the XML pagoPA keeps (the paSendRT ``receipt``).

        :raise PagoPANotFound: no receipt for this IUV.
        """
        response = self.http.request("GET", f"/payments/{segment(org_cf)}/receipts/{segment(iuv)}",
                                     accept="application/xml, application/json;q=0.5")
        response.encoding = response.encoding or "utf-8"
        return response.text


def _when(value: date | datetime | None, zone: tzinfo) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("receipt search bounds must be dates or timezone-aware datetimes")
        return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")
    return value.isoformat()


def _local_datetime(value) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip())
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=ROME)
