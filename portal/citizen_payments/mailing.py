"""The receipt link by e-mail: once a citizen payment is paid and the citizen gave an address, one message with a
signed, expiring link to the receipt (never the receipt data itself, which would travel in clear)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formataddr

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.citizen_payments.models import CitizenPayment
from portal.citizen_payments.status import state_of
from portal.ledger.models import Creditor
from portal.ledger.types import utcnow
from portal.mail import Mailer, MailError
from portal.money import format_euro

log = logging.getLogger(__name__)

#: Payments older than this are no longer looked at by the sweep (their Checkout session is long over).
SWEEP_WINDOW = timedelta(days=3)
#: The task that sends one message (declared in the job registry).
MAIL_TASK = "send_citizen_receipt"


def receipt_email(payment: CitizenPayment, creditor: Creditor, link: str, days: int) -> EmailMessage:
    """The message: what was paid, to whom, and the link to the receipt."""
    lines = [f"Gentile {payment.debtor_name or 'cittadina, cittadino'},", "",
             f"il pagamento di {format_euro(payment.amount_cents)} a {creditor.name} è stato eseguito:",
             f"  {payment.subject}", "",
             f"La ricevuta è disponibile a questo indirizzo per {days} giorni:", f"  {link}", "",
             "Questo messaggio è inviato automaticamente: per informazioni si rivolga a " + creditor.name
             + (f" ({creditor.email})" if creditor.email else "") + ".", ""]
    message = EmailMessage()
    message["To"] = formataddr((payment.debtor_name or "", payment.email))
    message["Subject"] = f"Ricevuta di pagamento pagoPA - {creditor.name}"[:200]
    if creditor.email:
        message["Reply-To"] = creditor.email
    message.set_content("\n".join(lines))
    return message


def send_receipt_link(session: Session, payment_id: int, mailer: Mailer, link_for: Callable[[str], str],
                      days: int) -> str:
    """Send the receipt link of one paid payment, once (the row is locked and stamped in the same transaction).

    :raise MailError: the message could not be handed over (the job retries).
    """
    payment = session.get(CitizenPayment, payment_id, with_for_update=True)
    if payment is None or not payment.email:
        return "nessun indirizzo"
    if payment.receipt_mailed_at is not None:
        return "già inviata"
    if not state_of(session, payment).paid:
        return "non ancora pagato"
    creditor = session.get(Creditor, payment.creditor_id)
    try:
        mailer.send(receipt_email(payment, creditor, link_for(payment.token), days))
    except MailError:
        log.warning("citizen payment %s: receipt e-mail to %s failed", payment.id, payment.email)
        raise
    payment.receipt_mailed_at = utcnow()
    session.flush()
    return f"ricevuta inviata a {payment.email}"


def due_for_mail(session: Session, *, limit: int = 200) -> list[int]:
    """Recent payments with an address whose receipt link was not sent yet (the sweep checks each is paid)."""
    since = utcnow() - SWEEP_WINDOW
    return list(session.scalars(
        sa.select(CitizenPayment.id)
        .where(CitizenPayment.receipt_mailed_at.is_(None), CitizenPayment.email.is_not(None),
               CitizenPayment.status.in_(("checkout", "paid")), CitizenPayment.updated_at >= since)
        .order_by(CitizenPayment.id).limit(limit)))
