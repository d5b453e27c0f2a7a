"""Payments outside pagoPA: cash at the counter, a bank transfer to the treasury, an F24, recorded on an option.

Plain Python like the rest of the ledger: it takes the session and the actor, flushes, never commits, and never
talks to pagoPA. Recording one pays the option exactly as a receipt does (:func:`portal.ledger.payments.
apply_payment`: the same event on the timeline, the same webhooks), stores an :class:`OfflinePayment` row with
the channel and the payment's reference, and asks the durable sync to tell GPD (``paymentoptions/paids/{nav}``,
see :mod:`portal.pagopa.sync`), which then reports back with :func:`confirm_told`.

Amounts follow the receipts' rule: a payment whose amount differs from the option's still pays it (the money
was taken) and is flagged ``amount_mismatch`` for an officer, who resolves it with a note. Because a typing error
could not be undone once pagoPA is told, a different amount must be confirmed explicitly.

A payment recorded by mistake is *reversed*, with a reason, only while pagoPA has not been told: the option is
unpaid again, the options of the other payment mode it cancelled come back, the position returns to the open
status it had (:data:`~portal.ledger.status.REVERSALS`). Reversal and sync lock the position, so one of them
waits for the other: a reversal that finds pagoPA told is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.i18n import N_
from portal.ledger import sync_state
from portal.ledger.anomalies import mark_resolved
from portal.ledger.errors import FieldError, ValidationFailed
from portal.ledger.locks import take_write_lock
from portal.ledger.models import OfflinePayment, PaymentOption, Position, Receipt
from portal.ledger.payments import FLAG_AMOUNT_MISMATCH, apply_payment
from portal.ledger.services import record_event
from portal.ledger.status import (
    LABELS,
    PAYABLE_STATUSES,
    LedgerError,
    OptionStatus,
    PositionStatus,
    check_reversal,
)
from portal.ledger.types import utcnow
from portal.money import format_euro

log = logging.getLogger(__name__)

ROME = ZoneInfo("Europe/Rome")

#: The channels, as officers read them (``OfflinePayment.channel``).
CHANNELS = {
    "cash": N_("Contanti allo sportello"),
    "bank_transfer": N_("Bonifico bancario"),
    "f24": N_("Modello F24"),
}
#: What a payment through pagoPA is called where channels are listed together (webhooks, exports).
PAGOPA_CHANNEL = "pagopa"
#: Flags of a payment that needs an officer, as for receipts.
KINDS = {FLAG_AMOUNT_MISMATCH: N_("Importo diverso dal dovuto")}
REFERENCE_MAX = OfflinePayment.__table__.c.reference.type.length
REASON_MAX = 500
#: The largest amount pagoPA takes for one notice (999.999.999,99 €).
AMOUNT_MAX = 99_999_999_999
#: Payments dated before this are a typing error.
EARLIEST = date(2000, 1, 1)
#: Timeline event kinds written here (the payment itself is the status event of :func:`apply_payment`).
FLAGGED_EVENT = "offline_payment_flagged"
REVERSED_EVENT = "offline_payment_reversed"
TOLD_EVENT = "pagopa_paid_marked"
RESOLVED_EVENT = "offline_payment_resolved"


class OfflinePaymentRefused(LedgerError):
    """The payment cannot be recorded or reversed in the position's state; the message says why, in Italian."""


@dataclass(frozen=True)
class OfflinePaymentInput:
    """What an officer or a municipal system tells of a payment made outside pagoPA."""

    option_id: int | None
    paid_on: date | None
    channel: str
    reference: str
    amount_cents: int | None
    #: The amount differs from the option's on purpose: record it, flagged.
    accept_amount_mismatch: bool = False


def _today() -> date:
    return datetime.now(ROME).date()


def _rome(moment: datetime) -> str:
    return moment.astimezone(ROME).strftime("%d/%m/%Y alle %H:%M")


def paid_at_of(paid_on: date) -> datetime:
    """The option's ``paid_at`` for a payment of that day: its start, Europe/Rome (only the day is known)."""
    return datetime.combine(paid_on, time.min, tzinfo=ROME)


