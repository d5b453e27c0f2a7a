"""Reminder and litigation batches as services (PostgreSQL): selection, idempotency, costs, re-issue, delivery."""

import zipfile
from datetime import date, timedelta

import sqlalchemy as sa

from portal import outbox
from portal.collections import batches, charges, delivery, overdue
from portal.collections.models import CollectionBatchItem, CollectionPolicy, Reminder
from portal.collections.settings import rate_table
from portal.extensions import db
from portal.ledger import queries
from portal.ledger.models import Event, Position
from portal.ledger.status import OptionStatus, PositionStatus

S = PositionStatus
TODAY = date.today()


def run(batch, **kwargs):
    while batches.run_chunk(db.session, batch.id, today=kwargs.pop("today", TODAY), **kwargs).startswith("0 ") \
            is False and db.session.get(type(batch), batch.id).status == "running":
        pass
    db.session.commit()


def start(creditor, kind="reminder", **kwargs):
    batch = batches.start(db.session, creditor, kind, queries.PositionFilter(), today=kwargs.pop("today", TODAY),
                          title="Prova", **kwargs)
    db.session.commit()
    return batch


class Outbox:
    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)


def test_preview_counts_and_plans_without_writing(overdue_position, creditor):
    overdue_position(days=40, amount=25000)
    overdue_position(days=10, amount=1000, email="luigi@example.com", fiscal_code="RSSMRA85T10A562S")
    overdue_position(days=-5, amount=999)  # not due yet
    found = batches.preview(db.session, creditor, "reminder", queries.PositionFilter(), today=TODAY)
    assert (found.count, found.owed_cents) == (2, 26000)
    assert [p.channel for p in found.first] == ["print", "email"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Reminder)) == 0


def test_a_reminder_batch_reminds_once_per_due_date(overdue_position, creditor):
    position = overdue_position(days=40)
    batch = start(creditor)
    run(batch)
    db.session.expire_all()
    assert position.status == S.REMINDED
    [reminder] = db.session.scalars(sa.select(Reminder)).all()
    assert (reminder.due_date, reminder.deadline, reminder.sequence, reminder.cost_cents) == (
        position.due_date, TODAY + timedelta(days=30), 1, 0)
    event = db.session.scalar(sa.select(Event).where(Event.position_id == position.id, Event.kind == "reminded"))
    assert event.details["deadline"] == reminder.deadline.isoformat()
    assert position.pagopa_version == 1  # same amount: same notice, nothing for pagoPA
    # The same selection again finds nothing; a second reminder is an explicit choice.
    assert batches.preview(db.session, creditor, "reminder", queries.PositionFilter(), today=TODAY).count == 0
    again = start(creditor, repeat=True)
    run(again)
    assert [r.sequence for r in db.session.scalars(sa.select(Reminder).order_by(Reminder.id))] == [1, 2]


def test_a_batch_run_twice_doubles_nothing(overdue_position, creditor):
    overdue_position(days=40)
    batch = start(creditor)
    run(batch)
    assert batches.run_chunk(db.session, batch.id, today=TODAY) == "lotto concluso"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Reminder)) == 1


def test_a_stopped_batch_resumes_where_it_was(overdue_position, creditor):
    for n in range(3):
        overdue_position(days=40 + n, fiscal_code=["RSSMRA80A01H501U", "RSSMRA85T10A562S", "RCCMNL83S18D969H"][n])
    batch = start(creditor)
    batches.run_chunk(db.session, batch.id, today=TODAY, chunk=1)
    batches.stop(db.session, batch)
    db.session.commit()
    assert batches.run_chunk(db.session, batch.id, today=TODAY) == "lotto fermato"
    batches.resume(db.session, batch)
    db.session.commit()
    run(batch)
    assert batches.counts(db.session, batch) == {"reminded": 3}


def test_reminder_costs_update_the_position_for_pagopa_keeping_the_nav(overdue_position, creditor, service):
    position = overdue_position(days=40, amount=25000, pagopa=True)
    nav = position.options[0].notice_number
    db.session.add(CollectionPolicy(service_id=service.id, reminder_cost_cents=133))
    db.session.commit()
    run(start(creditor))
    db.session.expire_all()
    option = position.options[0]
    assert (option.notice_number, option.amount_cents, option.due_date) == (nav, 25133, TODAY + timedelta(days=30))
    assert position.pagopa_version == 2
    assert position.sync_pending
    assert position.status == S.REMINDED
    assert db.session.scalar(sa.select(Reminder.cost_cents)) == 133
    # The moved due date is the reminder's own: no second reminder by accident when it passes.
    later = TODAY + timedelta(days=40)
    assert batches.preview(db.session, creditor, "reminder", queries.PositionFilter(), today=later).count == 0


