"""Client of the REST reporting flows API for Enti (FdR, ``specs/fdr/fdr_organization.json``).

A PSP reports what it paid out to the Ente, flow by flow; each flow line names IUV, IUR and ``idTransfer``.
FdR writes amounts as JSON decimal euros: they are read with :class:`~decimal.Decimal` (never ``float``) and
turned into integer cents exactly, or refused. Pages count from 1 here, as in the API.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from portal.pagopa.errors import PagoPAError
from portal.pagopa.http import PagoPAHttp, config_value, json_body, parse_datetime, segment, utc_timestamp

PAGE_SIZE_MAX = 1000


@dataclass(frozen=True)
class FlowSummary:
    """A published flow in the list: its name, PSP and revision (a later revision replaces the earlier)."""

    fdr: str
    psp_id: str
    revision: int
    published: datetime | None
    flow_date: datetime | None


@dataclass(frozen=True)
class FlowsPage:
    """A page of flows."""

    page: int
    total_pages: int
    count: int
    flows: tuple[FlowSummary, ...]

    @property
    def has_next(self) -> bool:
        """Whether another page follows."""
        return self.page < self.total_pages


@dataclass(frozen=True)
class Flow:
    """The header of one flow revision: the settlement (SCT) it describes and its totals in cents."""

    fdr: str
    revision: int
    status: str | None
    fdr_date: datetime | None
    published: datetime | None
    #: Identifier of the SCT transfer (``identificativoUnivocoRegolamento``).
    regulation: str | None
    regulation_date: date | None
    bic_code: str | None
    psp_id: str | None
    psp_name: str | None
    psp_broker_id: str | None
    channel_id: str | None
    organization_id: str | None
    organization_name: str | None
    total_payments: int
    sum_cents: int
    computed_total_payments: int | None
    computed_sum_cents: int | None
    raw: dict


@dataclass(frozen=True)
class FlowPayment:
    """One reported payment line: IUV + ``id_transfer`` identify the transfer, IUR the PSP's collection."""

    index: int
    iuv: str
    iur: str
    id_transfer: int
    amount_cents: int
    #: ``EXECUTED``, ``STAND_IN``, ``STAND_IN_NO_RPT`` or ``NO_RPT`` (SOAP codes 0, 4, 8, 9).
    status: str
    pay_date: datetime | None


@dataclass(frozen=True)
class FlowPaymentsPage:
    """A page of a flow's payment lines."""

    page: int
    total_pages: int
    count: int
    payments: tuple[FlowPayment, ...]

    @property
    def has_next(self) -> bool:
        """Whether another page follows."""
        return self.page < self.total_pages