def lock_position(session: Session, position_id: int) -> tuple[Position, list[PaymentOption]]:
    """The position and all its options, locked in that order (as receipts lock them), current versions."""
    take_write_lock(session)
    rows = session.execute(
        sa.select(Position, PaymentOption).join(PaymentOption, PaymentOption.position_id == Position.id)
        .where(Position.id == position_id).order_by(PaymentOption.id)
        .with_for_update(of=[Position, PaymentOption]).execution_options(populate_existing=True)
    ).all()
    if not rows:
        raise LookupError(f"position {position_id} not found")
    return rows[0][0], [row[1] for row in rows]


def _validate(data: OfflinePaymentInput, options: list[PaymentOption], today: date) -> PaymentOption:
    """The option paid; every problem of the input at once, per field."""
    errors: list[FieldError] = []
    option = next((o for o in options if o.id == data.option_id), None)
    if option is None:
        errors.append(FieldError("option", "Scegliere la rata o l'unica soluzione pagata."))
    if data.channel not in CHANNELS:
        errors.append(FieldError("channel", "Scegliere come è stato pagato: " + ", ".join(
            label.lower() for label in CHANNELS.values()) + "."))
    reference = " ".join((data.reference or "").split())
    if not reference:
        errors.append(FieldError("reference", "Indicare il riferimento del pagamento (numero di quietanza, CRO/TRN "
                                              "del bonifico, protocollo dell'F24)."))
    elif len(reference) > REFERENCE_MAX:
        errors.append(FieldError("reference", f"Il riferimento può avere al massimo {REFERENCE_MAX} caratteri."))
    if data.paid_on is None:
        errors.append(FieldError("paid_on", "Indicare la data del pagamento."))
    elif data.paid_on > today:
        errors.append(FieldError("paid_on", "La data del pagamento non può essere futura."))
    elif data.paid_on < EARLIEST:
        errors.append(FieldError("paid_on", "Data del pagamento non valida."))
    amount = data.amount_cents
    if amount is None or isinstance(amount, bool) or not isinstance(amount, int):
        errors.append(FieldError("amount", "Indicare l'importo pagato."))
    elif amount <= 0:
        errors.append(FieldError("amount", "L'importo deve essere maggiore di zero."))
    elif amount > AMOUNT_MAX:
        errors.append(FieldError("amount", "L'importo supera il massimo consentito da pagoPA (999.999.999,99 €)."))
    elif option is not None and amount != option.amount_cents and not data.accept_amount_mismatch:
        errors.append(FieldError("amount", f"L'importo è diverso dal dovuto ({format_euro(option.amount_cents)}): "
                                           "correggerlo, o confermare che è stato pagato proprio questo importo "
                                           "(il pagamento resterà tra le anomalie da verificare)."))
    if errors:
        raise ValidationFailed(errors)
    return option


def recording_refusal(position: Position) -> str | None:
    """Why no payment outside pagoPA can be recorded on the position now (``None`` when one can), in Italian."""
    if position.status == PositionStatus.DRAFT:
        return "La posizione è in bozza: pubblicarla prima di registrare un pagamento."
    if position.status not in PAYABLE_STATUSES:
        return f"La posizione è «{LABELS[position.status].lower()}»: non si possono registrare pagamenti."
    return None


def payable_options(position: Position) -> list[PaymentOption]:
    """The options a payment outside pagoPA may pay now (unpaid ones, while the position takes payments)."""
    if recording_refusal(position) is not None:
        return []
    return [o for o in position.options if o.status == OptionStatus.UNPAID]


