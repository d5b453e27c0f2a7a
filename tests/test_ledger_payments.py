"""record_receipt: a receipt pays its option once, moves the position, and flags what it cannot apply."""

import threading
import time
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.models import Creditor, Event, PaymentOption, Position, Receipt
from portal.ledger.payments import (
    FLAG_ALREADY_PAID,
    FLAG_AMOUNT_MISMATCH,
    FLAG_CANCELLED_POSITION,
    FLAG_UNKNOWN_IUV,
    CreditorRef,
    ReceiptData,
    ReceiptRejected,
    ReceiptTransfer,
    record_receipt,
)
from portal.ledger.status import OptionStatus, PositionStatus
from portal.settings import services as settings_svc
from tests.conftest import CF_COMUNE, CF_PERSON, IBAN_COMUNE

PAID_AT = datetime(2027, 1, 10, 9, 30, tzinfo=UTC)
S = PositionStatus

_counter = iter(range(1, 10**9))


def receipt_for(option: PaymentOption | None = None, *, iuv: str | None = None, amount_cents: int | None = None,
                receipt_id: str | None = None, **fields) -> ReceiptData:
    """A successful receipt paying ``option`` (or an arbitrary IUV), with every field a real one carries."""
    iuv = iuv or option.iuv
    amount = amount_cents if amount_cents is not None else option.amount_cents
    values = dict(
        receipt_id=receipt_id or f"{next(_counter):032x}",
        notice_number=option.notice_number if option else "3" + iuv,
        iuv=iuv,
        org_fiscal_code=CF_COMUNE,
        outcome="OK",
        amount_cents=amount,
        description="TARI 2027",
        company_name="Comune di Prova",
        fee_cents=150,
        psp_id="BCITITMM",
        psp_name="Banca di Prova",
        psp_fiscal_code="00799960158",
        channel_id="00799960158_01",
        channel_description="app",
        payment_method="PO",
        payment_at=PAID_AT,
        application_date=date(2027, 1, 10),
        transfer_date=date(2027, 1, 11),
        debtor_type="F",
        debtor_fiscal_code=CF_PERSON,
        debtor_name="Mario Rossi",
        payer_type="F",
        payer_fiscal_code=CF_PERSON,
        payer_name="Mario Rossi",
        transfers=(ReceiptTransfer(index=1, amount_cents=amount, fiscal_code=CF_COMUNE, iban=IBAN_COMUNE,
                                   remittance="TARI 2027", category="9/0101101IM/"),),
    )
    values.update(fields)
    return ReceiptData(**values)


def record(creditor, data, *, source="paSendRTV2"):
    outcome = record_receipt(db.session, creditor, data, source=source, raw_xml="<receipt/>")
    db.session.commit()
    return outcome


def publish(position: Position, *steps: PositionStatus) -> Position:
    for target in (S.PUBLISHED, *steps):
        ledger.transition(db.session, position, target, actor="test")
    db.session.commit()
    return position


def counts() -> dict:
    return {model.__tablename__: db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (Receipt, Event)}


def kinds(position: Position) -> list[str]:
    return list(db.session.scalars(sa.select(Event.kind).where(Event.position_id == position.id)
                                   .order_by(Event.id)))


def test_single_payment_pays_the_position_and_cancels_the_plan(make_position, creditor):
    position = publish(make_position(amount=10000, installments=(5000, 5000)))
    single, first, second = position.options

    outcome = record(creditor, receipt_for(single))

    assert (outcome.duplicate, outcome.flag) == (False, None)
    db.session.expire_all()
    assert position.status == S.PAID
    assert position.paid_cents == 10000
    assert position.paid_at == PAID_AT
    assert (single.status, single.paid_at) == (OptionStatus.PAID, PAID_AT)
    assert first.status == second.status == OptionStatus.CANCELLED
    receipt = outcome.receipt
    assert (receipt.position_id, receipt.option_id, receipt.flag) == (position.id, single.id, None)
    assert (receipt.psp_id, receipt.fee_cents, receipt.raw_xml) == ("BCITITMM", 150, "<receipt/>")
    event = position.events[-1]
    assert (event.kind, event.actor) == ("paid", "pagopa")
    assert event.details["previous"] == "published"
    for key, value in {"psp_id": "BCITITMM", "psp_name": "Banca di Prova", "payment_method": "PO",
                       "receipt_id": receipt.receipt_id, "iuv": single.iuv, "notice_number": single.notice_number,
                       "amount_cents": 10000, "fee_cents": 150}.items():
        assert event.details[key] == value


