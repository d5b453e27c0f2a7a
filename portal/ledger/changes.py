"""Changing a position after it was created: edit it while nothing is paid, abate (sgravio) what is still owed.

Both keep the position's identity (IUPD, and the IUV/NAV of every option that stays), record one event with every
field's value before and after, send a new version to pagoPA through the sync (:func:`sync_state.request_sync`)
and mark a printed notice as superseded (``notice_superseded_at``: the next bill run prints it again).

pagoPA's GPD refuses to update a position once an installment is paid (``PARTIALLY_PAID``), so an abatement of a
partly paid plan is recorded here only: pagoPA keeps asking the old amounts, and money arriving above what is now
owed is flagged as a receipt to refund (see :mod:`portal.ledger.payments`). The outcome says so.

The form, the REST API and the bulk import all change positions through :func:`update_position`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from portal.ledger import allocation, sync_state
from portal.ledger.errors import FieldError, ValidationFailed
from portal.ledger.inputs import DebtorInput, OptionInput, PositionInput, TransferInput, validate_position
from portal.ledger.locks import take_write_lock
from portal.ledger.models import Creditor, Event, PaymentOption, Position, Transfer
from portal.ledger.plans import split_by_ratio
from portal.ledger.services import (
    _CONTACT_FIELDS,
    _option_description,
    cancel_position,
    record_event,
    transition,
    upsert_debtor,
)
from portal.ledger.status import LedgerError, OptionStatus, PositionStatus
from portal.ledger.types import utcnow
from portal.money import format_euro

S = PositionStatus
#: Statuses in which a position's content may still be changed: nothing is paid and it is still owed.
EDITABLE = frozenset({S.DRAFT, S.PUBLISHED, S.EXPIRED, S.REMINDED})
#: Statuses in which what is still owed may be reduced.
ABATABLE = EDITABLE | {S.PARTIALLY_PAID}
REASON_MAX = 500
UPDATED_EVENT = "updated"
ABATED_EVENT = "abated"


class ChangeRefused(LedgerError):
    """The position cannot be changed in its state; the message says why, in Italian."""


@dataclass(frozen=True)
class Change:
    """One field's value before and after (``None``: the field did not exist, e.g. an installment added)."""

    field: str
    before: object
    after: object

    def as_list(self) -> list:
        return [self.field, self.before, self.after]


@dataclass(frozen=True)
class ChangeOutcome:
    """What a change did."""

    position: Position
    changes: list[Change] = field(default_factory=list)
    event: Event | None = None
    #: A new version goes to pagoPA (after the commit).
    pagopa_update: bool = False
    #: pagoPA could not be told (a partly paid position): its copy keeps the old amounts.
    pagopa_not_updatable: bool = False
    #: The printed notice no longer matches the position.
    notice_superseded: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def lock(session: Session, position: Position) -> Position:
    """Lock the position and re-read it with its options, as the receipts do (a payment may be arriving)."""
    take_write_lock(session)
    session.execute(
        sa.select(Position.id).where(Position.id == position.id).with_for_update()
    ).one()
    session.refresh(position)
    for option in position.options:
        session.refresh(option)
    return position


def edit_refusal(position: Position) -> str | None:
    """Why the position's content cannot be edited now (``None`` when it can), in Italian."""
    paid = position.paid_cents or any(o.status == OptionStatus.PAID for o in position.options)
    if paid and position.status in ABATABLE:
        return "La posizione ha già dei pagamenti: si può solo sgravare l'importo ancora dovuto."
    if paid or position.status not in EDITABLE:
        return "Una posizione pagata, rendicontata, annullata o in contenzioso non si può modificare."
    return None


def abatement_refusal(position: Position) -> str | None:
    """Why nothing can be abated now (``None`` when something can), in Italian."""
    if position.status not in ABATABLE:
        return "Lo sgravio è possibile solo per una posizione con importi ancora da pagare."
    if owed_cents(position) <= 0:
        return "Non resta nulla da pagare: non c'è nulla da sgravare."
    return None