def test_reminder_costs_of_a_chunk_each_get_their_version_event_and_sync(overdue_position, creditor, service,
                                                                          make_user):
    admin = make_user("admin", role="admin")
    codes = ["RSSMRA80A01H501U", "RSSMRA85T10A562S", "RCCMNL83S18D969H"]
    charged = [overdue_position(days=40 + n, amount=10000 + n, pagopa=True, fiscal_code=codes[n]) for n in range(2)]
    partly = overdue_position(days=60, fiscal_code=codes[2], status=S.PARTIALLY_PAID, pagopa=True)
    partly.paid_cents = 500
    db.session.add(CollectionPolicy(service_id=service.id, reminder_cost_cents=133))
    db.session.commit()
    batch = batches.start(db.session, creditor, "reminder", queries.PositionFilter(), today=TODAY, title="Prova",
                          actor_user_id=admin.id)
    db.session.commit()
    batches.run_chunk(db.session, batch.id, today=TODAY)
    syncs = {r.ids[0] for r in outbox.pending(db.session) if r.task == "sync_position"}
    db.session.commit()
    db.session.expire_all()
    assert syncs == {p.id for p in charged}  # each new version goes to pagoPA through its own sync job
    for n, position in enumerate(charged):
        assert (position.amount_cents, position.pagopa_version, position.status) == (10133 + n, 2, S.REMINDED)
        [updated] = [e for e in position.events if e.kind == "updated"]
        assert (updated.actor, updated.actor_user_id, updated.details["version"]) == (
            f"user:{admin.id}", admin.id, 2)
        assert ["single.amount_cents", 10000 + n, 10133 + n] in updated.details["changes"]
    reminders = {r.position_id: r for r in db.session.scalars(sa.select(Reminder))}
    assert [reminders[p.id].cost_cents for p in charged] == [133, 133]
    assert reminders[partly.id].cost_cents == 0
    assert partly.pagopa_version == 1
    item = db.session.scalar(sa.select(CollectionBatchItem).where(CollectionBatchItem.position_id == partly.id))
    assert item.outcome == "reminded"
    assert item.message.startswith("Spese del sollecito non addebitate")
    # Run again: nothing is charged twice.
    assert batches.run_chunk(db.session, batch.id, today=TODAY) == "lotto concluso"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.kind == "updated")) == 2


def test_a_reminder_cost_on_an_overdue_plan_keeps_its_due_dates_in_order(overdue_position, creditor, service):
    position = overdue_position(days=400, amount=25000, installments=(10000, 10000, 5000), pagopa=True)
    db.session.add(CollectionPolicy(service_id=service.id, reminder_cost_cents=133))
    db.session.commit()
    run(start(creditor))
    db.session.expire_all()
    assert db.session.scalar(sa.select(CollectionBatchItem.message)) is None  # charged, not refused
    deadline = TODAY + timedelta(days=30)
    options = sorted(position.options, key=lambda o: o.installment_number or 0)
    assert [(o.amount_cents, o.due_date) for o in options] == [
        (25133, deadline), (10133, deadline), (10000, deadline + timedelta(days=1)),
        (5000, deadline + timedelta(days=2))]
    assert position.pagopa_version == 2


def test_litigation_waits_for_the_reminder_deadline(overdue_position, creditor):
    overdue_position(days=40)
    run(start(creditor))
    assert batches.preview(db.session, creditor, "litigation", queries.PositionFilter(), today=TODAY).count == 0
    later = TODAY + timedelta(days=31)
    assert batches.preview(db.session, creditor, "litigation", queries.PositionFilter(), today=later).count == 1


