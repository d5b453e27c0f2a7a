"""From a citizen payment to the Checkout page: publish its positions on pagoPA now, then open a cart.

The position is committed before pagoPA hears of it, and every step commits what it learnt (like a job does), so a
slow or failing pagoPA never leaves anything half made: the position stays pending with its sync state, the
periodic sweep finishes the publication, and the citizen's retry picks up where it stopped.

Those commits keep what the session holds (:func:`_keeping_loaded`): the request has just read or written every row
of the payment, and the one row that matters under concurrency, the position, is read again under its lock by the
synchronisation (``lock_position`` refreshes what is loaded). Reloading the payment, its notices, positions and
options after each commit cost eight statements a payment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.orm import Session, scoped_session

from portal import timing
from portal.citizen_payments.models import CitizenPayment
from portal.i18n import N_, _
from portal.ledger.models import Creditor
from portal.ledger.payability import not_payable_reason
from portal.ledger.status import OptionStatus
from portal.pagopa.checkout import CartNotice, CheckoutClient, ReturnUrls
from portal.pagopa.errors import PagoPAError, PagoPARejected
from portal.pagopa.gpd import GPDClient
from portal.pagopa.sync import sync_position

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckoutStart:
    """How :func:`start_checkout` ended.

    ``result``: ``redirect`` (send the browser to ``url``), ``slow`` (pagoPA did not answer in time: offer a retry;
    the publication goes on in the background), ``refused`` (pagoPA or the ledger refuses: ``message`` says why).
    """

    result: str
    url: str | None = None
    message: str = ""


SLOW_MESSAGE = N_("pagoPA sta rispondendo più lentamente del solito. Il pagamento è registrato e sarà pronto a breve: "
                "riprovi tra qualche istante, senza compilare di nuovo il modulo.")


def start_checkout(session: Session, payment: CitizenPayment, gpd: GPDClient, checkout: CheckoutClient,
                   urls: ReturnUrls) -> CheckoutStart:
    """Publish what is not on pagoPA yet, then open a Checkout cart for the payment's notices.

    Commits after each step. A second call (the retry button, a double click) continues from where the first one
    stopped: converged positions are not sent again, and a new cart is opened only for what is still unpaid.
    """
    with timing.phase("commit"), _keeping_loaded(session):
        session.commit()  # the positions and the payment exist before pagoPA is called
    for item in payment.items:
        position = item.position
        if position.pagopa_synced_target == "published" and not position.sync_pending:
            continue
        with timing.phase("publish"), _keeping_loaded(session):
            outcome = sync_position(session, position.id, gpd)
            session.commit()
        if outcome.result in ("busy", "retry"):
            log.info("citizen payment %s: pagoPA slow for position %s (%s)", payment.id, position.iupd,
                     outcome.result)
            return CheckoutStart("slow", message=_(SLOW_MESSAGE))
        if outcome.result == "rejected":
            return CheckoutStart("refused", message=_("pagoPA non ha accettato il pagamento. Il Comune è stato "
                                                      "informato: riprovi più tardi o contatti l'ufficio."))
    problems = [reason for item in payment.items if (reason := _not_payable(item))]
    if problems:
        return CheckoutStart("refused", message=" ".join(problems))
    creditors = {cid: session.get(Creditor, cid) for cid in {item.position.creditor_id for item in payment.items}}
    notices = [CartNotice(item.option.notice_number, creditors[item.position.creditor_id].fiscal_code,
                          item.option.amount_cents, creditors[item.position.creditor_id].name,
                          item.option.description) for item in payment.items]
    try:
        with timing.phase("checkout"):
            url = checkout.create_cart(notices, urls, email=payment.email, id_cart=f"PB{payment.id}", version=2)
    except PagoPARejected as exc:
        log.warning("citizen payment %s: Checkout refused the cart: %s", payment.id, exc)
        return CheckoutStart("refused", message=_("pagoPA non ha accettato il carrello di pagamento: riprovi "
                                                  "più tardi."))
    except PagoPAError as exc:
        log.warning("citizen payment %s: Checkout unavailable: %s", payment.id, exc)
        return CheckoutStart("slow", message=_(SLOW_MESSAGE))
    payment.status = "checkout"
    payment.checkout_url = url
    payment.outcome = None
    session.commit()
    return CheckoutStart("redirect", url=url)


@contextmanager
def _keeping_loaded(session: Session) -> Iterator[None]:
    """Commits in the block leave the session's objects loaded (``expire_on_commit`` off for the while)."""
    real = session() if isinstance(session, scoped_session) else session
    previous = real.expire_on_commit
    real.expire_on_commit = False
    try:
        yield
    finally:
        real.expire_on_commit = previous


def _not_payable(item) -> str | None:
    if item.option.status != OptionStatus.UNPAID:
        return _("Un avviso del carrello risulta già pagato.") if item.option.status == OptionStatus.PAID else \
            _("Un avviso del carrello è stato annullato.")
    return not_payable_reason(item.position)