def owed_cents(position: Position) -> int:
    """What is still owed: the single payment (or the plan's total) while nothing is paid, else the unpaid
    installments of the plan being paid."""
    unpaid = [o for o in position.options if o.status == OptionStatus.UNPAID]
    if not unpaid:
        return 0
    if any(o.status == OptionStatus.PAID for o in position.options):
        return sum(o.amount_cents for o in unpaid)
    single = [o for o in unpaid if o.kind == "single"]
    return single[0].amount_cents if single else sum(o.amount_cents for o in unpaid)


def position_input(position: Position) -> PositionInput:
    """The position's current content as an input record: what an edit form starts from."""
    debtor = position.debtor
    live = [o for o in position.options if o.status != OptionStatus.CANCELLED]

    count = sum(1 for o in live if o.kind == "installment")

    def option_input(option: PaymentOption) -> OptionInput:
        # Texts derived from the subject are left out, so they follow a new subject as on creation.
        derived = _option_description(position.subject, option.installment_number, count)
        return OptionInput(
            amount_cents=option.amount_cents, due_date=option.due_date,
            description=None if option.description == derived else option.description,
            transfers=[TransferInput(amount_cents=t.amount_cents, iban=t.iban, taxonomy_code=t.taxonomy_code,
                                     remittance=None if t.remittance == position.subject else t.remittance,
                                     beneficiary_fiscal_code=t.beneficiary_fiscal_code,
                                     beneficiary_name=t.beneficiary_name) for t in option.transfers],
        )

    single = next((o for o in live if o.kind == "single"), None)
    return PositionInput(
        service_id=position.service_id,
        debtor=DebtorInput(fiscal_code=debtor.fiscal_code, name=debtor.name, kind=debtor.kind,
                           country=debtor.country or "IT",
                           **{name: getattr(debtor, name) for name in _CONTACT_FIELDS}),
        subject=position.subject,
        single=option_input(single) if single else None,
        installments=[option_input(o) for o in sorted((o for o in live if o.kind == "installment"),
                                                        key=lambda o: o.installment_number)],
        external_id=position.external_id,
        source=position.source,
    )


def compare(position: Position, data: PositionInput, *, today: date | None = None) -> list[Change]:
    """What ``data`` would change in ``position``, validated as on creation; nothing is written.

    A repeated create with the same external id uses it: no change means the same request.

    :raise ValidationFailed: with every problem of ``data``.
    """
    service, creditor = position.service, position.service.creditor
    validate_position(data, today=today or date.today(), creditor_fiscal_code=creditor.fiscal_code,
                      default_iban=service.account.iban, default_taxonomy=service.taxonomy_code)
    changes = _diff(_snapshot_of_position(position, creditor), _snapshot_of_input(data, creditor))
    if data.service_id != position.service_id:
        changes.insert(0, Change("service_id", position.service_id, data.service_id))
    return changes


# --- Edit ----------------------------------------------------------------------------------------------------------


def update_position(session: Session, position: Position, data: PositionInput, *, actor: str,
                    actor_user_id: int | None = None, reason: str | None = None, today: date | None = None,
                    visible_service_ids: set[int] | None = None) -> ChangeOutcome:
    """Replace the content of a position nothing has been paid of with ``data`` (validated as on creation).

    Options are matched by kind and installment number: a matched option keeps its IUV and NAV (the notice number
    printed stays valid, with the new amount), a new one gets new numbers, one no longer in ``data`` is cancelled.
    The service, the source and the external id stay as they are. Nothing changes when ``data`` says what the
    position already holds (the outcome has no changes): repeating an update is harmless.

    :raise ChangeRefused: when something is paid or the position is closed.
    :raise ValidationFailed: with every problem of ``data``; nothing is changed.
    """
    lock(session, position)
    outcome = _update(session, position, data, actor=actor, actor_user_id=actor_user_id, reason=reason,
                      today=today or date.today(), now=utcnow(), visible_service_ids=visible_service_ids,
                      enqueue=True)
    session.flush()
    return outcome


