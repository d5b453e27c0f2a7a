"""Receipts applied to the ledger: a payment that pagoPA confirms becomes a paid option, once and only once.

Plain Python like :mod:`portal.ledger.services`: it takes the session, flushes, and never commits. The SOAP
endpoint (paSendRT/paSendRTV2) and the receipts-API poller both call :func:`record_receipt`.

Idempotency lives in the schema: a receipt is unique by ``receipt_id`` and by ``(creditor_id, iuv)``. The receipt
is inserted with ``ON CONFLICT DO NOTHING`` before the ledger is touched: a repeated receipt, or the copy that loses
a race with a concurrent one (the unique index makes it wait for the other transaction), inserts nothing and
answers "duplicate", so the ledger is changed once.
"""

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache

import sqlalchemy as sa
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from portal.ledger.locks import take_write_lock
from portal.ledger.models import Creditor, PaymentOption, Position, Receipt
from portal.ledger.services import record_event, transition
from portal.ledger.status import LedgerError, OptionStatus, PositionStatus
from portal.ledger.types import utcnow

log = logging.getLogger(__name__)

#: The actor written on the timeline for what pagoPA tells us.
ACTOR = "pagopa"

#: Why a stored receipt needs an officer (``Receipt.flag``).
FLAG_CANCELLED_POSITION = "cancelled_position"
FLAG_ALREADY_PAID = "already_paid"
FLAG_AMOUNT_MISMATCH = "amount_mismatch"
FLAG_UNKNOWN_IUV = "unknown_iuv"
#: The position is in a status the transition table does not let a payment leave (a draft).

#: Receipt sources (``Receipt.source``).
SOURCES = frozenset({"paSendRT", "paSendRTV2", "receipts-api"})

_RECEIPT_ID_MAX = Receipt.__table__.c.receipt_id.type.length


class ReceiptRejected(LedgerError):
    """The receipt cannot be stored at all (not a successful payment, or an identifier we cannot keep)."""


@dataclass(frozen=True)
class ReceiptTransfer:
    """One transfer (1..5) of a receipt: how much of the payment goes to which beneficiary."""

    index: int
    amount_cents: int
    fiscal_code: str
    iban: str | None = None
    remittance: str = ""
    category: str = ""
    company_name: str | None = None


