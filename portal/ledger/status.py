"""The life of a position as one transition table, with named errors for what may not happen.

Our statuses are a superset of GPD's: GPD knows DRAFT/PUBLISHED/VALID/EXPIRED/PARTIALLY_PAID/PAID/REPORTED/
INVALID; we add the collection track (reminded, in litigation) that pagoPA does not model.
"""

from enum import StrEnum


class PositionStatus(StrEnum):
    """Status of a position (posizione debitoria)."""

    DRAFT = "draft"
    PUBLISHED = "published"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    REPORTED = "reported"
    EXPIRED = "expired"
    REMINDED = "reminded"
    IN_LITIGATION = "in_litigation"
    CANCELLED = "cancelled"


class OptionStatus(StrEnum):
    """Status of one payment option or installment."""

    UNPAID = "unpaid"
    PAID = "paid"
    CANCELLED = "cancelled"


S = PositionStatus

#: Every allowed move. Anything not listed raises :class:`InvalidTransition`.
TRANSITIONS: dict[PositionStatus, frozenset[PositionStatus]] = {
    S.DRAFT: frozenset({S.PUBLISHED, S.CANCELLED}),
    S.PUBLISHED: frozenset({S.PARTIALLY_PAID, S.PAID, S.EXPIRED, S.REMINDED, S.CANCELLED, S.DRAFT}),
    S.PARTIALLY_PAID: frozenset({S.PAID, S.EXPIRED, S.REMINDED, S.IN_LITIGATION}),
    S.PAID: frozenset({S.REPORTED}),
    S.EXPIRED: frozenset({S.PUBLISHED, S.PARTIALLY_PAID, S.PAID, S.REMINDED, S.IN_LITIGATION, S.CANCELLED}),
    S.REMINDED: frozenset({S.PARTIALLY_PAID, S.PAID, S.IN_LITIGATION, S.CANCELLED}),
    S.IN_LITIGATION: frozenset(),
    S.REPORTED: frozenset(),
    S.CANCELLED: frozenset(),
}

#: Where a position may go back to when a payment recorded outside pagoPA by mistake is reversed (see
#: :mod:`portal.ledger.offline_payments`): the open status it had, or partly paid while other money stays recorded.
#: Kept apart from :data:`TRANSITIONS` on purpose: no other operation may move a paid position back.
REVERSALS: dict[PositionStatus, frozenset[PositionStatus]] = {
    S.PAID: frozenset({S.PUBLISHED, S.PARTIALLY_PAID, S.EXPIRED, S.REMINDED}),
    S.PARTIALLY_PAID: frozenset({S.PUBLISHED, S.PARTIALLY_PAID, S.EXPIRED, S.REMINDED}),
}

#: Statuses in which the credit is still owed (shown as "da pagare", counted as overdue after the due date).
OPEN_STATUSES = frozenset({S.DRAFT, S.PUBLISHED, S.PARTIALLY_PAID, S.EXPIRED, S.REMINDED})
#: Statuses in which no more money is expected on this position.
CLOSED_STATUSES = frozenset({S.PAID, S.REPORTED, S.IN_LITIGATION, S.CANCELLED})
#: Statuses in which pagoPA can take a payment for it.
PAYABLE_STATUSES = frozenset({S.PUBLISHED, S.PARTIALLY_PAID, S.EXPIRED, S.REMINDED})
#: Statuses whose options may still be edited (GPD: updatable = DRAFT, PUBLISHED, VALID, EXPIRED).
EDITABLE_STATUSES = frozenset({S.DRAFT, S.PUBLISHED, S.EXPIRED})

#: Italian labels for the UI.
LABELS = {
    S.DRAFT: "Bozza",
    S.PUBLISHED: "Caricata su pagoPA",
    S.PARTIALLY_PAID: "Pagata in parte",
    S.PAID: "Pagata",
    S.REPORTED: "Rendicontata",
    S.EXPIRED: "Scaduta",
    S.REMINDED: "Sollecitata",
    S.IN_LITIGATION: "In contenzioso",
    S.CANCELLED: "Annullata",
}

#: Bootstrap Italia badge colour for each status.
BADGES = {
    S.DRAFT: "secondary",
    S.PUBLISHED: "primary",
    S.PARTIALLY_PAID: "info",
    S.PAID: "success",
    S.REPORTED: "success",
    S.EXPIRED: "warning",
    S.REMINDED: "warning",
    S.IN_LITIGATION: "danger",
    S.CANCELLED: "dark",
}


class LedgerError(Exception):
    """Base of the ledger's named errors."""


class InvalidTransition(LedgerError):
    """The position cannot move from its status to the requested one."""

    def __init__(self, current: PositionStatus, target: PositionStatus):
        super().__init__(f"transition {current} → {target} is not allowed")
        self.current = current
        self.target = target


class IgnoredTransition(LedgerError):
    """The position is already in the requested status: nothing to do (a repeated request)."""


def check_reversal(current: PositionStatus | str, target: PositionStatus | str) -> PositionStatus:
    """Return ``target`` if a reversed payment may move a position from ``current`` to it (staying partly paid is
    allowed: other money is still recorded).

    :raise InvalidTransition: when :data:`REVERSALS` does not allow the move.
    """
    current, target = PositionStatus(current), PositionStatus(target)
    if target not in REVERSALS.get(current, frozenset()):
        raise InvalidTransition(current, target)
    return target


def check_transition(current: PositionStatus | str, target: PositionStatus | str) -> PositionStatus:
    """Return ``target`` as a status if ``current → target`` is allowed.

    :raise IgnoredTransition: when ``current == target``.
    :raise InvalidTransition: when the table does not allow the move.
    """
    current, target = PositionStatus(current), PositionStatus(target)
    if current == target:
        raise IgnoredTransition(f"position already {current}")
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(current, target)
    return target
