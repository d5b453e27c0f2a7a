"""Client of GPD, pagoPA's "Gestione Posizioni Debitorie": where our debt positions live on pagoPA.

v1 (``/v1/organizations/{cf}/debtpositions...``) for single positions, v2 only for the bulk create/update of up
to 100 positions per call. Payloads are GPD v1 ``PaymentPositionModel`` dicts (see :mod:`portal.pagopa.mapping`);
answers come back as frozen dataclasses, with the raw JSON kept for the audit trail.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from portal.pagopa.http import config_value, gpd_http, json_body, parse_datetime, segment, utc_timestamp

#: GPD refuses bulk calls with more positions (``max.massive.debt.positions``).
BULK_MAX = 100


@dataclass(frozen=True)
class OptionState:
    """One payment option as GPD knows it.

    ``status`` is GPD's (``PO_UNPAID``, ``PO_PAID``, ``PO_PARTIALLY_REPORTED``, ``PO_REPORTED``). Answers to
    create/update/publish/invalidate carry no option status in GPD's model: those options are unpaid by
    construction (GPD only accepts these calls on unpaid positions), so they read ``PO_UNPAID``.
    """

    iuv: str
    nav: str | None
    status: str
    amount_cents: int
    payment_date: datetime | None
    receipt_id: str | None
    psp_company: str | None


@dataclass(frozen=True)
class DebtPosition:
    """A debt position as GPD returned it: ``status`` is ``DRAFT``, ``PUBLISHED``, ``VALID``, ``INVALID``,
    ``EXPIRED``, ``PARTIALLY_PAID``, ``PAID`` or ``REPORTED`` (``UNKNOWN`` if the answer had none)."""

    iupd: str
    status: str
    options: tuple[OptionState, ...]
    raw: dict

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "DebtPosition":
        """Read GPD's ``PaymentPositionModel`` / ``PaymentPositionModelBaseResponse`` JSON."""
        options = tuple(
            OptionState(
                iuv=str(option.get("iuv") or ""),
                nav=option.get("nav"),
                status=option.get("status") or "PO_UNPAID",
                amount_cents=int(option.get("amount") or 0),
                payment_date=parse_datetime(option.get("paymentDate")),
                receipt_id=option.get("idReceipt"),
                psp_company=option.get("pspCompany"),
            )
            for option in data.get("paymentOption") or ()
        )
        return cls(iupd=str(data.get("iupd") or ""), status=data.get("status") or "UNKNOWN", options=options,
                   raw=dict(data))

    def option(self, iuv: str) -> OptionState | None:
        """The option with this IUV, if any."""
        return next((o for o in self.options if o.iuv == iuv), None)