def update_positions(session: Session, updates: list[tuple[Position, PositionInput]], *, actor: str,
                     actor_user_id: int | None = None, reason: str | None = None, today: date,
                     now: datetime | None = None, enqueue: bool = True) -> list[ChangeOutcome | LedgerError]:
    """:func:`update_position` for many positions at once (a batch's chunk), with one flush for all.

    The caller has locked the positions and read them with their options, transfers and debtors (as
    :func:`lock` does for one). Each gets what :func:`update_position` gives it (the same event, the same new
    version for pagoPA); the syncs are asked for together after the changes (``enqueue=False``: left to the
    sweep). A position that cannot be changed gets its error (:class:`ChangeRefused` or
    :class:`ValidationFailed`) in the result instead of an outcome, and stays as it was.
    """
    now = now or utcnow()
    results: list[ChangeOutcome | LedgerError] = []
    for position, data in updates:
        try:
            results.append(_update(session, position, data, actor=actor, actor_user_id=actor_user_id,
                                   reason=reason, today=today, now=now, enqueue=False))
        except (ChangeRefused, ValidationFailed) as exc:
            results.append(exc)
    changed = [r.position for r in results if isinstance(r, ChangeOutcome) and r.changed]
    if enqueue:
        sync_state.schedule_syncs(session, [p for p in changed if p.sync_pending], actor_user_id=actor_user_id,
                                  now=now)
    for position in changed:  # the same columns for all: one executemany instead of one UPDATE per variant
        for name in _BULK_COLUMNS:
            flag_modified(position, name)
    session.flush()
    return results


#: The position columns an update may change, written together by :func:`update_positions`.
_BULK_COLUMNS = ("subject", "debtor_id", "amount_cents", "due_date", "status", "published_at", "updated_at",
                 "notice_superseded_at", "pagopa_version", "sync_pending", "sync_attempts", "sync_next_at")


def _update(session: Session, position: Position, data: PositionInput, *, actor: str, actor_user_id: int | None,
            reason: str | None, today: date, now: datetime, visible_service_ids: set[int] | None = None,
            enqueue: bool) -> ChangeOutcome:
    """The change itself, on a locked and loaded position; nothing is flushed (see :func:`update_position`)."""
    refusal = edit_refusal(position)
    if refusal:
        raise ChangeRefused(refusal)
    if data.service_id != position.service_id:
        raise ValidationFailed([FieldError("service_id",
                                           "Il servizio di una posizione esistente non si può cambiare.")])
    service, creditor = position.service, position.service.creditor
    validate_position(data, today=today, creditor_fiscal_code=creditor.fiscal_code,
                      default_iban=service.account.iban, default_taxonomy=service.taxonomy_code)
    before = _snapshot_of_position(position, creditor)
    after = _snapshot_of_input(data, creditor)
    changes = _diff(before, after)
    if not changes:
        return ChangeOutcome(position)

    position.subject = data.subject
    if any(c.field.startswith("debtor.") for c in changes):  # blank contact fields keep what is stored
        position.debtor = upsert_debtor(session, creditor, data.debtor, visible_service_ids=visible_service_ids)
    _apply_options(session, creditor, position, data)
    _refresh_totals(position)
    position.updated_at = now
    superseded = _supersede_notice(position, now)
    if position.status == S.EXPIRED and position.pagopa_target == "published" and position.due_date >= today:
        transition(session, position, S.PUBLISHED, actor=actor, actor_user_id=actor_user_id, at=now,
                   reason="due_date_changed")
    pagopa = position.pagopa_target == "published"
    if pagopa:
        sync_state.request_sync(session, position, content_changed=True, actor_user_id=actor_user_id,
                                enqueue=enqueue)
    event = record_event(session, position, UPDATED_EVENT, actor=actor, actor_user_id=actor_user_id, at=now,
                         reason=_reason(reason), changes=[c.as_list() for c in changes],
                         version=position.pagopa_version if pagopa else None, notice_superseded=superseded or None)
    return ChangeOutcome(position, changes, event, pagopa_update=pagopa, notice_superseded=superseded)