def test_installments_make_the_position_partially_paid_then_paid(make_position, creditor):
    position = publish(make_position(amount=9000, installments=(3000, 3000, 3000)))
    single, first, second, third = position.options

    record(creditor, receipt_for(first))
    db.session.expire_all()
    assert position.status == S.PARTIALLY_PAID
    assert single.status == OptionStatus.CANCELLED
    assert position.due_date == second.due_date
    assert position.paid_cents == 3000
    assert position.paid_at is None

    record(creditor, receipt_for(second))
    db.session.expire_all()
    assert position.status == S.PARTIALLY_PAID
    assert position.due_date == third.due_date
    assert kinds(position)[-1] == "installment_paid"

    record(creditor, receipt_for(third))
    db.session.expire_all()
    assert position.status == S.PAID
    assert position.paid_cents == 9000
    assert [o.status for o in position.options] == [OptionStatus.CANCELLED] + [OptionStatus.PAID] * 3
    assert kinds(position)[-3:] == ["partially_paid", "installment_paid", "paid"]


def test_installments_paid_out_of_order(make_position, creditor):
    position = publish(make_position(amount=0, installments=(3000, 3000)))
    first, second = position.options
    record(creditor, receipt_for(second))
    db.session.expire_all()
    assert (position.status, position.due_date) == (S.PARTIALLY_PAID, first.due_date)
    record(creditor, receipt_for(first))
    db.session.expire_all()
    assert position.status == S.PAID


@pytest.mark.parametrize("steps", [(S.EXPIRED,), (S.REMINDED,)], ids=["expired", "reminded"])
def test_a_late_payment_still_pays(make_position, creditor, steps):
    position = publish(make_position(amount=10000), *steps)
    record(creditor, receipt_for(position.options[0]))
    db.session.expire_all()
    assert position.status == S.PAID


@pytest.mark.parametrize("change", ["same receipt id", "same IUV, other receipt id"])
def test_a_repeated_receipt_changes_nothing(make_position, creditor, change):
    position = publish(make_position(amount=10000))
    option = position.options[0]
    first = record(creditor, receipt_for(option, receipt_id="a" * 32))
    before = counts()

    again = receipt_for(option, receipt_id="a" * 32 if change == "same receipt id" else "b" * 32)
    outcome = record(creditor, again)

    assert outcome.duplicate
    assert outcome.receipt.id == first.receipt.id
    assert counts() == before
    db.session.expire_all()
    assert (position.status, position.paid_cents) == (S.PAID, 10000)


@pytest.mark.parametrize("steps", [(S.CANCELLED,), (S.REMINDED, S.IN_LITIGATION)], ids=["cancelled", "litigation"])
def test_receipt_for_a_cancelled_position_is_stored_and_flagged(make_position, creditor, steps):
    position = publish(make_position(amount=10000), *steps)
    status = position.status
    option = position.options[0]

    outcome = record(creditor, receipt_for(option))

    assert (outcome.duplicate, outcome.flag) == (False, FLAG_CANCELLED_POSITION)
    db.session.expire_all()
    assert (position.status, position.paid_cents, option.status) == (status, 0, OptionStatus.UNPAID)
    assert outcome.receipt.position_id == position.id
    event = position.events[-1]
    assert (event.kind, event.details["flag"], event.details["receipt_id"]) == (
        "receipt_flagged", FLAG_CANCELLED_POSITION, outcome.receipt.receipt_id)


def test_paying_the_other_mode_after_one_is_paid_is_flagged(make_position, creditor):
    position = publish(make_position(amount=10000, installments=(5000, 5000)))
    single, first, _ = position.options
    record(creditor, receipt_for(first))

    outcome = record(creditor, receipt_for(single))

    assert outcome.flag == FLAG_ALREADY_PAID
    db.session.expire_all()
    assert (position.status, position.paid_cents, single.status) == (S.PARTIALLY_PAID, 5000, OptionStatus.CANCELLED)


def test_a_wrong_amount_pays_the_option_and_is_flagged(make_position, creditor):
    position = publish(make_position(amount=10000))
    option = position.options[0]

    outcome = record(creditor, receipt_for(option, amount_cents=9000))

    assert outcome.flag == FLAG_AMOUNT_MISMATCH
    db.session.expire_all()
    # The notice is paid on pagoPA, but 10 € are missing: still owed, never "nothing left".
    assert (position.status, position.paid_cents, option.status) == (S.PARTIALLY_PAID, 9000, OptionStatus.PAID)
    assert position.amount_cents - position.paid_cents == 1000
    assert kinds(position)[-2:] == ["partially_paid", "receipt_flagged"]


def test_more_than_due_pays_the_position_and_is_flagged_for_a_refund(make_position, creditor):
    position = publish(make_position(amount=10000))
    outcome = record(creditor, receipt_for(position.options[0], amount_cents=11000))
    assert outcome.flag == FLAG_AMOUNT_MISMATCH
    db.session.expire_all()
    assert (position.status, position.paid_cents) == (S.PAID, 11000)