def record(session: Session, position_id: int, data: OfflinePaymentInput, *, actor: str,
           actor_user_id: int | None = None, today: date | None = None) -> OfflinePayment:
    """Record a payment made outside pagoPA: the option is paid, the event written, pagoPA told after the commit.

    :raise ValidationFailed: for input that is not valid, per field (``option``, ``channel``, ``reference``,
        ``paid_on``, ``amount``); nothing is written.
    :raise OfflinePaymentRefused: when the position takes no payments (a draft, closed) or the option is not
        unpaid any more.
    """
    position, options = lock_position(session, position_id)
    refusal = recording_refusal(position)
    if refusal:
        raise OfflinePaymentRefused(refusal)
    option = _validate(data, options, today or _today())
    if option.status != OptionStatus.UNPAID:
        raise OfflinePaymentRefused("L'avviso scelto è già pagato." if option.status == OptionStatus.PAID else
                                    "L'avviso scelto è annullato: l'altra modalità di pagamento (unica soluzione o "
                                    "rate) è già stata pagata.")
    reference = " ".join(data.reference.split())
    flag = FLAG_AMOUNT_MISMATCH if data.amount_cents != option.amount_cents else None
    payment = OfflinePayment(
        creditor_id=position.creditor_id, position_id=position.id, option_id=option.id, channel=data.channel,
        reference=reference, amount_cents=data.amount_cents, option_amount_cents=option.amount_cents,
        paid_on=data.paid_on, recorded_at=utcnow(), recorded_by=actor, recorded_by_id=actor_user_id,
        previous_status=position.status.value, flag=flag, cancelled_option_ids=[])
    session.add(payment)
    session.flush()
    details = {"payment_channel": data.channel, "reference": reference, "amount_cents": data.amount_cents,
               "payment_date": data.paid_on.isoformat(), "notice_number": option.notice_number, "iuv": option.iuv,
               "offline_payment_id": payment.id}
    cancelled = apply_payment(session, position, option, options, amount_cents=data.amount_cents,
                              paid_at=paid_at_of(data.paid_on), actor=actor, actor_user_id=actor_user_id,
                              details=details)
    payment.cancelled_option_ids = [o.id for o in cancelled]
    if flag:
        record_event(session, position, FLAGGED_EVENT, actor=actor, actor_user_id=actor_user_id, flag=flag,
                     option_amount_cents=option.amount_cents, **details)
    position.pagopa_paid_pending = True
    sync_state.request_sync(session, position, actor_user_id=actor_user_id)
    session.flush()
    log.info("position %s: %s cents paid outside pagoPA (%s, %s) by %s", position.iupd, data.amount_cents,
             data.channel, reference, actor)
    return payment


def reversal_refusal(payment: OfflinePayment) -> str | None:
    """Why the payment cannot be reversed (``None`` when it can), in Italian."""
    if payment.reversed_at is not None:
        return "Il pagamento è già stato annullato."
    if payment.pagopa_notified_at is not None:
        return (f"pagoPA è stato informato del pagamento il {_rome(payment.pagopa_notified_at)}: "
                "non si può più annullare. Se il pagamento non c'è stato, l'importo va regolato con un rimborso "
                "o una nuova posizione.")
    if payment.position.status not in (PositionStatus.PAID, PositionStatus.PARTIALLY_PAID):
        return f"La posizione è «{LABELS[payment.position.status].lower()}»: il pagamento non si può più annullare."
    return None


