"""Operations on the ledger. Plain Python: they take the session and the actor, flush, and never commit.

The caller (a request or a job) owns the transaction and commits once.
"""

import logging
import os
import uuid
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.ledger import allocation, sync_state
from portal.ledger.errors import FieldError, ValidationFailed
from portal.ledger.inputs import DebtorInput, OptionInput, PositionInput, validate_position
from portal.ledger.models import Creditor, Debtor, Event, PaymentOption, Position, Service, Transfer
from portal.ledger.status import OptionStatus, PositionStatus, check_transition
from portal.ledger.types import utcnow

log = logging.getLogger(__name__)

#: Which lifecycle column a status sets when a position enters it.
STATUS_TIMESTAMPS = {
    PositionStatus.PUBLISHED: "published_at",
    PositionStatus.PAID: "paid_at",
    PositionStatus.REPORTED: "reported_at",
    PositionStatus.CANCELLED: "cancelled_at",
}


def record_event(session: Session, position: Position, kind: str, *, actor: str, actor_user_id: int | None = None,
                 at: datetime | None = None, **details) -> Event:
    """Append one entry to a position's timeline."""
    event = Event(position=position, kind=kind, actor=actor, actor_user_id=actor_user_id, at=at or utcnow(),
                  details=details)
    session.add(event)
    return event


def transition(session: Session, position: Position, target: PositionStatus, *, actor: str,
               actor_user_id: int | None = None, at: datetime | None = None, **details) -> Event:
    """Move a position to ``target`` through the transition table, stamp its lifecycle column, log it.

    :raise InvalidTransition: if the table does not allow it.
    :raise IgnoredTransition: if it is already there.
    """
    previous = position.status
    check_transition(previous, target)
    at = at or utcnow()
    position.status = target
    column = STATUS_TIMESTAMPS.get(target)
    if column and getattr(position, column) is None:
        setattr(position, column, at)
    event = record_event(session, position, target.value, actor=actor, actor_user_id=actor_user_id, at=at,
                         previous=previous.value, **details)
    log.info("position %s: %s → %s by %s", position.iupd, previous.value, target.value, actor)
    return event


def find_by_external_id(session: Session, creditor_id: int, source: str, external_id: str) -> Position | None:
    """The position a feeding system already sent with this id, if any (idempotency)."""
    return session.scalar(
        sa.select(Position).where(
            Position.creditor_id == creditor_id, Position.source == source, Position.external_id == external_id
        )
    )


#: Contact fields of a debtor, refreshed only when given.
_CONTACT_FIELDS = ("street", "civic_number", "postal_code", "city", "province", "email", "pec", "phone")


def upsert_debtor(session: Session, creditor: Creditor, data: DebtorInput, *,
                  visible_service_ids: set[int] | None = None) -> Debtor:
    """Find the shared debtor by fiscal code and refresh the contact data given, or create it.

    Only an actor who sees every service the debtor has positions in changes it (``visible_service_ids``: the
    services the actor sees, ``None`` for all). For anyone else, data that differs is kept on a new version of the
    debtor (see :class:`Debtor`), returned for the new position alone; the shared row stays as it was.
    """
    query = sa.select(Debtor).where(Debtor.creditor_id == creditor.id, Debtor.fiscal_code == data.fiscal_code,
                                    Debtor.version_of_id.is_(None))
    if visible_service_ids is None:
        debtor, shared_outside = session.scalar(query), False
    else:
        # Whether it is used outside the actor's services comes with the row (one round trip).
        found = session.execute(query.add_columns(_positions_outside(visible_service_ids).exists())).first()
        debtor, shared_outside = found if found is not None else (None, False)
    if debtor is None:
        debtor = Debtor(creditor_id=creditor.id, fiscal_code=data.fiscal_code)
        session.add(debtor)
    elif shared_outside:
        typed = _typed_debtor(data)
        if all((getattr(debtor, name) or None) == value for name, value in typed.items()):
            return debtor
        # Exactly what was typed, nothing of the shared row: the actor may not see its other data either.
        version = Debtor(creditor_id=creditor.id, fiscal_code=data.fiscal_code, version_of=debtor, **typed)
        session.add(version)
        return version
    debtor.kind = data.kind
    debtor.name = data.name
    for name in _CONTACT_FIELDS:
        value = getattr(data, name)
        if value:
            setattr(debtor, name, value.strip() if isinstance(value, str) else value)
    debtor.country = data.country or "IT"
    return debtor


