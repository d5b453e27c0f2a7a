"""A cart of up to five notices the citizen looked up (kept in their session as option ids), and the payment made
from it. Every notice is checked again when paying: a notice paid or cancelled meanwhile never reaches Checkout."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.citizen_payments.models import CitizenPayment, CitizenPaymentItem
from portal.citizen_payments.notice_lookup import CART_MAX, NoticeView, describe
from portal.citizen_payments.spontaneous import new_token
from portal.i18n import _
from portal.ledger.models import PaymentOption


class CartError(ValueError):
    """The cart cannot take this notice, or cannot be paid (Italian message for the citizen)."""


def add(cart: list[int], notice: NoticeView) -> list[int]:
    """The cart with ``notice`` added.

    :raise CartError: the notice is not payable, already there, or the cart is full.
    """
    if not notice.payable:
        raise CartError(notice.explanation or _("Questo avviso non è pagabile."))
    if notice.option_id in cart:
        raise CartError(_("Questo avviso è già nel carrello."))
    if len(cart) >= CART_MAX:
        raise CartError(_("Il carrello contiene già %(n)s avvisi, il massimo per un pagamento: paghi questi e "
                          "poi gli altri.", n=CART_MAX))
    return [*cart, notice.option_id]


def views(session: Session, cart: list[int], *, today: date) -> list[NoticeView]:
    """The notices of the cart as they are now (those gone from the database are dropped)."""
    if not cart:
        return []
    options = {o.id: o for o in session.scalars(sa.select(PaymentOption).where(PaymentOption.id.in_(cart[:CART_MAX])))}
    return [describe(session, options[i], today=today) for i in cart if i in options]


def create_payment(session: Session, cart: list[int], *, email: str | None, today: date) -> CitizenPayment:
    """A citizen payment for the cart's notices, each checked again now.

    :raise CartError: the cart is empty, or a notice is no longer payable (the message says which).
    """
    notices = views(session, cart, today=today)
    if not notices:
        raise CartError(_("Il carrello è vuoto."))
    blocked = [n for n in notices if not n.payable]
    if blocked:
        raise CartError(_("L'avviso %(nav)s non è più pagabile: %(why)s Lo tolga dal carrello per pagare gli altri.",
                          nav=blocked[0].nav_display, why=blocked[0].explanation))
    options = {o.id: o for o in session.scalars(sa.select(PaymentOption).where(
        PaymentOption.id.in_([n.option_id for n in notices])))}
    first = options[notices[0].option_id].position
    payment = CitizenPayment(creditor_id=first.creditor_id, token=new_token(), kind="notices", status="publishing",
                             subject=(first.subject if len(notices) == 1 else f"{len(notices)} avvisi di pagamento")
                             [:140], amount_cents=sum(n.amount_cents for n in notices),
                             debtor_fiscal_code=first.debtor.fiscal_code, debtor_name=first.debtor.name,
                             email=email)
    session.add(payment)
    for notice in notices:
        option = options[notice.option_id]
        session.add(CitizenPaymentItem(payment=payment, position_id=option.position_id, option_id=option.id,
                                       amount_cents=option.amount_cents))
    session.flush()
    return payment