def reverse(session: Session, payment_id: int, *, reason: str, actor: str,
            actor_user_id: int | None = None) -> OfflinePayment:
    """Undo a payment recorded by mistake, while pagoPA has not been told of it.

    :raise ValueError: without a reason (the message in Italian).
    :raise OfflinePaymentRefused: once pagoPA was told (or the sync is telling it right now: this waits for it),
        when it was reversed already, when the position moved on (reported, in litigation), or when a pagoPA
        receipt also arrived for the option.
    :raise LookupError: for an unknown payment.
    """
    reason = " ".join((reason or "").split())
    if not reason:
        raise ValueError("Indicare il motivo dell'annullamento del pagamento.")
    position_id = session.scalar(sa.select(OfflinePayment.position_id).where(OfflinePayment.id == payment_id))
    if position_id is None:
        raise LookupError(f"offline payment {payment_id} not found")
    # The position first (the sync holds it while it tells GPD), then the payment as it is now.
    position, options = lock_position(session, position_id)
    payment = session.scalar(sa.select(OfflinePayment).where(OfflinePayment.id == payment_id)
                             .with_for_update().execution_options(populate_existing=True))
    refusal = reversal_refusal(payment)
    if refusal:
        raise OfflinePaymentRefused(refusal)
    if session.scalar(sa.select(Receipt.id).where(Receipt.option_id == payment.option_id).limit(1)) is not None:
        raise OfflinePaymentRefused("Per questo avviso è arrivata anche una ricevuta pagoPA: il pagamento non si "
                                    "annulla qui, va risolta l'anomalia della ricevuta.")
    option = next(o for o in options if o.id == payment.option_id)
    option.status = OptionStatus.UNPAID
    option.paid_at = None
    mode_still_paid = any(o.status == OptionStatus.PAID for o in options if o.kind == option.kind)
    if not mode_still_paid:
        for other in options:
            if other.id in (payment.cancelled_option_ids or []) and other.status == OptionStatus.CANCELLED:
                other.status = OptionStatus.UNPAID
    position.paid_cents = Position.paid_cents - payment.amount_cents
    previous = position.status
    target = _status_after_reversal(PositionStatus(payment.previous_status), options)
    check_reversal(previous, target)
    position.status = target
    if target != PositionStatus.PAID:
        position.paid_at = None
    unpaid = [o for o in options if o.status == OptionStatus.UNPAID]
    if unpaid:
        position.due_date = min(o.due_date for o in unpaid)
    now = utcnow()
    payment.reversed_at = now
    payment.reversed_by = actor
    payment.reversed_by_id = actor_user_id
    payment.reversal_reason = reason[:REASON_MAX]
    session.flush()
    position.pagopa_paid_pending = _awaiting_pagopa(session, position.id).first() is not None
    record_event(session, position, REVERSED_EVENT, actor=actor, actor_user_id=actor_user_id, at=now,
                 reason=payment.reversal_reason, previous=previous.value, position_status=target.value,
                 payment_channel=payment.channel, reference=payment.reference, amount_cents=payment.amount_cents,
                 payment_date=payment.paid_on.isoformat(), notice_number=option.notice_number,
                 offline_payment_id=payment.id)
    sync_state.request_sync(session, position, actor_user_id=actor_user_id)
    session.flush()
    log.info("position %s: payment outside pagoPA %s reversed by %s", position.iupd, payment.id, actor)
    return payment


def _status_after_reversal(before: PositionStatus, options: list[PaymentOption]) -> PositionStatus:
    """Partly paid while other money stays recorded (or the status before, if it can hold it); else the open
    status the position had (published when that one was itself a payment's)."""
    if any(o.status == OptionStatus.PAID for o in options):
        return before if before in (PositionStatus.PARTIALLY_PAID, PositionStatus.EXPIRED,
                                    PositionStatus.REMINDED) else PositionStatus.PARTIALLY_PAID
    return before if before in (PositionStatus.PUBLISHED, PositionStatus.EXPIRED,
                                PositionStatus.REMINDED) else PositionStatus.PUBLISHED


# --- pagoPA ------------------------------------------------------------------------------------------------------


def _awaiting_pagopa(session: Session, position_id: int):
    return session.scalars(sa.select(OfflinePayment).where(
        OfflinePayment.position_id == position_id, OfflinePayment.reversed_at.is_(None),
        OfflinePayment.pagopa_notified_at.is_(None)).order_by(OfflinePayment.id))


def awaiting_pagopa(session: Session, position_id: int) -> list[OfflinePayment]:
    """The position's payments outside pagoPA that GPD has not confirmed yet, oldest first."""
    return list(_awaiting_pagopa(session, position_id))


