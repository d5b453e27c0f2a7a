"""Notices by e-mail: a short Italian message with the PDF attached, and a delivery log per position.

Every attempt is a :class:`~portal.notices.models.NoticeDelivery` row: written ``queued`` and committed before the
message leaves, then ``sent`` or ``failed`` with the server's answer. A bill run's mail job delivers each
position once (unique per run and position); re-running it retries only what is not ``sent``.
"""

import logging
from email.message import EmailMessage
from email.utils import formataddr

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from portal import outbox
from portal.formatting import format_date
from portal.ledger.models import Creditor, PaymentOption, Position
from portal.ledger.notice_numbers import format_nav
from portal.ledger.payability import not_payable_reason
from portal.ledger.types import utcnow
from portal.mail import Mailer, MailError
from portal.money import format_euro
from portal.notices.models import BillRun, BillRunItem, NoticeDelivery
from portal.notices.render import NoticeError, notice_filename, render_notice, unpaid_options

log = logging.getLogger(__name__)


class DeliveryError(ValueError):
    """The notice cannot be sent (no address, nothing to pay); Italian message for the officer."""


def notice_email(position: Position, creditor: Creditor, pdf: bytes) -> EmailMessage:
    """The message to the debtor: what is due, by when, how to pay, and the notice attached."""
    unpaid = unpaid_options(position)
    single = next((o for o in unpaid if o.kind == "single"), None)
    installments = [o for o in unpaid if o.kind == "installment"]
    lines = [f"Gentile {position.debtor.name},", "",
             f"in allegato l'avviso di pagamento pagoPA di {creditor.name} per:", f"  {position.subject}", ""]
    if single:
        lines.append(f"Importo: {format_euro(single.amount_cents)} entro il {format_date(single.due_date)} "
                     f"(codice avviso {format_nav(single.notice_number)}).")
    if installments:
        lines.append("In alternativa, a rate:" if single else
                     "Rata da pagare:" if len(installments) == 1 else "Rate da pagare:")
        lines += [f"  rata {o.installment_number}: {format_euro(o.amount_cents)} entro il {format_date(o.due_date)} "
                  f"(codice avviso {format_nav(o.notice_number)})" for o in installments]
    lines += ["",
              "Può pagare con l'app IO, sul sito o nell'app della sua banca, o presso gli sportelli abilitati a "
              "pagoPA (banche, uffici postali, punti vendita SISAL, Lottomatica, Banca 5), inquadrando il codice QR "
              "o indicando il codice avviso e il codice fiscale dell'ente (" + creditor.fiscal_code + ").",
              "", "Se ha già pagato, non tenga conto di questo messaggio.", "",
              "Questo messaggio è inviato automaticamente: per informazioni si rivolga a " + creditor.name
              + (f" ({creditor.email or creditor.pec})" if creditor.email or creditor.pec else "") + ".", ""]
    message = EmailMessage()
    message["To"] = formataddr((position.debtor.name, position.debtor.email))
    message["Subject"] = f"Avviso di pagamento pagoPA - {creditor.name}: {position.subject}"[:200]
    if creditor.email:
        message["Reply-To"] = creditor.email
    message.set_content("\n".join(lines))
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=notice_filename(position))
    return message


def request_email(session: Session, position: Position, *, requested_by_id: int | None = None,
                  enqueue: bool = True) -> NoticeDelivery:
    """Queue the notice of ``position`` for its debtor's e-mail address (the officer's button).

    :raise DeliveryError: no e-mail address, or nothing left to pay.
    """
    if not position.debtor.email:
        raise DeliveryError("Il debitore non ha un indirizzo e-mail.")
    reason = not_payable_reason(position)
    if reason:
        raise DeliveryError(reason)
    delivery = NoticeDelivery(position_id=position.id, channel="email", recipient=position.debtor.email,
                              status="queued", requested_by_id=requested_by_id)
    session.add(delivery)
    session.flush()
    if enqueue:
        outbox.schedule(session, "send_notice_email", delivery.id, job_id=f"notice-mail-{delivery.id}",
                        creditor_id=position.creditor_id, created_by_id=requested_by_id)
    return delivery