class GPDClient:
    """Create, read, update, publish, invalidate and delete debt positions on GPD.

    :param base_url: the service root *without* version, e.g.
        ``https://api.uat.platform.pagopa.it/gpd/debt-positions-service`` (``/v1`` and ``/v2`` are appended).
    :param api_key: the subscription key of the intermediary's GPD product.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0,
                 session: requests.Session | None = None):
        root = (base_url or "").rstrip("/")
        # Tolerate a configured base that already names a version: the client picks v1 or v2 per call.
        for suffix in ("/v1", "/v2"):
            root = root.removesuffix(suffix)
        self.http = gpd_http(root, api_key, timeout=timeout, session=session, name="GPD")

    @classmethod
    def from_config(cls, config: Mapping) -> "GPDClient":
        """Build from ``PAGOPA_GPD_URL``, ``PAGOPA_API_KEY`` and ``PAGOPA_TIMEOUT_SECONDS``.

        :raise ValueError: if the URL or the key is missing.
        """
        return cls(config_value(config, "PAGOPA_GPD_URL"), config_value(config, "PAGOPA_API_KEY"),
                   timeout=float(config.get("PAGOPA_TIMEOUT_SECONDS") or 10.0))

    @staticmethod
    def _positions(org_cf: str, version: str = "v1") -> str:
        return f"/{version}/organizations/{segment(org_cf)}/debtpositions"

    def _position(self, org_cf: str, iupd: str) -> str:
        return f"{self._positions(org_cf)}/{segment(iupd)}"

    def info(self) -> dict:
        """GPD's ``GET /v2/info`` (name, version, environment): a call that reads nothing, so ``flask doctor`` can
        check the URL and the subscription key.

        :raise PagoPARejected: 401 when the key is refused.
        """
        return json_body(self.http.request("GET", "/v2/info"))

    def list_positions(self, org_cf: str, *, limit: int = 1, page: int = 0) -> list[DebtPosition]:
        """One page of the creditor's positions on GPD, newest first (``flask doctor`` reads one, to check that
        the key may act for this creditor).

        :raise PagoPARejected: 403 when the intermediary's key is not enabled for ``org_cf``.
        """
        response = self.http.request("GET", self._positions(org_cf), params={"limit": limit, "page": page})
        return [DebtPosition.from_json(item) for item in json_body(response).get("payment_position_list") or ()]

    def create(self, org_cf: str, payload: dict, *, to_publish: bool = True) -> DebtPosition:
        """Create a position; with ``to_publish`` (and no validity date) it is VALID, i.e. payable, at once.

        :raise DebtPositionConflict: ``DEBT_POSITION_UNIQUE_VIOLATION`` if the IUPD, an IUV or a NAV exists.
        """
        response = self.http.request("POST", self._positions(org_cf), params={"toPublish": to_publish},
                                     json=payload, expect=(201,))
        return DebtPosition.from_json(json_body(response))

    def get(self, org_cf: str, iupd: str) -> DebtPosition:
        """Read a position with the state of its options (paid, receipt id, PSP).

        :raise DebtPositionNotFound: GPD does not have it.
        """
        return DebtPosition.from_json(json_body(self.http.request("GET", self._position(org_cf, iupd))))

    def update(self, org_cf: str, iupd: str, payload: dict, *, to_publish: bool = True) -> DebtPosition:
        """Replace a position's content (allowed in DRAFT, PUBLISHED, VALID, EXPIRED).

        :raise DebtPositionConflict: ``DEBT_POSITION_NOT_UPDATABLE`` once paid or invalidated.
        """
        response = self.http.request("PUT", self._position(org_cf, iupd), params={"toPublish": to_publish},
                                     json=payload)
        return DebtPosition.from_json(json_body(response))

    def publish(self, org_cf: str, iupd: str) -> DebtPosition:
        """Publish a DRAFT position.

        :raise DebtPositionConflict: ``DEBT_POSITION_NOT_PUBLISHABLE`` if it is not a draft.
        """
        return DebtPosition.from_json(json_body(self.http.request("POST", self._position(org_cf, iupd) + "/publish")))

    def invalidate(self, org_cf: str, iupd: str) -> DebtPosition:
        """Cancel a PUBLISHED or VALID position for good (INVALID: no longer payable).

        :raise DebtPositionConflict: ``DEBT_POSITION_NOT_INVALIDABLE`` in any other state.
        """
        response = self.http.request("POST", self._position(org_cf, iupd) + "/invalidate")
        return DebtPosition.from_json(json_body(response))

    def delete(self, org_cf: str, iupd: str) -> None:
        """Delete a position that has no payment (the usual end of a DRAFT).

        :raise DebtPositionConflict: ``DEBT_POSITION_PAYMENT_FOUND`` if something was paid.
        """
        self.http.request("DELETE", self._position(org_cf, iupd))

    def mark_paid(self, org_cf: str, nav: str, paid_at: datetime) -> None:
        """Record on GPD that an option was paid outside pagoPA (e.g. at the Comune's counter).

        :param paid_at: timezone-aware; sent as UTC.
        :raise DebtPositionNotFound: unknown NAV (``PAYMENT_OPTION_NOT_FOUND``).
        :raise DebtPositionConflict: already paid. A 422 (``PAYMENT_OPTION_NOT_PAYABLE``) is a
            :class:`~portal.pagopa.errors.PagoPARejected`.
        """
        self.http.request("POST", f"/v1/organizations/{segment(org_cf)}/paymentoptions/paids/{segment(nav)}",
                          json={"paymentDate": utc_timestamp(paid_at)})

    def bulk_create(self, org_cf: str, payloads: list[dict], *, to_publish: bool = True) -> None:
        """Create up to 100 positions in one v2 call (all or nothing on GPD's side).

        :raise ValueError: more than 100 payloads. An empty list sends nothing.
        :raise DebtPositionConflict: if any of them already exists.
        """
        if self._bulk_checked(payloads):
            self.http.request("POST", self._positions(org_cf, "v2"), params={"toPublish": to_publish},
                              json={"paymentPositions": list(payloads)}, expect=(201,))

    def bulk_update(self, org_cf: str, payloads: list[dict], *, to_publish: bool = True) -> None:
        """Replace up to 100 positions in one v2 call.

        :raise ValueError: more than 100 payloads. An empty list sends nothing.
        """
        if self._bulk_checked(payloads):
            self.http.request("PUT", self._positions(org_cf, "v2"), params={"toPublish": to_publish},
                              json={"paymentPositions": list(payloads)})

    @staticmethod
    def _bulk_checked(payloads: list[dict]) -> bool:
        if len(payloads) > BULK_MAX:
            raise ValueError(f"GPD accepts at most {BULK_MAX} positions per bulk call, got {len(payloads)}")
        return bool(payloads)