def _typed_debtor(data: DebtorInput) -> dict:
    """The debtor's fields as typed (blank ones ``None``), in the shape of a :class:`Debtor` row."""
    typed = {"kind": data.kind, "name": data.name, "country": data.country or "IT"}
    for name in _CONTACT_FIELDS:
        value = getattr(data, name)
        typed[name] = (value.strip() if isinstance(value, str) else value) or None
    return typed


def _positions_outside(service_ids: set[int]) -> sa.Select:
    """The positions of the debtor being read in a service not in ``service_ids`` (correlated with the query)."""
    query = sa.select(Position.id).where(Position.debtor_id == Debtor.id)
    if service_ids:
        query = query.where(Position.service_id.not_in(sorted(service_ids)))
    return query


def new_iupd(creditor: Creditor) -> str:
    """A position id unique across pagoPA: the creditor's fiscal code and a random UUID."""
    return f"{creditor.fiscal_code}-{uuid.uuid4().hex}"


def new_iupds(creditor: Creditor, count: int) -> list[str]:
    """``count`` ids as :func:`new_iupd` makes them (random version-4 UUIDs), from one read of the system's random
    source instead of one per id (bulk writes)."""
    prefix = f"{creditor.fiscal_code}-"
    random = os.urandom(16 * count)
    return [f"{prefix}{uuid.UUID(bytes=random[start:start + 16], version=4).hex}"
            for start in range(0, 16 * count, 16)]


