"""Editing a position while nothing is paid, and abating (sgravio) what is still owed: one event with before/after,
the same IUV/NAV for the options that stay, a new version to pagoPA through the sync (up to the sandbox), the
printed notice marked as superseded."""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from portal import outbox
from portal.extensions import db
from portal.ledger import changes
from portal.ledger import services as ledger
from portal.ledger.errors import ValidationFailed
from portal.ledger.inputs import TransferInput
from portal.ledger.models import Event, Position, Receipt
from portal.ledger.payments import FLAG_AMOUNT_MISMATCH, FLAG_CANCELLED_POSITION
from portal.ledger.status import OptionStatus, PositionStatus
from portal.ledger.types import utcnow
from tests.conftest import CF_COMUNE
from tests.test_ledger_payments import receipt_for, record
from tests.test_sync import gpd, jobs, sandbox, sandbox_server  # noqa: F401

S = PositionStatus
CF_PROVINCIA = "80011990639"
IBAN_PROVINCIA = "IT60X0542811101000000123456"


def fresh(position_id: int) -> Position:
    db.session.expire_all()
    return db.session.get(Position, position_id)


def events(position, kind):
    return list(db.session.scalars(sa.select(Event).where(Event.position_id == position.id, Event.kind == kind)))


def edited(position, **kwargs):
    data = changes.position_input(position)
    for name, value in kwargs.items():
        setattr(data, name, value)
    return data


# --- Edit -------------------------------------------------------------------------------------------------------------


def test_editing_amount_and_due_date_keeps_the_numbers_and_records_before_and_after(published):
    position = published(amount=10000)
    option = position.options[0]
    nav, iuv, version = option.notice_number, option.iuv, position.pagopa_version
    data = changes.position_input(position)
    new_due = date.today() + timedelta(days=90)
    data.single.amount_cents, data.single.due_date, data.single.transfers = 8000, new_due, []
    outcome = changes.update_position(db.session, position, data, actor="user:1", reason="Superficie corretta")
    assert [t.task for t in outbox.pending(db.session)] == ["sync_position"]
    db.session.commit()
    position = fresh(position.id)
    assert (position.amount_cents, position.due_date, position.pagopa_version) == (8000, new_due, version + 1)
    assert (position.options[0].notice_number, position.options[0].iuv) == (nav, iuv)
    assert [t.amount_cents for t in position.options[0].transfers] == [8000]
    assert outcome.pagopa_update
    assert position.sync_pending
    [event] = events(position, "updated")
    fields = {f: (b, a) for f, b, a in event.details["changes"]}
    assert fields["single.amount_cents"] == (10000, 8000)
    assert fields["single.due_date"][1] == new_due.isoformat()
    assert fields["single.transfers.1.amount_cents"] == (10000, 8000)
    assert event.details["reason"] == "Superficie corretta"
    assert event.actor == "user:1"


def test_the_same_content_again_changes_nothing(published):
    position = published(amount=10000)
    outcome = changes.update_position(db.session, position, changes.position_input(position), actor="user:1")
    db.session.commit()
    assert not outcome.changed
    assert events(position, "updated") == []
    assert fresh(position.id).pagopa_version == 1
    assert outbox.pending(db.session) == []


def test_a_plan_grows_and_shrinks_new_installments_get_new_numbers(published):
    position = published(amount=30000, installments=(15000, 15000))
    old = {o.installment_number: o.notice_number for o in position.options if o.kind == "installment"}
    data = changes.position_input(position)
    due = data.installments[-1].due_date
    for option in data.installments:
        option.amount_cents, option.transfers = 10000, []
    data.installments.append(type(data.installments[0])(amount_cents=10000, due_date=due + timedelta(days=30)))
    changes.update_position(db.session, position, data, actor="user:1")
    db.session.commit()
    position = fresh(position.id)
    plan = {o.installment_number: o for o in position.options if o.kind == "installment"}
    assert [plan[n].notice_number for n in (1, 2)] == [old[1], old[2]]
    assert plan[3].notice_number not in old.values()
    assert plan[3].status == OptionStatus.UNPAID
    # Back to two installments: the third is cancelled, not deleted (its number was issued).
    data = changes.position_input(position)
    data.installments = data.installments[:2]
    for option in data.installments:
        option.amount_cents, option.transfers = 15000, []
    changes.update_position(db.session, position, data, actor="user:1")
    db.session.commit()
    position = fresh(position.id)
    statuses = {o.installment_number: o.status for o in position.options if o.kind == "installment"}
    assert statuses == {1: OptionStatus.UNPAID, 2: OptionStatus.UNPAID, 3: OptionStatus.CANCELLED}