def test_money_recorded_before_a_receipt_stays_counted(make_position, creditor):
    """paid_cents grows by each receipt (in SQL): a payment recorded without a receipt row (at the counter, the
    demo's history) is never dropped by the next receipt."""
    position = publish(make_position(amount=12000, installments=(6000, 6000)))
    first, second = position.installments
    first.status = OptionStatus.PAID
    position.status = S.PARTIALLY_PAID
    position.paid_cents = 6000  # recorded without a receipt
    db.session.commit()
    record(creditor, receipt_for(second))
    db.session.expire_all()
    assert (position.status, position.paid_cents) == (S.PAID, 12000)


def test_installments_paid_with_one_short_leave_what_is_missing_owed(make_position, creditor):
    position = publish(make_position(amount=12000, installments=(6000, 6000)))
    first, second = position.installments
    record(creditor, receipt_for(first))
    record(creditor, receipt_for(second, amount_cents=5000))
    db.session.expire_all()
    assert (position.status, position.paid_cents) == (S.PARTIALLY_PAID, 11000)


def test_unknown_iuv_is_stored_without_a_position(creditor):
    outcome = record(creditor, receipt_for(iuv="01999999999999999", amount_cents=1234))
    assert (outcome.duplicate, outcome.flag) == (False, FLAG_UNKNOWN_IUV)
    assert (outcome.receipt.position_id, outcome.receipt.option_id) == (None, None)
    assert counts() == {"receipts": 1, "events": 0}


def test_a_receipt_for_a_draft_records_it_published_then_paid(make_position, creditor):
    position = make_position(amount=10000)
    outcome = record(creditor, receipt_for(position.options[0]))
    assert outcome.flag is None
    db.session.expire_all()
    assert position.status == S.PAID
    assert [e.kind for e in position.events][-2:] == ["published", "paid"]


def test_ko_receipt_is_rejected_and_nothing_stored(make_position, creditor):
    position = publish(make_position(amount=10000))
    with pytest.raises(ReceiptRejected):
        record(creditor, receipt_for(position.options[0], outcome="KO"))
    db.session.rollback()
    assert counts()["receipts"] == 0


# --- Concurrency, on PostgreSQL: each thread has its own session and connection -------------------------------------


def _in_own_session(engine, creditor_id: int, data: ReceiptData, results: list, barrier=None):
    with Session(engine) as session:
        creditor = session.get(Creditor, creditor_id)
        if barrier is not None:
            barrier.wait()
        try:
            outcome = record_receipt(session, creditor, data, source="paSendRTV2", raw_xml="<receipt/>")
            session.commit()
            results.append(outcome.duplicate)
        except Exception as exc:  # surfaced by the assertions of the test
            session.rollback()
            results.append(exc)


@pytest.mark.parametrize("known", [True, False], ids=["open option", "unknown IUV"])
def test_a_copy_racing_an_uncommitted_one_becomes_a_duplicate(make_position, creditor, known):
    """The second copy waits (position lock or unique index), then its INSERT inserts nothing (ON CONFLICT)."""
    data = (receipt_for(publish(make_position(amount=10000)).options[0]) if known
            else receipt_for(iuv="01999999999999999", amount_cents=500))
    engine, creditor_id = db.engine, creditor.id
    first = Session(engine)
    try:
        outcome = record_receipt(first, first.get(Creditor, creditor_id), data, source="paSendRTV2",
                                 raw_xml="<receipt/>")
        assert not outcome.duplicate
        results = []
        second = threading.Thread(target=_in_own_session, args=(engine, creditor_id, data, results))
        second.start()
        time.sleep(0.5)
        assert second.is_alive(), "the second copy should wait for the first transaction"
        first.commit()
        second.join(10)
    finally:
        first.close()
    assert results == [True]
    assert counts()["receipts"] == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.kind == "paid")) == (
        1 if known else 0)