def _apply_options(session: Session, creditor: Creditor, position: Position, data: PositionInput) -> None:
    wanted = _option_inputs(data)
    existing = {_key(o): o for o in position.options}
    missing = [key for key in wanted if key not in existing]
    numbers = iter(allocation.allocate(session, creditor, len(missing)) if missing else [])
    count = len(data.installments)
    for key, option_input in wanted.items():
        option = existing.get(key)
        if option is None:
            allocated = next(numbers)
            option = PaymentOption(position=position, creditor_id=creditor.id, kind=key[0],
                                   installment_number=key[1], iuv=allocated.iuv, notice_number=allocated.nav)
            session.add(option)
        option.status = OptionStatus.UNPAID
        option.amount_cents = option_input.amount_cents
        option.due_date = option_input.due_date
        option.description = option_input.description or _option_description(data.subject, key[1], count)
        _replace_transfers(session, option, option_input.transfers, creditor, data.subject)
    for key, option in existing.items():
        if key not in wanted and option.status == OptionStatus.UNPAID:
            option.status = OptionStatus.CANCELLED


def _replace_transfers(session: Session, option: PaymentOption, transfers: list[TransferInput], creditor: Creditor,
                       subject: str) -> None:
    """Rewrite the option's transfers in place, index by index (no flush: a batch changes many at once)."""
    rows = [_transfer_values(t, creditor, subject) for t in transfers]
    current = list(option.transfers)
    if rows == [_transfer_row_values(t) for t in current]:
        return
    for index, values in enumerate(rows, start=1):
        if index <= len(current):
            for name, value in values.items():
                setattr(current[index - 1], name, value)
        else:
            option.transfers.append(Transfer(index=index, **values))
    for transfer in current[len(rows):]:
        option.transfers.remove(transfer)
        session.delete(transfer)


def _transfer_values(transfer: TransferInput, creditor: Creditor, subject: str) -> dict:
    own = transfer.beneficiary_fiscal_code == creditor.fiscal_code
    return {
        "amount_cents": transfer.amount_cents,
        "beneficiary_fiscal_code": transfer.beneficiary_fiscal_code,
        "beneficiary_name": transfer.beneficiary_name or (creditor.name if own else ""),
        "iban": transfer.iban,
        "taxonomy_code": transfer.taxonomy_code,
        "remittance": transfer.remittance or subject,
    }


def _transfer_row_values(transfer: Transfer) -> dict:
    return {name: getattr(transfer, name) for name in
            ("amount_cents", "beneficiary_fiscal_code", "beneficiary_name", "iban", "taxonomy_code", "remittance")}


def _key(option: PaymentOption) -> tuple[str, int | None]:
    return option.kind, option.installment_number


def _option_inputs(data: PositionInput) -> dict[tuple[str, int | None], OptionInput]:
    wanted: dict[tuple[str, int | None], OptionInput] = {}
    if data.single:
        wanted[("single", None)] = data.single
    for number, option in enumerate(data.installments, start=1):
        wanted[("installment", number)] = option
    return wanted


def _refresh_totals(position: Position) -> None:
    """Amount due and due date from the options still payable (as on creation)."""
    live = [o for o in position.options if o.status != OptionStatus.CANCELLED]
    single = [o for o in live if o.kind == "single"]
    position.amount_cents = single[0].amount_cents if single else sum(o.amount_cents for o in live)
    unpaid = [o for o in live if o.status == OptionStatus.UNPAID]
    if unpaid:
        position.due_date = min(o.due_date for o in unpaid)


def _supersede_notice(position: Position, now) -> bool:
    if position.notice_issued_at is None:
        return False
    position.notice_superseded_at = now
    return True


def _reason(reason: str | None) -> str | None:
    text = " ".join((reason or "").split())
    return text[:REASON_MAX] or None


# --- Snapshots: what the position says, field by field, to compare and to record ------------------------------------


def _snapshot_of_position(position: Position, creditor: Creditor) -> dict:
    debtor = position.debtor
    options = {}
    for option in position.options:
        if option.status == OptionStatus.CANCELLED:
            continue
        options[_label(_key(option))] = {
            "amount_cents": option.amount_cents,
            "due_date": option.due_date.isoformat(),
            "description": option.description,
            "transfers": [_transfer_row_values(t) for t in option.transfers],
        }
    return {
        "subject": position.subject,
        "debtor": {"fiscal_code": debtor.fiscal_code, "name": debtor.name, "country": debtor.country or "IT",
                   **{name: getattr(debtor, name) or None for name in _CONTACT_FIELDS}},
        "options": options,
    }


