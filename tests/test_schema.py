"""What must always hold is enforced by the database itself, not only by the code in front of it."""

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.models import Event, EventIsAppendOnly
from portal.settings import services as settings_svc


@pytest.fixture
def position(make_position):
    return make_position(installments=(5000, 5000))


def _execute(sql: str, **params) -> None:
    """Run one statement in its own transaction, straight on the engine (no ORM, no validation)."""
    with db.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def _ids(position):
    single = position.single_option
    second = position.installments[0]
    return {"pid": position.id, "oid": single.id, "oid2": second.id, "tid": single.transfers[0].id,
            "cid": position.creditor_id}


#: Each statement breaks one rule; the database must refuse it naming the constraint that holds the rule.
VIOLATIONS = {
    "position amount 0": ("ck_positions_amount_positive", "UPDATE positions SET amount_cents = 0 WHERE id = :pid"),
    "position amount negative": ("ck_positions_amount_positive",
                                 "UPDATE positions SET amount_cents = -1 WHERE id = :pid"),
    "paid negative": ("ck_positions_paid_not_negative", "UPDATE positions SET paid_cents = -1 WHERE id = :pid"),
    "option amount 0": ("ck_payment_options_amount_positive",
                        "UPDATE payment_options SET amount_cents = 0 WHERE id = :oid"),
    "transfer amount 0": ("ck_transfers_amount_positive", "UPDATE transfers SET amount_cents = 0 WHERE id = :tid"),
    "transfer index 6": ("ck_transfers_index_1_to_5", 'UPDATE transfers SET "index" = 6 WHERE id = :tid'),
    "transfer index 0": ("ck_transfers_index_1_to_5", 'UPDATE transfers SET "index" = 0 WHERE id = :tid'),
    "duplicate IUV per creditor": (
        "uq_payment_options_creditor_id_iuv",
        "UPDATE payment_options SET iuv = (SELECT iuv FROM payment_options WHERE id = :oid) WHERE id = :oid2"),
    "duplicate NAV per creditor": (
        "uq_payment_options_creditor_id_notice_number",
        "UPDATE payment_options SET notice_number = (SELECT notice_number FROM payment_options WHERE id = :oid)"
        " WHERE id = :oid2"),
    "short IUV": ("ck_payment_options_number_lengths", "UPDATE payment_options SET iuv = '0125' WHERE id = :oid"),
    "single with a number": ("ck_payment_options_installment_number_matches_kind",
                             "UPDATE payment_options SET installment_number = 1 WHERE id = :oid"),
    "unknown option kind": ("ck_payment_options_(kind_known|installment_number_matches_kind)",
                            "UPDATE payment_options SET kind = 'other' WHERE id = :oid"),
    "position status not in enum": ("ck_positions_position_status",
                                    "UPDATE positions SET status = 'lost' WHERE id = :pid"),
    "option status not in enum": ("ck_payment_options_option_status",
                                  "UPDATE payment_options SET status = 'lost' WHERE id = :oid"),
    "segregation code 47": ("ck_creditors_segregation_code_allowed",
                            "UPDATE creditors SET segregation_code = '47' WHERE id = :cid"),
    "segregation code 81": ("ck_creditors_segregation_code_allowed",
                            "UPDATE creditors SET segregation_code = '81' WHERE id = :cid"),
    "segregation code 99": ("ck_creditors_segregation_code_allowed",
                            "UPDATE creditors SET segregation_code = '99' WHERE id = :cid"),
    "segregation code of 1 char": ("ck_creditors_segregation_code_allowed",
                                   "UPDATE creditors SET segregation_code = '1' WHERE id = :cid"),
    "creditor fiscal code of 10 chars": ("ck_creditors_fiscal_code_length",
                                         "UPDATE creditors SET fiscal_code = '0074311015' WHERE id = :cid"),
    "debtor kind X": ("ck_debtors_kind_f_or_g", "UPDATE debtors SET kind = 'X'"),
    "counter at 0": ("ck_number_counters_next_value_positive",
                     "UPDATE number_counters SET next_value = 0 WHERE creditor_id = :cid"),
    "delete a creditor with positions": ("_creditor_id_creditors", "DELETE FROM creditors WHERE id = :cid"),
    "delete an option with transfers": ("fk_transfers_option_id_payment_options",
                                        "DELETE FROM payment_options WHERE id = :oid"),
    "duplicate external id": (
        "uq_positions_creditor_id_source",
        "INSERT INTO positions (creditor_id, service_id, debtor_id, iupd, source, external_id, subject, status,"
        " amount_cents, paid_cents, due_date, created_at, updated_at)"
        " SELECT creditor_id, service_id, debtor_id, iupd || '-copy', source, external_id, subject, status,"
        " amount_cents, paid_cents, due_date, created_at, updated_at FROM positions WHERE id = :pid"),
}


@pytest.mark.parametrize(("constraint", "sql"), VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_constraint_holds_in_the_database(make_position, constraint, sql):
    position = make_position(installments=(5000, 5000), external_id="EXT-1")
    params = _ids(position)
    db.session.rollback()
    with pytest.raises(sa.exc.IntegrityError, match=constraint):
        _execute(sql, **params)


@pytest.mark.parametrize("code", ["00", "46", "80"])
def test_allowed_segregation_codes_pass_the_check(creditor, code):
    _execute("UPDATE creditors SET segregation_code = :code WHERE id = :cid", code=code, cid=creditor.id)


def test_same_iuv_is_allowed_for_another_creditor(position):
    other = settings_svc.create_creditor(db.session, fiscal_code="00743110157", name="Unione dei Comuni",
                                   segregation_code="02")
    db.session.commit()
    _execute(
        "INSERT INTO payment_options (position_id, creditor_id, kind, installment_number, iuv, notice_number,"
        " amount_cents, due_date, description, status)"
        " SELECT position_id, :other, kind, installment_number + 10, iuv, notice_number, amount_cents, due_date,"
        " description, status FROM payment_options WHERE id = :oid",
        other=other.id, oid=position.installments[0].id,
    )


def test_orm_update_of_an_event_is_refused(position):
    event = position.events[0]
    event.kind = "tampered"
    with pytest.raises(EventIsAppendOnly):
        db.session.flush()
    db.session.rollback()
    assert db.session.get(Event, event.id).kind == "created"


def test_orm_delete_of_an_event_is_refused(position):
    db.session.delete(position.events[0])
    with pytest.raises(EventIsAppendOnly):
        db.session.flush()
    db.session.rollback()
    assert len(position.events) == 1


@pytest.mark.parametrize(
    "sql",
    ["UPDATE events SET kind = 'tampered' WHERE position_id = :pid", "DELETE FROM events WHERE position_id = :pid",
     "UPDATE events SET details = '{}'"],
    ids=["update", "delete", "update all"],
)
def test_raw_sql_on_events_is_refused_by_the_trigger(position, sql):
    pid = position.id
    db.session.rollback()
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        _execute(sql, pid=pid)
    with db.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT kind FROM events WHERE position_id = :pid"), {"pid": pid}) == "created"


def test_events_can_still_be_appended(position):
    ledger.record_event(db.session, position, "note", actor="test", text="ok")
    db.session.commit()
    assert [e.kind for e in position.events] == ["created", "note"]
    with db.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM events")) == 2