def test_concurrent_copies_of_a_receipt_pay_once(make_position, creditor):
    position = publish(make_position(amount=10000))
    data = receipt_for(position.options[0])
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list = []
    threads = [threading.Thread(target=_in_own_session, args=(db.engine, creditor.id, data, results, barrier))
               for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(results) == [False] + [True] * (threads_count - 1)
    db.session.expire_all()
    assert (position.status, position.paid_cents) == (S.PAID, 10000)
    assert counts()["receipts"] == 1
    assert kinds(position).count("paid") == 1


def test_concurrent_installments_of_one_position_are_all_applied(make_position, creditor):
    """Different receipts for the same position queue on its row lock: no lost paid_cents, a consistent status."""
    position = publish(make_position(amount=0, installments=(1000, 2000, 3000, 4000)))
    barrier = threading.Barrier(4)
    results: list = []
    threads = [threading.Thread(target=_in_own_session,
                                args=(db.engine, creditor.id, receipt_for(option), results, barrier))
               for option in position.options]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert results == [False] * 4
    db.session.expire_all()
    assert (position.status, position.paid_cents) == (S.PAID, 10000)
    assert kinds(position).count("paid") == 1
    assert kinds(position).count("partially_paid") == 1
    assert kinds(position).count("installment_paid") == 2


# --- Round-trips: what a receipt costs the database ------------------------------------------------------------------


def test_a_receipt_takes_one_lock_one_insert_and_one_flush(make_position, creditor):
    position = publish(make_position(amount=12000, installments=(6000, 6000)))
    option = position.options[1]
    option_id = option.id
    ref = CreditorRef.of(creditor)
    data = receipt_for(option)
    repeated = receipt_for(option, receipt_id=data.receipt_id)
    db.session.expire_all()
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        if "webhook_subscribers" not in statement:  # the webhooks' own look-up (portal/webhooks/events.py)
            statements.append(" ".join(statement.split()))

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        outcome = record_receipt(db.session, ref, data, source="paSendRTV2", raw_xml="<receipt/>")
        new = list(statements)
        statements.clear()
        again = record_receipt(db.session, ref, repeated, source="paSendRTV2", raw_xml="<receipt/>")
        duplicate = list(statements)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)
    db.session.commit()
    # Position and options locked in one statement, the receipt inserted (no SELECT before it, no SAVEPOINT),
    # then one flush: the position (paid_cents added in SQL), the event, the options (the paid installment and the
    # cancelled single).
    assert new[0].startswith("SELECT positions.")
    assert "FOR UPDATE OF positions, payment_options" in new[0]
    assert new[1].startswith("INSERT INTO receipts")
    assert "ON CONFLICT DO NOTHING" in new[1]
    assert any("paid_cents=(positions.paid_cents+" in s.replace(" ", "") for s in new[2:])  # added in SQL
    assert sorted(" ".join(s.split()[:3]) for s in new[2:]) == [
        "INSERT INTO events", "UPDATE payment_options SET", "UPDATE payment_options SET", "UPDATE positions SET"]
    assert not any("SAVEPOINT" in s for s in new)
    # The duplicate: the same lock, the INSERT that inserts nothing, the SELECT of the stored copy; no writes.
    assert again.duplicate
    assert again.receipt.receipt_id == outcome.receipt.receipt_id
    assert len(duplicate) == 3
    assert duplicate[2].startswith("SELECT receipts.")
    assert counts()["receipts"] == 1
    db.session.expire_all()
    assert (position.status, position.paid_cents) == (S.PARTIALLY_PAID, 6000)
    assert kinds(position)[-2:] == ["published", "partially_paid"]
    stored = db.session.get(Receipt, outcome.receipt.id)
    assert (stored.creditor_id, stored.option_id, stored.amount_cents, stored.flag) == (
        creditor.id, option_id, 6000, None)
    assert stored.received_at is not None
    assert stored.payment_at == PAID_AT


def test_receipts_on_sqlite(tmp_path):
    """The laptop database: the same INSERT ... ON CONFLICT DO NOTHING RETURNING, the same duplicate answer."""
    from portal.ledger.models import Service
    from tests.conftest import position_input
    from tests.test_sqlite import sqlite_app

    with sqlite_app(tmp_path / "paybox.db"):
        comune = settings_svc.create_creditor(db.session, fiscal_code=CF_COMUNE, name="Comune di Prova",
                                        segregation_code="01")
        settings_svc.add_account(db.session, comune, iban=IBAN_COMUNE, label="Tesoreria")
        service = Service(creditor=comune, code="TARI", name="TARI", taxonomy_code="9/0101101IM/",
                          account=comune.accounts[0])
        db.session.add(service)
        db.session.flush()
        position, _ = ledger.create_position(db.session, comune, position_input(service, amount=5000),
                                             actor="test")
        publish(position)
        data = receipt_for(position.options[0])
        first = record(comune, data)
        second = record(comune, data)
        unknown = record(comune, receipt_for(iuv="01999999999999999", amount_cents=700))
        assert (first.duplicate, first.flag) == (False, None)
        assert second.duplicate
        assert second.receipt.id == first.receipt.id
        assert (unknown.duplicate, unknown.flag) == (False, FLAG_UNKNOWN_IUV)
        assert counts()["receipts"] == 2
        db.session.expire_all()
        assert (position.status, position.paid_cents) == (S.PAID, 5000)