def _snapshot_of_input(data: PositionInput, creditor: Creditor) -> dict:
    count = len(data.installments)
    options = {}
    for key, option in _option_inputs(data).items():
        options[_label(key)] = {
            "amount_cents": option.amount_cents,
            "due_date": option.due_date.isoformat(),
            "description": option.description or _option_description(data.subject, key[1], count),
            "transfers": [_transfer_values(t, creditor, data.subject) for t in option.transfers],
        }
    return {"subject": data.subject, "debtor": _debtor_after(data.debtor), "options": options}


def _debtor_after(debtor: DebtorInput) -> dict:
    # Contact fields left blank keep what is stored (as upsert_debtor does): the snapshot compares only given ones.
    values = {"fiscal_code": debtor.fiscal_code, "name": debtor.name, "country": debtor.country or "IT"}
    for name in _CONTACT_FIELDS:
        value = getattr(debtor, name)
        values[name] = (value.strip() if isinstance(value, str) else value) or _KEEP
    return values


_KEEP = object()


def _label(key: tuple[str, int | None]) -> str:
    return "single" if key[0] == "single" else f"installments.{key[1]}"


def _diff(before: dict, after: dict) -> list[Change]:
    changes: list[Change] = []
    if before["subject"] != after["subject"]:
        changes.append(Change("subject", before["subject"], after["subject"]))
    for name, value in after["debtor"].items():
        if value is not _KEEP and before["debtor"].get(name) != value:
            changes.append(Change(f"debtor.{name}", before["debtor"].get(name), value))
    for label in sorted(before["options"].keys() | after["options"].keys(), key=_option_order):
        old, new = before["options"].get(label), after["options"].get(label)
        if old is None or new is None:
            changes.append(Change(label, _option_summary(old), _option_summary(new)))
            continue
        for name in ("amount_cents", "due_date", "description"):
            if old[name] != new[name]:
                changes.append(Change(f"{label}.{name}", old[name], new[name]))
        for index in range(max(len(old["transfers"]), len(new["transfers"]))):
            was = old["transfers"][index] if index < len(old["transfers"]) else {}
            now = new["transfers"][index] if index < len(new["transfers"]) else {}
            for name in sorted(was.keys() | now.keys()):
                if was.get(name) != now.get(name):
                    changes.append(Change(f"{label}.transfers.{index + 1}.{name}", was.get(name), now.get(name)))
    return changes


def _option_order(label: str) -> tuple[int, int]:
    return (0, 0) if label == "single" else (1, int(label.rsplit(".", 1)[1]))


def _option_summary(option: dict | None) -> dict | None:
    if option is None:
        return None
    return {"amount_cents": option["amount_cents"], "due_date": option["due_date"]}


# --- Abatement (sgravio) --------------------------------------------------------------------------------------------


