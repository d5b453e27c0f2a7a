"""A spontaneous payment: a citizen's answers to a service's form become a draft payment (the summary), then a
position of their own with its IUV (source ``citizen``) when they choose to pay."""

from __future__ import annotations

import logging
import secrets
from datetime import date, timedelta

from sqlalchemy.orm import Session

from portal.citizen_payments.models import CitizenPayment, CitizenPaymentItem
from portal.forms_builder import amounts
from portal.forms_builder.definition import FilledForm, FormDefinition, fill
from portal.forms_builder.models import PaymentForm
from portal.ledger import services as ledger
from portal.ledger.inputs import DebtorInput, OptionInput, PositionInput
from portal.ledger.models import Creditor, Position, Service

log = logging.getLogger(__name__)

#: ``Position.source`` of what citizens start on the portal.
SOURCE = "citizen"
#: The actor on the timeline.
ACTOR = "citizen"
#: Days a spontaneous payment stays payable: enough to try again after a cancelled Checkout, short enough for an
#: abandoned one to expire soon.
DUE_DAYS = 10


def new_token() -> str:
    """An unguessable handle for a citizen payment (256 bits)."""
    return secrets.token_urlsafe(32)


def start(session: Session, service: Service, form: PaymentForm, raw: dict, *, today: date) -> CitizenPayment:
    """Read a citizen's answers and keep them as a draft payment, ready for the summary.

    :raise ValidationFailed: one error per field to correct; nothing is stored.
    """
    definition = FormDefinition.from_dict(form.definition)
    filled: FilledForm = fill(definition, raw, today=today)
    # The amount inputs as typed (``_importo``, ``_voce``: never field keys) go with the answers, so "Modifica"
    # shows what the citizen wrote rather than a reduced amount.
    typed = {name: (raw.get(name) or "")[:30] for name in (amounts.TYPED_INPUT, amounts.CHOICE_INPUT) if raw.get(name)}
    payment = CitizenPayment(creditor_id=service.creditor_id, token=new_token(), kind="spontaneous", status="draft",
                             form_id=form.id, answers={**filled.answers, **typed}, subject=filled.subject,
                             amount_cents=filled.amount.cents,
                             amount_note=filled.amount.explanation[:200], debtor_fiscal_code=filled.debtor_fiscal_code,
                             debtor_name=filled.debtor_name, email=filled.debtor_email)
    session.add(payment)
    session.flush()
    return payment


def ensure_position(session: Session, payment: CitizenPayment, *, today: date) -> Position:
    """The payment's position, created now if it has none (idempotent on the payment's token).

    The position is created without a sync job of its own: the caller publishes it at once, and if that fails the
    periodic sweep does it (``sync_next_at`` is now).
    """
    if payment.items:
        return payment.items[0].position
    form = payment.form
    service = session.get(Service, form.service_id)
    creditor = session.get(Creditor, payment.creditor_id)
    due = today + timedelta(days=DUE_DAYS)
    data = PositionInput(
        service_id=service.id,
        debtor=DebtorInput(fiscal_code=payment.debtor_fiscal_code, name=payment.debtor_name, email=payment.email),
        subject=payment.subject,
        single=OptionInput(amount_cents=payment.amount_cents, due_date=due),
        external_id=payment.token,
        source=SOURCE,
    )
    # Visible to no officer's scope restriction: a citizen changes only a version of the debtor when it is shared.
    position, created = ledger.create_position(session, creditor, data, actor=ACTOR, today=today,
                                               enqueue_sync=False, visible_service_ids=set(), flush=False)
    if created:
        # The answers themselves stay with the payment (read with this version's fields on the position page).
        ledger.record_event(session, position, "citizen_form", actor=ACTOR, form=form.definition.get("title"),
                            form_version=form.version)
    option = position.options[0]
    # Written by the caller's next flush (the commit before pagoPA is called).
    session.add(CitizenPaymentItem(payment=payment, position=position, option=option,
                                   amount_cents=option.amount_cents))
    payment.status = "publishing"
    log.info("citizen payment %s: position %s created (%s)", payment.id, position.iupd, service.code)
    return position
