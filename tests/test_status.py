"""The position lifecycle: every (current, target) pair against the transition table."""

import itertools

import pytest

from portal.ledger.status import (
    CLOSED_STATUSES,
    EDITABLE_STATUSES,
    OPEN_STATUSES,
    PAYABLE_STATUSES,
    TRANSITIONS,
    IgnoredTransition,
    InvalidTransition,
    PositionStatus,
    check_transition,
)

S = PositionStatus
TERMINAL = (S.REPORTED, S.IN_LITIGATION, S.CANCELLED)


@pytest.mark.parametrize(
    ("current", "target"),
    list(itertools.product(PositionStatus, PositionStatus)),
    ids=lambda s: s.value,
)
def test_every_pair(current, target):
    if current == target:
        with pytest.raises(IgnoredTransition):
            check_transition(current, target)
    elif target in TRANSITIONS[current]:
        assert check_transition(current, target) is target
        assert check_transition(current.value, target.value) is target
    else:
        with pytest.raises(InvalidTransition) as info:
            check_transition(current, target)
        assert (info.value.current, info.value.target) == (current, target)


def test_table_covers_every_status():
    assert set(TRANSITIONS) == set(PositionStatus)
    assert all(current not in targets for current, targets in TRANSITIONS.items())


@pytest.mark.parametrize("status", TERMINAL, ids=lambda s: s.value)
def test_terminal_states_have_no_exits(status):
    assert TRANSITIONS[status] == frozenset()
    for target in PositionStatus:
        if target != status:
            with pytest.raises(InvalidTransition):
                check_transition(status, target)


def test_only_terminal_states_have_no_exits():
    assert {s for s, targets in TRANSITIONS.items() if not targets} == set(TERMINAL)


def test_paid_can_only_be_reported():
    assert TRANSITIONS[S.PAID] == {S.REPORTED}


def test_unknown_status_is_a_value_error():
    with pytest.raises(ValueError, match="lost"):
        check_transition("draft", "lost")


def test_status_groups_are_consistent():
    assert set(PositionStatus) == OPEN_STATUSES | CLOSED_STATUSES
    assert not OPEN_STATUSES & CLOSED_STATUSES
    assert PAYABLE_STATUSES <= OPEN_STATUSES
    assert EDITABLE_STATUSES <= OPEN_STATUSES
    assert S.DRAFT not in PAYABLE_STATUSES
