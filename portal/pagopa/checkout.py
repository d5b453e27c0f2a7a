"""Client of the Checkout "carts" API (``specs/checkout/checkout_v1.json`` and ``checkout_v2.json``).

A citizen pays one to five notices from our portal: we post the cart, Checkout answers **302** with the URL of
its payment page in ``Location``, and we send the browser there. ``requests`` must not follow that redirect
(the page is for the citizen's browser, not for us), so the 302 itself is the success answer.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin

import requests

from portal.pagopa.errors import PagoPAError
from portal.pagopa.http import PagoPAHttp, config_value

MAX_NOTICES = 5
TEXT_MAX = 140


@dataclass(frozen=True)
class CartNotice:
    """One notice to pay: NAV (18 digits), the Ente's fiscal code (11), amount in cents, texts (≤140)."""

    notice_number: str
    fiscal_code: str
    amount_cents: int
    company_name: str
    description: str

    def to_json(self) -> dict:
        """The ``PaymentNotice`` object of the cart request."""
        return {
            "noticeNumber": self.notice_number,
            "fiscalCode": self.fiscal_code,
            "amount": self.amount_cents,
            "companyName": self.company_name[:TEXT_MAX],
            "description": self.description[:TEXT_MAX],
        }


@dataclass(frozen=True)
class ReturnUrls:
    """Where Checkout sends the citizen back; ``waiting_url`` is required by cart API v2 only."""

    ok_url: str
    cancel_url: str
    error_url: str
    waiting_url: str | None = None

    def to_json(self, version: int) -> dict:
        """The ``returnUrls`` object for API ``version``."""
        urls = {"returnOkUrl": self.ok_url, "returnCancelUrl": self.cancel_url, "returnErrorUrl": self.error_url}
        if version >= 2:
            urls["returnWaitingUrl"] = self.waiting_url
        return urls


class CheckoutClient:
    """Open Checkout carts.

    :param base_url: the service root *without* version, e.g. ``https://api.platform.pagopa.it/checkout/ec``
        (``/v1/carts`` or ``/v2/carts`` is appended).
    """

    def __init__(self, base_url: str, api_key: str, timeout: float = 10.0, *,
                 session: requests.Session | None = None):
        root = (base_url or "").rstrip("/")
        for suffix in ("/v1", "/v2"):
            root = root.removesuffix(suffix)
        self.http = PagoPAHttp(root, api_key, timeout=timeout, session=session, name="Checkout")

    @classmethod
    def from_config(cls, config: Mapping) -> "CheckoutClient":
        """Build from ``PAGOPA_CHECKOUT_URL``, ``PAGOPA_API_KEY`` and ``PAGOPA_TIMEOUT_SECONDS``."""
        return cls(config_value(config, "PAGOPA_CHECKOUT_URL"), config_value(config, "PAGOPA_API_KEY"),
                   float(config.get("PAGOPA_TIMEOUT_SECONDS") or 10.0))

    def create_cart(self, notices: Sequence[CartNotice], return_urls: ReturnUrls, email: str | None = None,
                    id_cart: str | None = None, version: int = 1) -> str:
        """Create a cart and return the Checkout URL to redirect the citizen's browser to.

        :param id_cart: our reference; the node passes it back as ``paymentNote`` in paGetPayment.
        :raise ValueError: not 1..5 notices, a malformed notice, or v2 without ``waiting_url``.
        :raise PagoPARejected: Checkout refused the cart (400, ProblemJson kept).
        :raise PagoPAUnavailable: Checkout unreachable or failing (5xx, timeout).
        :raise PagoPAError: any answer other than a 302 with a ``Location``.
        """
        if version not in (1, 2):
            raise ValueError(f"unknown Checkout carts API version {version}")
        if not 1 <= len(notices) <= MAX_NOTICES:
            raise ValueError(f"a cart holds 1 to {MAX_NOTICES} notices, got {len(notices)}")
        for notice in notices:
            _check_notice(notice)
        if version >= 2 and not return_urls.waiting_url:
            raise ValueError("Checkout carts v2 requires a waiting_url")
        body = {"paymentNotices": [n.to_json() for n in notices], "returnUrls": return_urls.to_json(version)}
        if email:
            body["emailNotice"] = email
        if id_cart:
            body["idCart"] = id_cart
        response = self.http.request("POST", f"/v{version}/carts", json=body, expect=(302,))
        location = response.headers.get("Location")
        if not location:
            raise PagoPAError("Checkout non ha indicato la pagina di pagamento.", status=response.status_code,
                              detail="302 without Location")
        return urljoin(response.url, location)


def _check_notice(notice: CartNotice) -> None:
    if not (len(notice.notice_number) == 18 and notice.notice_number.isdigit()):
        raise ValueError(f"notice number must be 18 digits: {notice.notice_number!r}")
    if not (len(notice.fiscal_code) == 11 and notice.fiscal_code.isdigit()):
        raise ValueError(f"creditor fiscal code must be 11 digits: {notice.fiscal_code!r}")
    if not isinstance(notice.amount_cents, int) or isinstance(notice.amount_cents, bool) or notice.amount_cents < 1:
        raise ValueError(f"amount must be a positive number of cents: {notice.amount_cents!r}")