def test_the_debtor_and_subject_change_with_the_rules_of_creation(published):
    position = published()
    data = edited(position, subject="TARI 2027 - rettifica")
    data.debtor.name, data.debtor.postal_code = "Mario Rossi Bianchi", "0010"
    with pytest.raises(ValidationFailed) as failed:
        changes.update_position(db.session, position, data, actor="user:1")
    assert "debtor.postal_code" in failed.value.by_field()
    db.session.rollback()
    data.debtor.postal_code = "00185"
    outcome = changes.update_position(db.session, position, data, actor="user:1")
    db.session.commit()
    fields = {c.field for c in outcome.changes}
    assert fields == {"subject", "debtor.name", "debtor.postal_code", "single.description",
                      "single.transfers.1.remittance"}
    assert fresh(position.id).debtor.postal_code == "00185"


def test_nothing_can_be_edited_once_something_is_paid_or_closed(published, creditor):
    position = published(amount=20000, installments=(10000, 10000))
    record(creditor, receipt_for(position.options[1]))
    with pytest.raises(changes.ChangeRefused, match="solo sgravare"):
        changes.update_position(db.session, position, changes.position_input(position), actor="user:1")
    db.session.rollback()
    cancelled = published()
    ledger.cancel_position(db.session, cancelled, reason="errore", actor="user:1")
    db.session.commit()
    with pytest.raises(changes.ChangeRefused):
        changes.update_position(db.session, cancelled, changes.position_input(cancelled), actor="user:1")


def test_the_service_cannot_change(published, make_service):
    position = published()
    other = make_service(code="MENSA", name="Mensa", taxonomy_code="9/0201102IM/")
    with pytest.raises(ValidationFailed, match="servizio"):
        changes.update_position(db.session, position, edited(position, service_id=other.id), actor="user:1")


def test_a_printed_notice_is_superseded_and_printed_again(published):
    position = published()
    position.notice_issued_at = utcnow()
    db.session.commit()
    data = changes.position_input(position)
    data.single.amount_cents, data.single.transfers = 9000, []
    outcome = changes.update_position(db.session, position, data, actor="user:1")
    db.session.commit()
    assert outcome.notice_superseded
    assert fresh(position.id).notice_superseded_at is not None
    from portal.ledger import queries
    from portal.notices import billrun

    ids = db.session.scalars(billrun.eligible_ids(position.creditor_id, queries.PositionFilter(),
                                                  include_issued=False)).all()
    assert position.id in ids


def test_a_draft_is_edited_without_a_pagopa_call(make_service, make_position):
    imu = make_service(code="IMU", name="IMU", taxonomy_code="9/0101100IM/", draft_first=True)
    draft = make_position(service=imu)
    data = changes.position_input(draft)
    data.single.amount_cents, data.single.transfers = 5000, []
    outcome = changes.update_position(db.session, draft, data, actor="user:1")
    db.session.commit()
    assert outcome.changed
    assert not outcome.pagopa_update
    assert outbox.pending(db.session) == []
    assert fresh(draft.id).amount_cents == 5000


def test_an_expired_position_with_a_new_due_date_is_payable_again(published):
    position = published()
    ledger.transition(db.session, position, S.EXPIRED, actor="system")
    db.session.commit()
    data = changes.position_input(position)
    data.single.due_date = date.today() + timedelta(days=20)
    changes.update_position(db.session, position, data, actor="user:1")
    db.session.commit()
    assert fresh(position.id).status == S.PUBLISHED


def test_the_new_version_reaches_the_sandbox(ctx, creditor, station, make_position, jobs, gpd):  # noqa: F811
    position = make_position(amount=12000)
    db.session.commit()
    jobs.run_pending()
    position = fresh(position.id)
    assert position.status == S.PUBLISHED
    data = changes.position_input(position)
    new_due = date.today() + timedelta(days=60)
    data.single.amount_cents, data.single.due_date, data.single.transfers = 9900, new_due, []
    changes.update_position(db.session, position, data, actor="user:1")
    db.session.commit()
    jobs.run_pending()
    position = fresh(position.id)
    assert (position.pagopa_synced_version, position.sync_pending) == (2, False)
    remote = gpd.get(CF_COMUNE, position.iupd)
    assert [(o.nav, o.amount_cents) for o in remote.options] == [(position.options[0].notice_number, 9900)]
    assert remote.raw["paymentOption"][0]["dueDate"].startswith(new_due.isoformat())
    assert [e.details["version"] for e in events(position, "pagopa_updated")] == [2]


# --- Abatement (sgravio) --------------------------------------------------------------------------------------------