@dataclass
class ReceiptData:
    """A pagoPA receipt (``ctReceipt``/``ctReceiptV2``) in our terms: cents, aware datetimes, plain strings."""

    receipt_id: str
    notice_number: str
    iuv: str
    #: ``fiscalCode``: the creditor the notice belongs to.
    org_fiscal_code: str
    outcome: str
    amount_cents: int
    description: str = ""
    company_name: str = ""
    office_name: str | None = None
    fee_cents: int | None = None
    psp_id: str | None = None
    psp_name: str | None = None
    psp_fiscal_code: str | None = None
    channel_id: str | None = None
    channel_description: str | None = None
    payment_method: str | None = None
    payment_note: str | None = None
    #: ``paymentDateTime`` (timezone-aware; the node's local time when it sends none).
    payment_at: datetime | None = None
    application_date: date | None = None
    transfer_date: date | None = None
    debtor_type: str | None = None
    debtor_fiscal_code: str | None = None
    debtor_name: str | None = None
    payer_type: str | None = None
    payer_fiscal_code: str | None = None
    payer_name: str | None = None
    stand_in: bool = False
    transfers: tuple[ReceiptTransfer, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class CreditorRef:
    """What receipts need of a creditor: its id, its fiscal code, and the pagoPA ids a caller must present.

    A plain value (no session): the SOAP endpoint caches it per process (see :mod:`portal.pagopa.node`).
    """

    id: int
    fiscal_code: str
    broker_id: str | None = None
    station_id: str | None = None

    @classmethod
    def of(cls, creditor: Creditor) -> "CreditorRef":
        return cls(id=creditor.id, fiscal_code=creditor.fiscal_code, broker_id=creditor.broker_id,
                   station_id=creditor.station_id)


@dataclass(frozen=True)
class RecordOutcome:
    """What :func:`record_receipt` did: the stored receipt, whether it was already there, and its flag."""

    receipt: Receipt
    duplicate: bool
    flag: str | None


def find_receipt(session: Session, creditor_id: int, receipt_id: str, iuv: str) -> Receipt | None:
    """The stored receipt with this receipt id, or for this creditor's IUV, if any."""
    return session.scalars(
        sa.select(Receipt)
        .where(sa.or_(Receipt.receipt_id == receipt_id,
                      sa.and_(Receipt.creditor_id == creditor_id, Receipt.iuv == iuv)))
        .order_by(Receipt.id)
        .limit(1)
    ).first()


def record_receipt(session: Session, creditor: Creditor | CreditorRef, data: ReceiptData, *, source: str, raw_xml: str,
                   actor: str = ACTOR) -> RecordOutcome:
    """Store a receipt and apply it to the ledger, once.

    A receipt already stored (same receipt id, or same creditor and IUV) changes nothing: the outcome says
    ``duplicate``: nothing is written (its position was locked first, until the caller's transaction ends).
    Otherwise the receipt row is inserted with the raw XML and, when it pays an unpaid option of a
    payable position, the option becomes paid and the position moves on (see :func:`apply_payment`). A receipt
    that cannot be applied (cancelled position, option already paid, unknown IUV, ...) is stored with a flag and
    an ``receipt_flagged`` event on the position: money arrived, an officer must refund or offset it.

    Safe under concurrency: the position and its options are locked (``SELECT ... FOR UPDATE``, one statement)
    before they are read, and the receipt is inserted with ``ON CONFLICT DO NOTHING``, so the copy that loses the
    race on the unique indexes inserts nothing and reports a duplicate. Statements for a new receipt: the lock, the
    INSERT, then one flush (position, options, events).

    :param creditor: the creditor the notice belongs to (the receipt's ``fiscalCode``); only its ``id`` and
        ``fiscal_code`` are used, so a :class:`CreditorRef` will do.
    :param source: ``paSendRT``, ``paSendRTV2`` or ``receipts-api``.
    :raise ReceiptRejected: for a KO receipt or a receipt id longer than we can store; nothing is written.
    """
    _check(data, source)
    position, option, options = _lock_option(session, creditor, data)
    flag = _flag(position, option, options, data)
    values = {
        "creditor_id": creditor.id,
        "position_id": position.id if position else None,
        "option_id": option.id if option else None,
        "receipt_id": data.receipt_id,
        "iuv": data.iuv,
        "notice_number": data.notice_number,
        "outcome": data.outcome,
        "amount_cents": data.amount_cents,
        "fee_cents": data.fee_cents,
        "psp_id": data.psp_id,
        "psp_name": data.psp_name,
        "channel_id": data.channel_id,
        "payment_method": data.payment_method,
        "payment_at": data.payment_at,
        "application_date": data.application_date,
        "transfer_date": data.transfer_date,
        "debtor_fiscal_code": data.debtor_fiscal_code,
        "payer_fiscal_code": data.payer_fiscal_code,
        "stand_in": data.stand_in,
        "source": source,
        "raw_xml": raw_xml,
        "flag": flag,
        "received_at": utcnow(),
    }
    # The INSERT goes before anything in the ledger is touched, and a copy already stored (or being stored by a
    # concurrent transaction, which the unique indexes make us wait for) is skipped by ON CONFLICT DO NOTHING:
    # no row comes back, and this receipt is a duplicate. One statement, no savepoint, no preliminary SELECT.
    receipt = _insert_receipt(session, values)
    if receipt is None:
        existing = find_receipt(session, creditor.id, data.receipt_id, data.iuv)
        if existing is None:
            raise LedgerError(f"receipt {data.receipt_id} refused by the database but not found")
        log.debug("receipt %s (iuv %s) already stored as %s: duplicate", data.receipt_id, data.iuv,
                  existing.receipt_id)
        return RecordOutcome(existing, duplicate=True, flag=existing.flag)

    details = _details(data, source)
    if option is not None and flag in (None, FLAG_AMOUNT_MISMATCH):
        apply_payment(session, position, option, options, amount_cents=data.amount_cents,
                      paid_at=data.payment_at or utcnow(), actor=actor, details=details)
    if flag is not None and position is not None:
        record_event(session, position, "receipt_flagged", actor=actor, flag=flag,
                     option_amount_cents=option.amount_cents if option else None,
                     position_status=position.status.value, **details)
    # The one flush of the ledger changes (position, options, events).
    session.flush()
    log.debug("receipt %s stored: iuv %s, %s cents, position %s, flag %s", data.receipt_id, data.iuv,
              data.amount_cents, position.iupd if position else "-", flag or "-")
    return RecordOutcome(receipt, duplicate=False, flag=flag)


def _insert_receipt(session: Session, values: dict) -> Receipt | None:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING id``: the new receipt, or ``None`` when a copy is stored.

    Written as text with typed parameters (PostgreSQL and SQLite share the syntax) because SQLAlchemy does not
    cache the compiled form of its dialect ``on_conflict_do_nothing()`` constructs; this one compiles once. The
    row is then put in the session as a persistent :class:`Receipt` holding exactly the values written, without
    a SELECT.
    """
    receipt_pk = session.execute(_insert_receipt_statement(tuple(values)), values).scalar_one_or_none()
    if receipt_pk is None:
        return None
    receipt = Receipt(id=receipt_pk, **values)
    make_transient_to_detached(receipt)
    session.add(receipt)
    return receipt


@cache
def _insert_receipt_statement(names: tuple[str, ...]) -> sa.TextClause:
    table = Receipt.__table__
    columns = ", ".join(table.c[name].name for name in names)
    params = ", ".join(f":{name}" for name in names)
    # Names from our own table definition, values as bound parameters: nothing from outside is in the text.
    sql = f"INSERT INTO {table.name} ({columns}) VALUES ({params}) ON CONFLICT DO NOTHING RETURNING id"  # noqa: S608
    return (
        sa.text(sql)
        .bindparams(*(sa.bindparam(name, type_=table.c[name].type) for name in names))
        .columns(table.c.id)
    )


def _check(data: ReceiptData, source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown receipt source {source!r}")
    if data.outcome != "OK":
        # pagoPA sends receipts only for successful payments; a KO one must not occupy the IUV's slot.
        raise ReceiptRejected(f"receipt {data.receipt_id} has outcome {data.outcome}: not a payment")
    if not data.receipt_id or len(data.receipt_id) > _RECEIPT_ID_MAX:
        raise ReceiptRejected(f"receipt id must be 1..{_RECEIPT_ID_MAX} characters")
    if data.amount_cents < 0:
        raise ReceiptRejected("negative receipt amount")
    if data.payment_at is not None and data.payment_at.tzinfo is None:
        raise ValueError("payment_at must be timezone-aware")


def _lock_option(session: Session, creditor: Creditor | CreditorRef, data: ReceiptData
                 ) -> tuple[Position | None, PaymentOption | None, list[PaymentOption]]:
    """Find the option the receipt pays, then lock its position and all the position's options, in that order.

    Every receipt locks the position row first, so two receipts for installments of one position queue up
    instead of deadlocking or overwriting each other's ``paid_cents``. SQLite ignores ``FOR UPDATE``: there the
    transaction takes the database's write lock before reading (:func:`~portal.ledger.locks.take_write_lock`).
    """
    take_write_lock(session)
    if data.org_fiscal_code != creditor.fiscal_code:
        # A notice of another creditor (we are a secondary beneficiary): none of our options is paid by it.
        return None, None, []
    # One round-trip: the position of the option with this IUV joined to all its options, locked. PostgreSQL locks
    # each row's tables in the order of FOR UPDATE OF (the position, then the option), and every row carries the
    # position, so the position is always locked first; the options follow in id order (the locking happens
    # above the sort). A row changed by a transaction we waited for is re-read at its newest version, and
    # populate_existing puts that version in the session even if an older one was loaded earlier.
    rows = session.execute(_lock_statement(), {"creditor_id": creditor.id, "iuv": data.iuv}).all()
    if not rows:
        return None, None, []
    position = rows[0][0]
    options = [row[1] for row in rows]
    # The lock read all the options, in the collection's order: whoever reads position.options next (the webhook
    # body) needs no SELECT of its own.
    set_committed_value(position, "options", options)
    option = next(o for o in options if o.iuv == data.iuv)
    return position, option, options


@cache
def _lock_statement() -> sa.Select:
    """The statement of :func:`_lock_option`, built once: building it anew cost about a tenth of a receipt's CPU."""
    target = (sa.select(PaymentOption.position_id)
              .where(PaymentOption.creditor_id == sa.bindparam("creditor_id"),
                     PaymentOption.iuv == sa.bindparam("iuv"))
              .scalar_subquery())
    return (
        sa.select(Position, PaymentOption)
        .join(PaymentOption, PaymentOption.position_id == Position.id)
        .where(Position.id == target)
        .order_by(PaymentOption.id)
        .with_for_update(of=[Position, PaymentOption])
        .execution_options(populate_existing=True)
    )


def _flag(position: Position | None, option: PaymentOption | None, options: list[PaymentOption],
          data: ReceiptData) -> str | None:
    """Why this receipt cannot simply pay its option (``None`` when it can)."""
    if option is None or position is None:
        return FLAG_UNKNOWN_IUV
    if position.status in (PositionStatus.CANCELLED, PositionStatus.IN_LITIGATION):
        return FLAG_CANCELLED_POSITION
    # The two payment modes are mutually exclusive once one of them has been paid.
    other_mode_paid = any(o.status == OptionStatus.PAID for o in options if o.kind != option.kind)
    if option.status == OptionStatus.CANCELLED and not other_mode_paid:
        return FLAG_CANCELLED_POSITION  # an installment dropped by an edit or abated in full
    if option.status != OptionStatus.UNPAID or position.status in (PositionStatus.PAID, PositionStatus.REPORTED):
        return FLAG_ALREADY_PAID
    if other_mode_paid:
        return FLAG_ALREADY_PAID
    if data.amount_cents != option.amount_cents:
        # The money arrived for this notice: it is paid, and an officer checks the difference.
        return FLAG_AMOUNT_MISMATCH
    return None


def _details(data: ReceiptData, source: str) -> dict:
    return {
        "receipt_id": data.receipt_id,
        "iuv": data.iuv,
        "notice_number": data.notice_number,
        "amount_cents": data.amount_cents,
        "fee_cents": data.fee_cents,
        "psp_id": data.psp_id,
        "psp_name": data.psp_name,
        "payment_method": data.payment_method,
        "payment_at": data.payment_at.isoformat() if data.payment_at else None,
        "stand_in": data.stand_in,
        "source": source,
    }


def apply_payment(session: Session, position: Position, option: PaymentOption, options: list[PaymentOption], *,
                  amount_cents: int, paid_at: datetime, actor: str, details: dict,
                  actor_user_id: int | None = None) -> list[PaymentOption]:
    """Mark the option paid and move the position: PAID, or PARTIALLY_PAID while something is still owed.

    Paying the single option cancels the unpaid installments; paying an installment cancels the single option.
    ``paid_cents`` grows by the amount in SQL (``paid_cents = paid_cents + amount``). When the
    chosen payment mode is settled but less money arrived than it asked (an amount mismatch), the position stays
    PARTIALLY_PAID: what is missing is still owed. The position's due date becomes the earliest due date among the
    options still unpaid. Receipts and payments outside pagoPA (:mod:`portal.ledger.offline_payments`) both pay
    through here; the position and ``options`` (all of the position's) must be locked by the caller.

    :return: the options of the other payment mode this payment cancelled.
    """
    if position.status == PositionStatus.DRAFT:
        # pagoPA could take this payment only because it had the position: it was published, whatever we last
        # knew (a sync confirmation still on its way). Record that first, then the payment.
        transition(session, position, PositionStatus.PUBLISHED, actor=actor, reason="receipt")
    option.status = OptionStatus.PAID
    option.paid_at = paid_at
    # The row is locked (FOR UPDATE, or SQLite's write lock), so what was read is current; the database still does
    # the addition itself, so no update can ever be lost. Money recorded before (a payment at the counter, the
    # demo's history) stays counted.
    paid_total = (position.paid_cents or 0) + amount_cents
    position.paid_cents = Position.paid_cents + amount_cents
    cancelled = [o for o in options if o.kind != option.kind and o.status == OptionStatus.UNPAID]
    for other in cancelled:
        other.status = OptionStatus.CANCELLED
    mode = [o for o in options if o.kind == option.kind and o.status != OptionStatus.CANCELLED]
    settled = all(o.status == OptionStatus.PAID for o in mode)
    owed = sum(o.amount_cents for o in mode)
    target = PositionStatus.PAID if settled and paid_total >= owed else PositionStatus.PARTIALLY_PAID
    unpaid = [o for o in options if o.status == OptionStatus.UNPAID]
    if unpaid:
        position.due_date = min(o.due_date for o in unpaid)
    details = {**details, "option_kind": option.kind, "installment_number": option.installment_number}
    if target == PositionStatus.PAID and position.paid_at is None:
        # When the citizen paid, not when we heard of it (transition() keeps a timestamp already set).
        position.paid_at = paid_at
    if position.status == target:
        # Another installment of a plan already partly paid: no status change, but it belongs on the timeline.
        record_event(session, position, "installment_paid", actor=actor, actor_user_id=actor_user_id, **details)
    else:
        transition(session, position, target, actor=actor, actor_user_id=actor_user_id, **details)
    return cancelled