def create_position(session: Session, creditor: Creditor, data: PositionInput, *, actor: str,
                    actor_user_id: int | None = None, today: date | None = None,
                    created_at: datetime | None = None, enqueue_sync: bool = True,
                    visible_service_ids: set[int] | None = None, flush: bool = True) -> tuple[Position, bool]:
    """Validate and store a new position with its options, numbers and transfers.

    Idempotent on ``(source, external_id)``: a repeated request returns the position already stored.

    The position starts as a draft that must reach pagoPA (``pagopa_target='published'``) unless its service
    keeps new positions as drafts (``draft_first``). A sync job is enqueued for after the commit (it publishes
    it and moves it to "published" within seconds); bulk feeders pass ``enqueue_sync=False`` and let the
    periodic sweep publish their positions in GPD bulk calls.

    ``flush=False`` (with ``enqueue_sync=False``): the caller's next flush writes the position, together with what
    it adds itself (one flush instead of two); ids are unset until then.

    ``visible_service_ids`` are the services the actor sees (``None``: all): the shared debtor data is changed only
    by an actor who sees every service it is used in; otherwise the position gets a version of its own
    (``position.debtor.version_of_id`` is set: tell the officer).

    :return: the position, and whether it was created now.
    :raise ValidationFailed: with every problem found; nothing is stored.
    """
    if enqueue_sync and not flush:
        raise ValueError("a sync job needs the position flushed")
    service = session.get(Service, data.service_id)
    if service is None or service.creditor_id != creditor.id:
        raise ValidationFailed([FieldError("service_id", "Servizio sconosciuto.")])
    if data.external_id:
        existing = find_by_external_id(session, creditor.id, data.source, data.external_id.strip())
        if existing is not None:
            return existing, False
    if not service.active:
        raise ValidationFailed([FieldError("service_id", "Il servizio non è attivo.")])
    validate_position(
        data,
        today=today or date.today(),
        creditor_fiscal_code=creditor.fiscal_code,
        default_iban=service.account.iban,
        default_taxonomy=service.taxonomy_code,
    )
    options: list[tuple[str, int | None, OptionInput]] = []
    if data.single:
        options.append(("single", None, data.single))
    options += [("installment", n, o) for n, o in enumerate(data.installments, start=1)]
    numbers = allocation.allocate(session, creditor, len(options))
    debtor = upsert_debtor(session, creditor, data.debtor, visible_service_ids=visible_service_ids)
    created_at = created_at or utcnow()
    position = Position(
        creditor_id=creditor.id,
        service=service,
        debtor=debtor,
        iupd=new_iupd(creditor),
        source=data.source,
        external_id=data.external_id,
        subject=data.subject,
        status=PositionStatus.DRAFT,
        amount_cents=data.single.amount_cents if data.single else sum(o.amount_cents for o in data.installments),
        paid_cents=0,
        due_date=min(o.due_date for _, _, o in options),
        created_by_id=actor_user_id,
        created_at=created_at,
        updated_at=created_at,
        # What pagoPA should have: the sync sweep looks only at pending rows.
        **sync_state.initial_state(publish=not service.draft_first),
    )
    session.add(position)
    for (kind, number, option), allocated in zip(options, numbers, strict=True):
        payment_option = PaymentOption(
            position=position,
            creditor_id=creditor.id,
            kind=kind,
            installment_number=number,
            iuv=allocated.iuv,
            notice_number=allocated.nav,
            amount_cents=option.amount_cents,
            due_date=option.due_date,
            description=option.description or _option_description(data.subject, number, len(data.installments)),
            status=OptionStatus.UNPAID,
        )
        session.add(payment_option)
        for index, transfer in enumerate(option.transfers, start=1):
            session.add(Transfer(
                option=payment_option,
                index=index,
                amount_cents=transfer.amount_cents,
                beneficiary_fiscal_code=transfer.beneficiary_fiscal_code,
                beneficiary_name=transfer.beneficiary_name or (
                    creditor.name if transfer.beneficiary_fiscal_code == creditor.fiscal_code else ""
                ),
                iban=transfer.iban,
                taxonomy_code=transfer.taxonomy_code,
                remittance=transfer.remittance or data.subject,
            ))
    record_event(session, position, "created", actor=actor, actor_user_id=actor_user_id, at=created_at,
                 source=data.source, external_id=data.external_id, amount_cents=position.amount_cents,
                 notice_numbers=[n.nav for n in numbers])
    if flush:
        session.flush()
        if position.sync_pending and enqueue_sync:
            sync_state.schedule_sync(session, position, actor_user_id=actor_user_id)
    log.info("position %s created by %s (%d options)", position.iupd, actor, len(options))
    return position, True


def _option_description(subject: str, number: int | None, total: int) -> str:
    if number is None:
        return subject[:140]
    suffix = f" - rata {number} di {total}"
    return subject[: 140 - len(suffix)] + suffix


def cancel_position(session: Session, position: Position, *, reason: str, actor: str,
                    actor_user_id: int | None = None) -> Event:
    """Cancel a credit (sgravio, error, duplicate): no longer payable here nor on pagoPA.

    Its unpaid options are cancelled and pagoPA is asked to invalidate the position (the sync job does it, or
    does nothing if pagoPA never had it). A receipt arriving later is still recorded, and flagged.

    :raise InvalidTransition: if the position is paid, partly paid or already closed.
    :raise ValueError: without a reason.
    """
    reason = " ".join((reason or "").split())
    if not reason:
        raise ValueError("Indicare il motivo dell'annullamento.")
    event = transition(session, position, PositionStatus.CANCELLED, actor=actor, actor_user_id=actor_user_id,
                       reason=reason[:500])
    for option in position.options:
        if option.status == OptionStatus.UNPAID:
            option.status = OptionStatus.CANCELLED
    if position.pagopa_target != "absent":
        sync_state.request_sync(session, position, target="invalid", actor_user_id=actor_user_id)
    return event