class FdrClient:
    """Read the reporting flows published for an Ente.

    :param base_url: the versioned service root, e.g. ``https://api.platform.pagopa.it/fdr-org/service/v1``.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0,
                 session: requests.Session | None = None):
        self.http = PagoPAHttp(base_url, api_key, timeout=timeout, session=session, name="FdR")

    @classmethod
    def from_config(cls, config: Mapping) -> "FdrClient":
        """Build from ``PAGOPA_FDR_URL``, ``PAGOPA_API_KEY`` and ``PAGOPA_TIMEOUT_SECONDS``."""
        return cls(config_value(config, "PAGOPA_FDR_URL"), config_value(config, "PAGOPA_API_KEY"),
                   timeout=float(config.get("PAGOPA_TIMEOUT_SECONDS") or 10.0))

    def list_flows(self, org_cf: str, *, page: int = 1, size: int = PAGE_SIZE_MAX, psp_id: str | None = None,
                   flow_date: datetime | None = None, published_after: datetime | None = None) -> FlowsPage:
        """One page of the latest revisions of the flows published for the Ente (last 30 days by default).

        :param flow_date: lower bound on the flow date; ``published_after`` on the publication time (aware).
        """
        _check_page(page, size)
        params = {
            "page": page, "size": size, "pspId": psp_id,
            "flowDate": utc_timestamp(flow_date) if flow_date else None,
            "publishedGt": utc_timestamp(published_after) if published_after else None,
        }
        data = json_body(self.http.request("GET", f"/organizations/{segment(org_cf)}/fdrs", params=params))
        flows = tuple(
            FlowSummary(fdr=str(row.get("fdr")), psp_id=str(row.get("pspId")), revision=int(row.get("revision") or 0),
                        published=parse_datetime(row.get("published")), flow_date=parse_datetime(row.get("flowDate")))
            for row in data.get("data") or ()
        )
        return FlowsPage(**_page_info(data, page), flows=flows)

    def get_flow(self, org_cf: str, fdr: str, revision: int, psp_id: str) -> Flow:
        """The header of one flow revision.

        :raise PagoPANotFound: no such flow (``FDR-3001``).
        """
        data = json_body(self.http.request("GET", _flow_path(org_cf, fdr, revision, psp_id)), parse_float=Decimal)
        sender = data.get("sender") or {}
        receiver = data.get("receiver") or {}
        computed_sum = data.get("computedSumPayments")
        computed_total = data.get("computedTotPayments")
        return Flow(
            fdr=str(data.get("fdr") or fdr),
            revision=int(data.get("revision") or revision),
            status=data.get("status"),
            fdr_date=parse_datetime(data.get("fdrDate")),
            published=parse_datetime(data.get("published")),
            regulation=data.get("regulation"),
            regulation_date=_date(data.get("regulationDate")),
            bic_code=data.get("bicCodePouringBank"),
            psp_id=sender.get("pspId"),
            psp_name=sender.get("pspName"),
            psp_broker_id=sender.get("pspBrokerId"),
            channel_id=sender.get("channelId"),
            organization_id=receiver.get("organizationId"),
            organization_name=receiver.get("organizationName"),
            total_payments=int(data.get("totPayments") or 0),
            sum_cents=euros_to_cents(data.get("sumPayments") or 0),
            computed_total_payments=None if computed_total is None else int(computed_total),
            computed_sum_cents=None if computed_sum is None else euros_to_cents(computed_sum),
            raw=_plain(data),
        )

    def get_flow_payments(self, org_cf: str, fdr: str, revision: int, psp_id: str, *, page: int = 1,
                          size: int = PAGE_SIZE_MAX) -> FlowPaymentsPage:
        """One page of a flow revision's payment lines."""
        _check_page(page, size)
        response = self.http.request("GET", _flow_path(org_cf, fdr, revision, psp_id) + "/payments",
                                     params={"page": page, "size": size})
        data = json_body(response, parse_float=Decimal)
        payments = tuple(
            FlowPayment(index=int(row.get("index")), iuv=str(row.get("iuv")), iur=str(row.get("iur")),
                        id_transfer=int(row.get("idTransfer")), amount_cents=euros_to_cents(row.get("pay")),
                        status=str(row.get("payStatus")), pay_date=parse_datetime(row.get("payDate")))
            for row in data.get("data") or ()
        )
        return FlowPaymentsPage(**_page_info(data, page), payments=payments)

    def iter_flow_payments(self, org_cf: str, fdr: str, revision: int, psp_id: str, *,
                           size: int = PAGE_SIZE_MAX) -> Iterator[FlowPayment]:
        """Every payment line of a flow revision, page after page."""
        page = 1
        while True:
            result = self.get_flow_payments(org_cf, fdr, revision, psp_id, page=page, size=size)
            yield from result.payments
            if not result.has_next or not result.payments:
                return
            page += 1


def euros_to_cents(value: Any) -> int:
    """A decimal euro amount (``Decimal``, ``int`` or numeric string; never a float) as exact integer cents.

    :raise PagoPAError: more than two decimals, or not a number: the flow cannot be trusted.
    """
    if isinstance(value, float):
        # A float has already lost exactness; read the JSON with parse_float=Decimal instead.
        value = repr(value)
    try:
        cents = Decimal(str(value)) * 100
    except (InvalidOperation, ValueError):
        raise PagoPAError("Importo non valido in un flusso di rendicontazione.", detail=f"amount {value!r}") from None
    if not cents.is_finite() or cents != cents.to_integral_value():
        raise PagoPAError("Importo non valido in un flusso di rendicontazione.", detail=f"amount {value!r}")
    return int(cents)


def _flow_path(org_cf: str, fdr: str, revision: int, psp_id: str) -> str:
    return (f"/organizations/{segment(org_cf)}/fdrs/{segment(fdr)}/revisions/{int(revision)}"
            f"/psps/{segment(psp_id)}")


def _check_page(page: int, size: int) -> None:
    if page < 1:
        raise ValueError("FdR pages count from 1")
    if not 1 <= size <= PAGE_SIZE_MAX:
        raise ValueError(f"size must be 1..{PAGE_SIZE_MAX}")


def _page_info(data: Mapping, page: int) -> dict:
    metadata = data.get("metadata") or {}
    return {"page": int(metadata.get("pageNumber") or page), "total_pages": int(metadata.get("totPage") or 0),
            "count": int(data.get("count") or 0)}


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _plain(value: Any) -> Any:
    """The JSON with Decimals written back as strings, so ``raw`` can be stored in a JSON column as is."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value