def _load_position(session: Session, position_id: int) -> Position:
    return session.scalars(sa.select(Position).options(selectinload(Position.options)
                                                       .selectinload(PaymentOption.transfers))
                           .where(Position.id == position_id)).one()


def _attempt(session: Session, delivery: NoticeDelivery, position: Position, creditor: Creditor,
             mailer: Mailer) -> bool:
    """Send one delivery and record the outcome (the caller commits)."""
    delivery.attempts += 1
    try:
        pdf = render_notice(position, creditor=creditor)
        mailer.send(notice_email(position, creditor, pdf))
    except (MailError, NoticeError) as exc:
        delivery.status, delivery.error = "failed", str(exc)[:2000]
        log.warning("notice e-mail %s to %s failed: %s", delivery.id, delivery.recipient, exc)
        return False
    delivery.status, delivery.error, delivery.sent_at = "sent", None, utcnow()
    return True


def deliver(session: Session, delivery_id: int, mailer: Mailer) -> str:
    """Send one queued delivery (the job of :func:`request_email`)."""
    delivery = session.get(NoticeDelivery, delivery_id, with_for_update=True)
    if delivery is None or delivery.status == "sent":
        return "già inviato"
    position = _load_position(session, delivery.position_id)
    ok = _attempt(session, delivery, position, session.get(Creditor, position.creditor_id), mailer)
    return f"inviato a {delivery.recipient}" if ok else f"non inviato: {delivery.error}"


def deliver_bill_run_chunk(session: Session, run_id: int, chunk: int, mailer: Mailer) -> str:
    """E-mail the notices of one chunk of a done run to the debtors who have an address.

    Commits after each message (queued row first, then the outcome), so a crash never loses track of what left.
    """
    run = session.get(BillRun, run_id)
    if run is None or run.status != "done":
        return "bollettazione non conclusa"
    creditor = session.get(Creditor, run.creditor_id)
    position_ids = session.scalars(
        sa.select(BillRunItem.position_id).where(BillRunItem.bill_run_id == run_id, BillRunItem.chunk == chunk,
                                                 BillRunItem.skipped.is_(False)).order_by(BillRunItem.seq)).all()
    done = {pid for pid, in session.execute(sa.select(NoticeDelivery.position_id).where(
        NoticeDelivery.bill_run_id == run_id, NoticeDelivery.status == "sent",
        NoticeDelivery.position_id.in_(position_ids)))}
    sent = failed = 0
    for count, position_id in enumerate(position_ids):
        outbox.report_progress(count, len(position_ids))
        if position_id in done:
            continue
        position = _load_position(session, position_id)
        if not position.debtor.email or not unpaid_options(position):
            continue
        delivery = session.scalar(sa.select(NoticeDelivery).where(
            NoticeDelivery.bill_run_id == run_id, NoticeDelivery.position_id == position_id))
        if delivery is None:
            delivery = NoticeDelivery(position_id=position_id, bill_run_id=run_id, channel="email",
                                      recipient=position.debtor.email, status="queued",
                                      requested_by_id=run.created_by_id)
            session.add(delivery)
        session.commit()
        if _attempt(session, delivery, position, creditor, mailer):
            sent += 1
        else:
            failed += 1
        session.commit()
    outbox.report_progress(len(position_ids), len(position_ids))
    return f"{sent} e-mail inviate, {failed} non riuscite"


def deliveries_of(session: Session, position_id: int) -> list[NoticeDelivery]:
    """The delivery log of one position, newest first."""
    return session.scalars(sa.select(NoticeDelivery).where(NoticeDelivery.position_id == position_id)
                           .order_by(NoticeDelivery.id.desc())).all()


__all__ = ["DeliveryError", "deliver", "deliver_bill_run_chunk", "deliveries_of", "notice_email",
           "request_email"]