def abate_position(session: Session, position: Position, amount_cents: int, *, reason: str, actor: str,
                   actor_user_id: int | None = None) -> ChangeOutcome:
    """Reduce what is still owed by ``amount_cents`` (sgravio), with a reason; in full, the position is cancelled.

    While nothing is paid both payment modes shrink by the amount: the single payment, and the plan from its last
    installment backwards (an installment reduced to nothing is cancelled). Once installments are paid, the unpaid
    ones shrink the same way; when nothing is left to pay the position is settled (paid). Each option's
    beneficiaries shrink in proportion (TEFA follows TARI).

    :raise ChangeRefused: when nothing is owed or the position is closed.
    :raise ValidationFailed: for an amount not above zero or above what is owed, or without a reason.
    """
    lock(session, position)
    refusal = abatement_refusal(position)
    if refusal:
        raise ChangeRefused(refusal)
    owed = owed_cents(position)
    errors = []
    reason_text = _reason(reason)
    if not reason_text:
        errors.append(FieldError("reason", "Indicare il motivo dello sgravio."))
    if not isinstance(amount_cents, int) or amount_cents <= 0:
        errors.append(FieldError("amount", "L'importo dello sgravio deve essere maggiore di zero."))
    elif amount_cents > owed:
        errors.append(FieldError(
            "amount", f"Lo sgravio non può superare l'importo ancora dovuto ({format_euro(owed)})."))
    if errors:
        raise ValidationFailed(errors)

    now = utcnow()
    partly_paid = any(o.status == OptionStatus.PAID for o in position.options)
    details = {"amount_cents": amount_cents, "owed_before_cents": owed, "owed_after_cents": owed - amount_cents,
               "reason": reason_text}
    if amount_cents == owed and not partly_paid:
        event = record_event(session, position, ABATED_EVENT, actor=actor, actor_user_id=actor_user_id, at=now,
                             **details)
        cancel_position(session, position, reason=f"Sgravio totale: {reason_text}", actor=actor,
                        actor_user_id=actor_user_id)
        superseded = _supersede_notice(position, now)
        session.flush()
        return ChangeOutcome(position, [Change("owed_cents", owed, 0)], event,
                             pagopa_update=position.pagopa_target == "invalid", notice_superseded=superseded)

    before = _snapshot_of_position(position, position.service.creditor)
    unpaid = [o for o in position.options if o.status == OptionStatus.UNPAID]
    for kind in ("single", "installment"):
        mode = sorted((o for o in unpaid if o.kind == kind), key=lambda o: o.installment_number or 0, reverse=True)
        _reduce(mode, amount_cents)
    position.amount_cents -= amount_cents
    unpaid = [o for o in position.options if o.status == OptionStatus.UNPAID]
    if unpaid:
        position.due_date = min(o.due_date for o in unpaid)
    position.updated_at = now
    changes = _diff(before, _snapshot_of_position(position, position.service.creditor))
    superseded = _supersede_notice(position, now)
    pagopa = position.pagopa_target == "published" and not partly_paid
    if pagopa:
        sync_state.request_sync(session, position, content_changed=True, actor_user_id=actor_user_id)
    event = record_event(session, position, ABATED_EVENT, actor=actor, actor_user_id=actor_user_id, at=now,
                         **details, changes=[c.as_list() for c in changes],
                         version=position.pagopa_version if pagopa else None,
                         pagopa="not_updatable" if partly_paid and position.pagopa_target == "published" else None,
                         notice_superseded=superseded or None)
    if partly_paid and not unpaid:
        transition(session, position, S.PAID, actor=actor, actor_user_id=actor_user_id, reason="abated")
    session.flush()
    return ChangeOutcome(position, changes, event, pagopa_update=pagopa,
                         pagopa_not_updatable=partly_paid and position.pagopa_target == "published",
                         notice_superseded=superseded)


def _reduce(options: list[PaymentOption], amount_cents: int) -> None:
    """Take ``amount_cents`` off ``options`` in the order given: an option reduced to nothing is cancelled.

    Worked out in full before anything is changed, so a refusal leaves every option as it was.
    """
    plan: list[tuple[PaymentOption, int, list[int]]] = []
    left = amount_cents
    for option in options:
        if left <= 0:
            break
        take = min(left, option.amount_cents)
        left -= take
        new_amount = option.amount_cents - take
        parts = split_by_ratio(new_amount, [t.amount_cents for t in option.transfers]) if new_amount else []
        if 0 in parts:
            # A beneficiary's share would round to nothing (pagoPA wants every transfer above zero).
            raise ValidationFailed([FieldError(
                "amount", "L'importo che resterebbe è troppo piccolo per essere diviso tra i beneficiari del "
                "pagamento: sgravare l'intera rata o modificare la posizione.")])
        plan.append((option, new_amount, parts))
    for option, new_amount, parts in plan:
        if not new_amount:
            option.status = OptionStatus.CANCELLED
            continue
        for transfer, part in zip(option.transfers, parts, strict=True):
            transfer.amount_cents = part
        option.amount_cents = new_amount