def confirm_told(session: Session, position: Position, option_ids: set[int], *, now: datetime | None = None) -> None:
    """GPD confirmed these options paid: their payments outside pagoPA can no longer be reversed.

    Called by the sync (the position locked) after ``paymentoptions/paids`` or a GET that shows them paid; once
    every such payment of the position is confirmed, nothing more is pending for it.
    """
    now = now or utcnow()
    waiting = awaiting_pagopa(session, position.id)
    for payment in waiting:
        if payment.option_id in option_ids:
            payment.pagopa_notified_at = now
            record_event(session, position, TOLD_EVENT, actor="system", at=now, payment_channel=payment.channel,
                         reference=payment.reference, notice_number=payment.option.notice_number,
                         offline_payment_id=payment.id)
    position.pagopa_paid_pending = any(p.pagopa_notified_at is None for p in waiting)


# --- Reading -------------------------------------------------------------------------------------------------------


def of_position(session: Session, position_id: int) -> list[OfflinePayment]:
    """Every payment outside pagoPA of a position (reversed ones too), oldest first."""
    return list(session.scalars(sa.select(OfflinePayment).where(OfflinePayment.position_id == position_id)
                                .order_by(OfflinePayment.id)))


def get(session: Session, creditor_id: int, payment_id: int) -> OfflinePayment | None:
    """One payment of the creditor, or ``None``."""
    return session.scalar(sa.select(OfflinePayment).where(OfflinePayment.id == payment_id,
                                                          OfflinePayment.creditor_id == creditor_id))


def active_option_ids(session: Session, option_ids: list[int]) -> set[int]:
    """Of these options, those paid outside pagoPA (an active payment): no reporting flow will ever cover them."""
    if not option_ids:
        return set()
    return set(session.scalars(sa.select(OfflinePayment.option_id).where(
        OfflinePayment.option_id.in_(option_ids), OfflinePayment.reversed_at.is_(None))))


# --- Anomalies (an amount different from the option's) -------------------------------------------------------------


def _flagged(creditor_id: int, scope: frozenset[int] | None) -> list:
    conditions = [OfflinePayment.creditor_id == creditor_id, OfflinePayment.flag.is_not(None),
                  OfflinePayment.reversed_at.is_(None)]
    if scope is not None:
        conditions.append(OfflinePayment.position_id.in_(
            sa.select(Position.id).where(Position.service_id.in_(scope or {-1}))))
    return conditions


def list_flagged(session: Session, creditor_id: int, *, scope: frozenset[int] | None = None,
                 include_resolved: bool = False, limit: int = 200) -> list[OfflinePayment]:
    """Flagged payments (not reversed), newest first; ``scope``: the services the officer sees (``None``: all)."""
    conditions = _flagged(creditor_id, scope)
    if not include_resolved:
        conditions.append(OfflinePayment.resolved_at.is_(None))
    return list(session.scalars(sa.select(OfflinePayment).where(*conditions)
                                .order_by(OfflinePayment.recorded_at.desc(), OfflinePayment.id.desc()).limit(limit)))


def get_flagged(session: Session, creditor_id: int, payment_id: int,
                scope: frozenset[int] | None) -> OfflinePayment | None:
    """One flagged payment the officer may see, or ``None``."""
    return session.scalar(sa.select(OfflinePayment).where(OfflinePayment.id == payment_id,
                                                          *_flagged(creditor_id, scope)))


def count_open_flagged(session: Session, creditor_id: int, scope: frozenset[int] | None = None) -> int:
    """Flagged payments nobody resolved yet."""
    return session.scalar(sa.select(sa.func.count()).select_from(OfflinePayment).where(
        *_flagged(creditor_id, scope), OfflinePayment.resolved_at.is_(None))) or 0


def resolve(session: Session, payment: OfflinePayment, *, note: str, actor: str, actor_user_id: int | None) -> None:
    """Mark a flagged payment as checked, with what was done (the money is not changed).

    :raise AnomalyError: without a note, or when it was resolved already.
    """
    mark_resolved(payment, note, actor_user_id, example="differenza incassata, rimborso, …")
    record_event(session, payment.position, RESOLVED_EVENT, actor=actor, actor_user_id=actor_user_id,
                 flag=payment.flag, offline_payment_id=payment.id, note=payment.resolution_note)
    session.flush()
