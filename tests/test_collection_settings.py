"""The collection settings without the back office: the legal-rate table and the policies as the domain edits them,
their append-only history (PostgreSQL and SQLite), and the penalty reductions a policy now carries to the engine."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from portal.collections import charges
from portal.collections import settings as cs
from portal.collections.history import SettingChange, SettingChangeIsAppendOnly, as_text
from portal.collections.models import CollectionPolicy, LegalRate, default_policy
from portal.extensions import db
from portal.ledger.errors import ValidationFailed
from tests.test_charges import RATES


def changes() -> list[tuple]:
    return [(c.subject, c.service_id, c.rate_from, c.field, c.old_value, c.new_value, c.actor)
            for c in db.session.scalars(sa.select(SettingChange).order_by(SettingChange.id))]


def defaults(service) -> dict:
    return cs.policy_values(default_policy(service))


# --- canonical values ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [
    (None, None), ("", None), (True, "true"), (False, "false"), (Decimal("1.600"), "1.6"), (Decimal("-0.00"), "0"),
    (Decimal("30"), "30"), (Decimal("2.50"), "2.5"), (date(2024, 9, 1), "2024-09-01"), (783, "783"), (0, "0"),
    ("9/0101106SA/", "9/0101106SA/")])
def test_values_have_one_canonical_text(value, text):
    assert as_text(value) == text


@pytest.mark.parametrize(("subject", "field", "text", "shown"), [
    ("policy", "notification_cents", "123456", "1.234,56\u00a0€"), ("policy", "interest_spread", "-1.5", "-1,5"),
    ("policy", "penalty_regime_change", "2024-09-01", "01/09/2024"), ("policy", "penalty_reduce_late", "false", "No"),
    ("policy", "interest_divisor", "leap", "366 negli anni bisestili"),
    ("policy", "notification_method", "pec", "PEC"), ("policy", "penalty_min_cents", None, "–"),
    ("legal_rate", "percent", "1.6", "1,6"), ("legal_rate", "effective_from", "2027-01-01", "01/01/2027"),
    ("legal_rate", "decree", "DM 1/12/2026", "DM 1/12/2026")])
def test_history_values_are_shown_the_italian_way(subject, field, text, shown):
    assert cs.display_value(subject, field, text) == shown


# --- the legal-rate table --------------------------------------------------------------------------------------------


def test_a_new_period_is_recorded_field_by_field(legal_rates):
    cs.save_legal_rate(db.session, effective_from=date(2027, 1, 1), percent="1,25", decree=" DM  11/12/2026 ",
                       actor="user:7")
    db.session.commit()
    assert changes() == [
        ("legal_rate", None, date(2027, 1, 1), "effective_from", None, "2027-01-01", "user:7"),
        ("legal_rate", None, date(2027, 1, 1), "percent", None, "1.25", "user:7"),
        ("legal_rate", None, date(2027, 1, 1), "decree", None, "DM 11/12/2026", "user:7")]
    again = cs.save_legal_rate(db.session, effective_from=date(2027, 1, 1), percent="1.250", decree="DM 11/12/2026",
                               actor="user:8")
    assert again.percent == Decimal("1.250")
    assert len(changes()) == 3  # the same values: nothing twice


def test_a_correction_records_the_old_and_new_date(legal_rates):
    row = db.session.scalar(sa.select(LegalRate).where(LegalRate.effective_from == date(2026, 1, 1)))
    cs.save_legal_rate(db.session, effective_from=date(2026, 2, 1), percent="1,6", decree=row.decree, actor="user:1",
                       rate_id=row.id)
    assert changes() == [("legal_rate", None, date(2026, 2, 1), "effective_from", "2026-01-01", "2026-02-01", "user:1")]
    with pytest.raises(LookupError):
        cs.save_legal_rate(db.session, effective_from=date(2026, 2, 1), percent="1", decree="", actor="x",
                           rate_id=10**6)


def test_a_refused_rate_changes_nothing(legal_rates):
    with pytest.raises(ValidationFailed) as refused:
        cs.save_legal_rate(db.session, effective_from=None, percent="-1", decree="", actor="user:1")
    assert set(refused.value.by_field()) == {"effective_from", "percent"}
    assert changes() == []


def test_removing_a_row_keeps_its_values_in_the_history(legal_rates):
    row = db.session.scalar(sa.select(LegalRate).where(LegalRate.effective_from == date(2026, 1, 1)))
    assert cs.delete_legal_rate(db.session, row.id, actor="user:2")
    assert db.session.get(LegalRate, row.id) is None
    assert [c[3:6] for c in changes()] == [("effective_from", "2026-01-01", None), ("percent", "1.6", None),
                                           ("decree", "DM 10/12/2025 (GU 289 del 13/12/2025)", None)]
    assert not cs.delete_legal_rate(db.session, row.id, actor="user:2")


def test_the_last_row_of_the_table_cannot_be_removed(ctx):
    only = cs.save_legal_rate(db.session, effective_from=date(2026, 1, 1), percent="1,6", decree="", actor="user:1")
    with pytest.raises(ValidationFailed, match="ultimo tasso"):
        cs.delete_legal_rate(db.session, only.id, actor="user:1")
    assert db.session.get(LegalRate, only.id) is not None
    assert [c[3] for c in changes()] == ["effective_from", "percent"]


def test_a_rate_change_changes_the_interest_of_the_next_act(service, legal_rates):
    policy = cs.policy_for(db.session, service).assessment_policy()
    before = charges.assessment(25000, date(2023, 5, 31), date(2026, 2, 27), cs.rate_table(db.session), policy)
    assert before.amount("interest") == 1923  # digest §1.10 B
    row = db.session.scalar(sa.select(LegalRate).where(LegalRate.effective_from == date(2026, 1, 1)))
    cs.save_legal_rate(db.session, effective_from=row.effective_from, percent="5", decree="", actor="user:1",
                       rate_id=row.id)
    after = charges.assessment(25000, date(2023, 5, 31), date(2026, 2, 27), cs.rate_table(db.session), policy)
    # 58 days of 2026 at 5% instead of 1.6%: 250 × 3.4% × 58 / 365 = 1.35 € more.
    assert after.amount("interest") - before.amount("interest") == 135


# --- policies --------------------------------------------------------------------------------------------------------


def test_the_first_save_records_what_differs_from_the_defaults(service):
    values = {**defaults(service), "interest_spread": Decimal("1"), "penalty_max_cents": 50000}
    assert cs.save_policy(db.session, service, values, actor="user:3", user_id=None) == [
        "interest_spread", "penalty_max_cents"]
    db.session.commit()
    assert changes() == [("policy", service.id, None, "interest_spread", "0", "1", "user:3"),
                         ("policy", service.id, None, "penalty_max_cents", None, "50000", "user:3")]
    assert cs.save_policy(db.session, service, values, actor="user:3") == []
    assert len(changes()) == 2


def test_saving_the_defaults_stores_nothing(service):
    assert cs.save_policy(db.session, service, defaults(service), actor="user:3") == []
    assert db.session.get(CollectionPolicy, service.id) is None
    assert changes() == []


@pytest.mark.parametrize(("values", "field"), [
    ({"interest_spread": Decimal("3.01")}, "interest_spread"), ({"late_spread": Decimal("0.001")}, "late_spread"),
    ({"appeal_days": 0}, "appeal_days"), ({"grace_days": 4000}, "grace_days"),
    ({"penalty_min_cents": 500, "penalty_max_cents": 100}, "penalty_max_cents"),
    ({"penalty_half_within_days": 10, "penalty_daily_within_days": 15}, "penalty_daily_within_days"),
    ({"interest_divisor": "360"}, "interest_divisor"), ({"notification_method": "piccione"}, "notification_method"),
    ({"costs_taxonomy_code": "9/0000000XX/"}, "costs_taxonomy_code"), ({"reminder_days": None}, "reminder_days"),
    ({"penalty_percent_before": Decimal("100.5")}, "penalty_percent_before"), ({"bogus": 1}, "bogus"),
])
def test_a_rule_broken_changes_nothing(service, values, field):
    with pytest.raises(ValidationFailed) as refused:
        cs.save_policy(db.session, service, {**defaults(service), **values}, actor="user:3")
    assert field in refused.value.by_field()
    assert db.session.get(CollectionPolicy, service.id) is None
    assert changes() == []


def test_the_history_is_append_only_for_the_orm_and_for_sql(service):
    cs.save_policy(db.session, service, {"grace_days": 5}, actor="user:3")
    db.session.commit()
    row = db.session.scalar(sa.select(SettingChange))
    row.new_value = "50"
    with pytest.raises(SettingChangeIsAppendOnly):
        db.session.flush()
    db.session.rollback()
    db.session.delete(db.session.scalar(sa.select(SettingChange)))
    with pytest.raises(SettingChangeIsAppendOnly):
        db.session.flush()
    db.session.rollback()
    for statement in (sa.update(SettingChange.__table__).values(new_value="50"), sa.delete(SettingChange.__table__)):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(statement)
    assert [c[3:6] for c in changes()] == [("grace_days", "0", "5")]


def test_sqlite_keeps_the_history_append_only_too(tmp_path):
    from portal.settings import services as settings_svc
    from tests.conftest import CF_COMUNE, IBAN_COMUNE
    from tests.test_sqlite import sqlite_app

    with sqlite_app(tmp_path / "history.db"):
        comune = settings_svc.create_creditor(db.session, fiscal_code=CF_COMUNE, name="Comune", segregation_code="01")
        settings_svc.add_account(db.session, comune, iban=IBAN_COMUNE, label="Tesoreria")
        from portal.ledger.models import Service

        service = Service(creditor=comune, code="TARI", name="TARI", taxonomy_code="9/0101101IM/",
                          account=comune.accounts[0])
        db.session.add(service)
        db.session.flush()
        cs.save_policy(db.session, service, {"interest_spread": Decimal("-1.5"), "penalty_reduce_late": False},
                       actor="user:1")
        cs.save_legal_rate(db.session, effective_from=date(2027, 1, 1), percent="1,1", decree="", actor="user:1")
        db.session.commit()
        assert [(c[0], c[3], c[5]) for c in changes()] == [
            ("policy", "interest_spread", "-1.5"), ("policy", "penalty_reduce_late", "false"),
            ("legal_rate", "effective_from", "2027-01-01"), ("legal_rate", "percent", "1.1")]
        stored = db.session.get(CollectionPolicy, service.id)
        assert (stored.interest_spread, stored.penalty_reduce_late) == (Decimal("-1.5"), False)
        for statement in (sa.update(SettingChange.__table__).values(new_value="x"),
                          sa.delete(SettingChange.__table__)):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.engine.begin() as conn:
                conn.execute(statement)
        with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
            conn.execute(sa.update(CollectionPolicy.__table__).values(penalty_daily_within_days=100))
        assert len(changes()) == 4


# --- penalty reductions by days late --------------------------------------------------------------------------------


def test_the_policy_carries_its_penalty_reductions_to_the_engine(service):
    due = date(2025, 5, 31)
    rule = cs.policy_for(db.session, service).penalty_rule()
    assert (rule.reduce_late, rule.half_within_days, rule.daily_within_days) == (True, 90, 15)
    assert charges.penalty(25000, due, rule, paid_on=due + timedelta(days=70)).cents == 3125  # half of 25%
    cs.save_policy(db.session, service, {"penalty_half_within_days": 60, "penalty_daily_within_days": 20},
                   actor="user:1")
    rule = cs.policy_for(db.session, service).penalty_rule()
    assert charges.penalty(25000, due, rule, paid_on=due + timedelta(days=70)).cents == 6250  # beyond 60: full
    assert charges.penalty(25000, due, rule, paid_on=due + timedelta(days=20)).cents == 3125  # 20/20 of the half
    cs.save_policy(db.session, service, {"penalty_reduce_late": False}, actor="user:1")
    rule = cs.policy_for(db.session, service).penalty_rule()
    assert charges.penalty(25000, due, rule, paid_on=due + timedelta(days=5)).cents == 6250


def test_the_engine_tests_use_the_table_the_migration_seeds():
    assert [r.effective_from.year for r in RATES] == [y for y, _p, _d in cs.SEED_RATES]
