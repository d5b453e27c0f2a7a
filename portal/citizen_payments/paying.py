"""From a citizen payment to the Checkout page: publish its positions on pagoPA now, then open a cart.

The position is committed before pagoPA hears of it, and what each later step learnt is committed before the
answer (like a job does), so a slow or failing pagoPA never leaves anything half made: the position stays pending
with its sync state, the periodic sweep finishes the publication, and the citizen's retry picks up where it
stopped. The publication is committed together with the cart's outcome: the position's row stays locked during
the cart's call (the sweep skips it; a receipt for it, unlikely for a notice nobody has seen yet, waits at most the
call's short timeout).

The first commit keeps what the session holds (:func:`_keeping_loaded`): the request has just read or written
every row of the payment, and the one row that matters under concurrency, the position, is read again under its
lock by the synchronisation (``lock_position`` refreshes what is loaded). Reloading the payment, its notices,
positions and options after each commit cost eight statements a payment.
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

    The positions and the payment are committed before pagoPA is called; what the publication learnt is committed
    with the cart's outcome (one commit, not two: GPD has the position either way, and should this transaction be
    lost the sweep's next attempt finds it there, a create answered "already exists", and counts it as done), or
    on its own when it stops short of the cart. A second call (the retry button, a double click) continues from
    where the first one stopped: converged positions are not sent again, and a new cart is opened only for what is
    still unpaid.
    """
    with timing.phase("commit"), _keeping_loaded(session):
        session.commit()  # the positions and the payment exist before pagoPA is called
    stopped = _publish(session, payment, gpd)
    if stopped is None:
        problems = [reason for item in payment.items if (reason := _not_payable(item))]
        stopped = CheckoutStart("refused", message=" ".join(problems)) if problems else None
    if stopped is not None:
        session.commit()
        return stopped
    started = _open_cart(session, payment, checkout, urls)
    if started.result == "redirect":
        payment.status = "checkout"
        payment.checkout_url = started.url
        payment.outcome = None
    with timing.phase("commit"):
        session.commit()
    return started


def _publish(session: Session, payment: CitizenPayment, gpd: GPDClient) -> CheckoutStart | None:
    """Publish the payment's positions pagoPA does not have yet (locked until the caller commits); how it stopped
    short of the cart, or None."""
    for item in payment.items:
        position = item.position
        if position.pagopa_synced_target == "published" and not position.sync_pending:
            continue
        with timing.phase("publish"):
            outcome = sync_position(session, position.id, gpd)
        if outcome.result in ("busy", "retry"):
            log.info("citizen payment %s: pagoPA slow for position %s (%s)", payment.id, position.iupd,
                     outcome.result)
            return CheckoutStart("slow", message=_(SLOW_MESSAGE))
        if outcome.result == "rejected":
            return CheckoutStart("refused", message=_("pagoPA non ha accettato il pagamento. Il Comune è stato "
                                                      "informato: riprovi più tardi o contatti l'ufficio."))
    return None


def _open_cart(session: Session, payment: CitizenPayment, checkout: CheckoutClient,
               urls: ReturnUrls) -> CheckoutStart:
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
