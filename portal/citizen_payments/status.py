"""Where a citizen payment stands: waiting for pagoPA's receipt, or paid with a receipt for each notice."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload

from portal.citizen_payments.models import CitizenPayment, CitizenPaymentItem
from portal.forms_builder.models import PaymentForm
from portal.ledger.models import Receipt, Service
from portal.ledger.status import OptionStatus

#: What Checkout may say when it sends the citizen back (the last part of our return URLs).
OUTCOMES = {"ok": "ok", "annullato": "cancel", "errore": "error", "attesa": "waiting"}


@dataclass
class PaymentState:
    """A payment's receipts so far; ``paid`` once every notice has one."""

    payment: CitizenPayment
    receipts: list[tuple[CitizenPaymentItem, Receipt | None]] = field(default_factory=list)

    @property
    def paid(self) -> bool:
        """Every notice of the payment was paid (its receipt arrived)."""
        return bool(self.receipts) and all(r is not None for _, r in self.receipts)

    @property
    def paid_cents(self) -> int:
        """What the receipts add up to."""
        return sum(r.amount_cents for _, r in self.receipts if r is not None)


def state_of(session: Session, payment: CitizenPayment) -> PaymentState:
    """The receipts of the payment's notices; marks the payment ``paid`` when all arrived."""
    option_ids = [item.option_id for item in payment.items]
    receipts = {}
    if option_ids:
        receipts = {r.option_id: r for r in session.scalars(
            sa.select(Receipt).where(Receipt.option_id.in_(option_ids), Receipt.outcome == "OK"))}
    state = PaymentState(payment, [(item, receipts.get(item.option_id)) for item in payment.items])
    # An option paid without a receipt row (recorded at the counter) counts as paid, with no receipt to show.
    settled = bool(payment.items) and all(item.option.status == OptionStatus.PAID for item in payment.items)
    if (state.paid or settled) and payment.status != "paid":
        payment.status = "paid"
        session.flush()
    return state


def record_return(session: Session, payment: CitizenPayment, outcome: str) -> str:
    """Remember what Checkout said when the citizen came back (``ok``, ``cancel``, ``error``, ``waiting``).

    :raise ValueError: for an outcome Checkout never sends.
    """
    if outcome not in OUTCOMES.values():
        raise ValueError(f"unknown Checkout outcome {outcome!r}")
    if payment.status != "paid":
        payment.outcome = outcome
        session.flush()
    return outcome


def find(session: Session, token: str, *, with_related: bool = False) -> CitizenPayment | None:
    """The payment with this token (tokens are random: a wrong one finds nothing).

    ``with_related``: in the same round trip, what the payment's pages and "Paga con pagoPA" read — its notices
    (option and position of each) and its form with the service, the service's Ente and account — rather than one
    lazy load after the other.
    """
    if not token or len(token) > 64:
        return None
    query = sa.select(CitizenPayment).where(CitizenPayment.token == token)
    if with_related:
        items = joinedload(CitizenPayment.items)
        service = joinedload(CitizenPayment.form).joinedload(PaymentForm.service, innerjoin=True)
        query = query.options(items.joinedload(CitizenPaymentItem.option, innerjoin=True),
                              items.joinedload(CitizenPaymentItem.position, innerjoin=True),
                              service.joinedload(Service.creditor, innerjoin=True),
                              service.joinedload(Service.account, innerjoin=True))
    return session.execute(query).unique().scalar_one_or_none()


def of_position(session: Session, position_id: int) -> CitizenPayment | None:
    """The citizen payment a position was paid with or created for, if any (the latest)."""
    return session.scalar(sa.select(CitizenPayment).join(CitizenPaymentItem)
                          .where(CitizenPaymentItem.position_id == position_id)
                          .order_by(CitizenPayment.id.desc()).limit(1))


@dataclass(frozen=True)
class FormAnswers:
    """What a citizen filled in for a spontaneous payment, for the officer's position page."""

    title: str
    version: int
    summary: list[tuple[str, str]]
    email: str | None


def form_answers(session: Session, position_id: int) -> FormAnswers | None:
    """The answers behind a position created from a service's form (``None`` for any other position)."""
    from portal.forms_builder.definition import FormDefinition, summary_of

    payment = of_position(session, position_id)
    if payment is None or payment.form is None:
        return None
    definition = FormDefinition.from_dict(payment.form.definition)
    return FormAnswers(definition.title, payment.form.version, summary_of(definition, payment.answers or {}),
                       payment.email)