def test_a_partial_abatement_reduces_both_modes_and_their_beneficiaries(published):
    transfers = [TransferInput(amount_cents=9000),
                 TransferInput(amount_cents=1000, beneficiary_fiscal_code=CF_PROVINCIA, iban=IBAN_PROVINCIA,
                               beneficiary_name="Provincia", taxonomy_code="9/0101101IM/")]
    position = published(amount=10000, installments=(5000, 5000), transfers=transfers)
    outcome = changes.abate_position(db.session, position, 2000, reason="Riduzione per compostaggio",
                                     actor="user:1")
    db.session.commit()
    position = fresh(position.id)
    single = next(o for o in position.options if o.kind == "single")
    plan = sorted((o for o in position.options if o.kind == "installment"), key=lambda o: o.installment_number)
    assert position.amount_cents == 8000
    assert single.amount_cents == 8000
    assert [t.amount_cents for t in single.transfers] == [7200, 800]
    assert [o.amount_cents for o in plan] == [5000, 3000]  # the last installment first
    assert outcome.pagopa_update
    assert position.pagopa_version == 2
    [event] = events(position, "abated")
    assert (event.details["amount_cents"], event.details["owed_before_cents"], event.details["owed_after_cents"]) \
        == (2000, 10000, 8000)


def test_abating_everything_owed_cancels_the_position(published):
    position = published(amount=10000)
    changes.abate_position(db.session, position, 10000, reason="Immobile non soggetto", actor="user:1")
    db.session.commit()
    position = fresh(position.id)
    assert position.status == S.CANCELLED
    assert position.pagopa_target == "invalid"
    assert [e.kind for e in position.events][-2:] == ["abated", "cancelled"]


def test_abating_a_partly_paid_plan_settles_it_and_flags_later_money(published, creditor):
    position = published(amount=30000, installments=(10000, 10000, 10000))
    first = next(o for o in position.options if o.installment_number == 1)
    record(creditor, receipt_for(first))
    position = fresh(position.id)
    assert position.status == S.PARTIALLY_PAID
    assert changes.owed_cents(position) == 20000
    outcome = changes.abate_position(db.session, position, 15000, reason="Sgravio parziale", actor="user:1")
    db.session.commit()
    assert outcome.pagopa_not_updatable
    assert not outcome.pagopa_update
    position = fresh(position.id)
    plan = {o.installment_number: o for o in position.options if o.kind == "installment"}
    assert (plan[2].amount_cents, plan[2].status, plan[3].status) == (5000, OptionStatus.UNPAID,
                                                                      OptionStatus.CANCELLED)
    assert position.status == S.PARTIALLY_PAID
    assert position.amount_cents == 15000
    # pagoPA still asks the old amount of the abated installment: that money is flagged, for a refund.
    late = record(creditor, receipt_for(plan[3], amount_cents=10000))
    assert late.flag == FLAG_CANCELLED_POSITION
    paid = record(creditor, receipt_for(plan[2], amount_cents=10000))
    assert paid.flag == FLAG_AMOUNT_MISMATCH
    position = fresh(position.id)
    assert position.status == S.PAID


def test_abating_the_whole_rest_of_a_partly_paid_plan_closes_it(published, creditor):
    position = published(amount=20000, installments=(10000, 10000))
    record(creditor, receipt_for(next(o for o in position.options if o.installment_number == 1)))
    changes.abate_position(db.session, fresh(position.id), 10000, reason="Sgravio del residuo", actor="user:1")
    db.session.commit()
    position = fresh(position.id)
    assert position.status == S.PAID
    assert position.amount_cents == position.paid_cents == 10000


@pytest.mark.parametrize(("amount", "reason", "field"), [(0, "motivo", "amount"), (10001, "motivo", "amount"),
                                                         (500, "  ", "reason")])
def test_an_abatement_needs_a_positive_amount_within_what_is_owed_and_a_reason(published, amount, reason, field):
    position = published(amount=10000)
    with pytest.raises(ValidationFailed) as failed:
        changes.abate_position(db.session, position, amount, reason=reason, actor="user:1")
    assert field in failed.value.by_field()
    db.session.rollback()
    assert fresh(position.id).amount_cents == 10000


def test_nothing_to_abate_on_a_paid_position(published, creditor):
    position = published(amount=10000)
    record(creditor, receipt_for(position.options[0]))
    with pytest.raises(changes.ChangeRefused):
        changes.abate_position(db.session, fresh(position.id), 100, reason="x", actor="user:1")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Receipt)) == 1


def test_the_abated_version_reaches_the_sandbox(ctx, creditor, station, make_position, jobs, gpd):  # noqa: F811
    position = make_position(amount=12000)
    db.session.commit()
    jobs.run_pending()
    changes.abate_position(db.session, fresh(position.id), 2000, reason="Rettifica", actor="user:1")
    db.session.commit()
    jobs.run_pending()
    position = fresh(position.id)
    assert [o.amount_cents for o in gpd.get(CF_COMUNE, position.iupd).options] == [10000]