def test_litigation_reissues_with_the_engine_breakdown_and_links_both(overdue_position, creditor, service):
    old = overdue_position(days=400, amount=25000)
    due = old.due_date
    run(start(creditor))
    later = TODAY + timedelta(days=31)
    plan = batches.preview(db.session, creditor, "litigation", queries.PositionFilter(), today=later).first[0]
    expected = charges.assessment(25000, due, later, rate_table(db.session), charges.AssessmentPolicy())
    assert plan.breakdown.as_dicts() == expected.as_dicts()
    batch = start(creditor, "litigation", today=later)
    run(batch, today=later)
    db.session.expire_all()
    assert old.status == S.IN_LITIGATION
    assert all(o.status == OptionStatus.CANCELLED for o in old.options)
    new = db.session.scalar(sa.select(Position).where(Position.replaces_id == old.id))
    assert new.amount_cents == expected.cents
    assert new.options[0].due_date == later + timedelta(days=60)
    assert sum(t.amount_cents for t in new.options[0].transfers) == expected.cents
    kinds = {e.kind for e in old.events}
    assert {"in_litigation", "reissued"} <= kinds
    link = next(e for e in new.events if e.kind == "reissue_of")
    assert link.details["old_position_id"] == old.id
    assert [line["code"] for line in link.details["breakdown"]] == ["tax", "penalty", "interest", "notification"]
    # Again: nothing doubles.
    assert batches.preview(db.session, creditor, "litigation", queries.PositionFilter(), today=later).count == 0


def test_litigation_keeps_tefa_with_the_province_and_splits_penalty_transfers(overdue_position, creditor, service):
    from tests.conftest import TransferInput

    province = TransferInput(amount_cents=1190, beneficiary_fiscal_code="80002150722", beneficiary_name="Provincia",
                             iban="IT82B0200805364000104417720", taxonomy_code="9/0201133IM/", remittance="TEFA")
    own = TransferInput(amount_cents=23810, taxonomy_code="9/0101101IM/")
    old = overdue_position(days=400, amount=25000, transfers=[own, province])
    db.session.add(CollectionPolicy(service_id=service.id, requires_reminder=False,
                                    penalty_taxonomy_code="9/0101106SA/", costs_taxonomy_code="9/0103100TS/",
                                    assessment_taxonomy_code="9/0101109IM/"))
    db.session.commit()
    overdue.scan(db.session, today=TODAY)  # expired, never reminded: this service does not ask for a reminder
    run(start(creditor, "litigation"))
    new = db.session.scalar(sa.select(Position).where(Position.replaces_id == old.id))
    transfers = {t.taxonomy_code: t for t in new.options[0].transfers}
    assert set(transfers) == {"9/0101109IM/", "9/0201133IM/", "9/0101106SA/", "9/0103100TS/"}
    assert transfers["9/0201133IM/"].beneficiary_fiscal_code == "80002150722"
    assert transfers["9/0101109IM/"].amount_cents == 23810
    assert transfers["9/0103100TS/"].amount_cents == 783
    assert transfers["9/0201133IM/"].amount_cents > 1190  # its share of penalty and interest
    assert sum(t.amount_cents for t in transfers.values()) == new.amount_cents


def test_finish_mails_who_has_an_address_and_packs_the_rest(overdue_position, creditor, tmp_path):
    overdue_position(days=40, email="mario@example.com")
    overdue_position(days=41, fiscal_code="RSSMRA85T10A562S")
    batch = start(creditor)
    run(batch)
    box = Outbox()
    summary = delivery.finish(db.session, batch.id, storage_dir=tmp_path, mailer=box)
    db.session.commit()
    assert summary == "1 lettere inviate per PEC o e-mail, 0 invii non riusciti, 1 da stampare"
    [message] = box.sent
    assert message["To"].endswith("<mario@example.com>")
    attachment = next(message.iter_attachments())
    assert attachment.get_content().startswith(b"%PDF")
    with zipfile.ZipFile(db.session.get(type(batch), batch.id).package_path) as z:
        names = z.namelist()
        assert {"indice.csv", "dati.csv", "senza_indirizzo.csv", "LEGGIMI.txt"} <= set(names)
        [letter] = [n for n in names if n.startswith("avvisi/")]
        assert letter.startswith("avvisi/RSSMRA85T10A562S_")
        assert z.read("indice.csv").decode().count("\n") == 2
    statuses = sorted(db.session.scalars(sa.select(Reminder.delivery_status)))
    assert statuses == ["printed", "sent"]
    # Finishing again sends nothing twice.
    delivery.finish(db.session, batch.id, storage_dir=tmp_path, mailer=box)
    assert len(box.sent) == 1


def test_batch_items_record_each_outcome(overdue_position, creditor):
    position = overdue_position(days=40)
    batch = start(creditor)
    position.status = S.PAID  # paid between the selection and the job
    db.session.commit()
    run(batch)
    item = db.session.scalar(sa.select(CollectionBatchItem))
    assert item.outcome == "skipped"
    assert "pagata" in item.message
