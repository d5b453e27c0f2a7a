"""The interest and penalty engine against the digest's worked examples (§1.10 A–D), to the cent."""

from datetime import date
from decimal import Decimal

import pytest

from portal.collections import charges
from portal.collections.charges import AssessmentPolicy, ChargeError, PenaltyRule, Rate

#: domain-digest.md §1.1 (2013 kept 2.50%: no row).
RATES = [Rate(date(y, 1, 1), Decimal(p)) for y, p in (
    (2010, "1.00"), (2011, "1.50"), (2012, "2.50"), (2014, "1.00"), (2015, "0.50"), (2016, "0.20"), (2017, "0.10"),
    (2018, "0.30"), (2019, "0.80"), (2020, "0.05"), (2021, "0.01"), (2022, "1.25"), (2023, "5.00"), (2024, "2.50"),
    (2025, "2.00"), (2026, "1.60"))]


def test_example_a_interest_at_divisor_365():
    result = charges.interest(25000, date(2023, 5, 31), date(2026, 11, 25), RATES)
    assert result.cents == 2220
    assert result.days == 1274
    assert [(s.days, s.percent) for s in result.segments] == [
        (214, Decimal("5.00")), (366, Decimal("2.50")), (365, Decimal("2.00")), (329, Decimal("1.60"))]


def test_example_a_rounds_only_the_total():
    result = charges.interest(25000, date(2023, 5, 31), date(2026, 11, 25), RATES)
    assert sum(charges.to_cents(s.cents) for s in result.segments) == 2221  # what rounding each segment gives
    assert result.cents == 2220


def test_example_a_with_the_leap_divisor():
    assert charges.interest(25000, date(2023, 5, 31), date(2026, 11, 25), RATES, divisor="leap").cents == 2218


@pytest.mark.parametrize(("spread", "cents"), [(1, 3093), (3, 4838), ("-3", 293)])
def test_example_a_with_a_spread(spread, cents):
    assert charges.interest(25000, date(2023, 5, 31), date(2026, 11, 25), RATES, spread=Decimal(spread)).cents \
        == cents


def test_a_spread_beyond_three_points_is_refused():
    with pytest.raises(ChargeError, match="-3 e \\+3"):
        charges.interest(25000, date(2023, 5, 31), date(2024, 1, 1), RATES, spread=Decimal("3.5"))


def test_a_negative_rate_counts_as_zero():
    # 2021: 0.01% − 1 point would be negative.
    assert charges.interest(100000, date(2020, 12, 31), date(2021, 12, 31), RATES, spread=-1).cents == 0


def test_a_year_without_a_decree_keeps_the_previous_rate():
    result = charges.interest(100000, date(2012, 12, 31), date(2013, 12, 31), RATES)
    assert [s.percent for s in result.segments] == [Decimal("2.50")]
    assert result.cents == 2500


def test_leap_divisor_splits_a_year_without_a_rate_change():
    result = charges.interest(36600, date(2011, 12, 31), date(2013, 12, 31), RATES, divisor="leap")
    assert [(s.days, s.divisor) for s in result.segments] == [(366, 366), (365, 365)]
    assert result.cents == charges.to_cents(Decimal(36600) * Decimal("0.025") * 2)


def test_no_interest_when_paid_on_the_due_date():
    result = charges.interest(25000, date(2026, 3, 31), date(2026, 3, 31), RATES)
    assert (result.cents, result.days) == (0, 0)


def test_a_period_before_the_table_is_refused():
    with pytest.raises(ChargeError, match="Nessun tasso"):
        charges.interest(25000, date(2008, 1, 1), date(2010, 6, 1), RATES)


def test_an_unknown_divisor_is_refused():
    with pytest.raises(ChargeError):
        charges.interest(25000, date(2023, 1, 1), date(2023, 6, 1), RATES, divisor="360")


# --- Penalties -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("due", "cents"), [(date(2023, 5, 31), 7500), (date(2024, 8, 31), 7500),
                                            (date(2024, 9, 1), 6250)])
def test_omitted_payment_penalty_changes_for_violations_from_september_2024(due, cents):
    assert charges.penalty(25000, due, PenaltyRule()).cents == cents


@pytest.mark.parametrize(("late", "old", "new"), [(1, 250, 208), (10, 2500, 2083), (15, 3750, 3125),
                                                  (16, 3750, 3125), (90, 3750, 3125), (91, 7500, 6250)])
def test_late_payment_penalty_is_reduced_by_days_late(late, old, new):
    from datetime import timedelta

    for due, cents in ((date(2023, 5, 31), old), (date(2025, 5, 31), new)):
        assert charges.penalty(25000, due, PenaltyRule(), paid_on=due + timedelta(days=late)).cents == cents


@pytest.mark.parametrize(("rule", "late", "cents"), [
    (PenaltyRule(half_within_days=60), 61, 6250), (PenaltyRule(half_within_days=60), 60, 3125),
    (PenaltyRule(daily_within_days=10), 5, 1563), (PenaltyRule(daily_within_days=10), 10, 3125),
    (PenaltyRule(daily_within_days=10), 11, 3125), (PenaltyRule(reduce_late=False), 1, 6250),
    (PenaltyRule(daily_within_days=0), 1, 3125), (PenaltyRule(half_within_days=0, daily_within_days=0), 1, 6250)])
def test_the_reductions_by_days_late_follow_the_service_settings(rule, late, cents):
    """25% base (due 2025): a day-by-day reduction of 1/N of the half reaches the half on its N-th day."""
    from datetime import timedelta

    due = date(2025, 5, 31)
    result = charges.penalty(25000, due, rule, paid_on=due + timedelta(days=late))
    assert result.cents == cents
    if 0 < late <= rule.daily_within_days and rule.reduce_late:
        assert f"1/{rule.daily_within_days} della metà" in result.explanation


def test_fixed_penalty_and_caps():
    assert charges.penalty(25000, date(2025, 1, 1), PenaltyRule(kind="fixed", fixed_cents=5000)).cents == 5000
    assert charges.penalty(1000, date(2025, 1, 1), PenaltyRule(min_cents=5000)).cents == 5000
    assert charges.penalty(10**8, date(2025, 1, 1), PenaltyRule(max_cents=100000)).cents == 100000
    assert charges.penalty(25000, date(2025, 1, 1), PenaltyRule(kind="none")).cents == 0


def test_example_c_ravvedimento_new_regime():
    due, paid = date(2024, 12, 2), date(2025, 1, 11)
    assert charges.ravvedimento_penalty(25000, due, paid, PenaltyRule()).cents == 347
    assert charges.interest(25000, due, paid, RATES).cents == 65


def test_example_c_ravvedimento_sprint():
    due, paid = date(2025, 3, 1), date(2025, 3, 11)
    assert charges.ravvedimento_penalty(25000, due, paid, PenaltyRule()).cents == 208
    assert charges.interest(25000, due, paid, RATES).cents == 14


@pytest.mark.parametrize(("late", "old_cents", "new_cents"), [(20, 375, 313), (60, 417, 347), (200, 938, 781),
                                                              (500, 1071, 893), (1000, 1250, 893)])
def test_ravvedimento_tiers_old_and_new_regime(late, old_cents, new_cents):
    from datetime import timedelta

    old_due, new_due = date(2021, 5, 31), date(2024, 12, 31)
    assert charges.ravvedimento_penalty(25000, old_due, old_due + timedelta(days=late), PenaltyRule()).cents \
        == old_cents
    assert charges.ravvedimento_penalty(25000, new_due, new_due + timedelta(days=late), PenaltyRule()).cents \
        == new_cents


# --- Example B: the assessment --------------------------------------------------------------------------------

POLICY_B = AssessmentPolicy()  # spread 0, 30%/25%, raccomandata A/R 7,83 €, 60 days, c.802 +2, c.803 3%/6%


def test_example_b_due_within_the_appeal_deadline():
    base = charges.assessment(25000, date(2023, 5, 31), date(2026, 2, 27), RATES, POLICY_B)
    assert [(line.code, line.cents) for line in base.lines] == [
        ("tax", 25000), ("penalty", 7500), ("interest", 1923), ("notification", 783)]
    assert base.cents == 35206


def test_example_b_due_when_paid_late():
    base = charges.assessment(25000, date(2023, 5, 31), date(2026, 2, 27), RATES, POLICY_B)
    late = charges.due_on(base, 25000, date(2026, 3, 2), date(2026, 11, 25), RATES, POLICY_B)
    assert late.amount("late_interest") == 439
    assert late.amount("collection") == 2065
    assert late.cents == 37710


def test_example_b_dates_and_the_three_percent_window():
    assert charges.enforceable_from(date(2026, 3, 2), POLICY_B) == date(2026, 5, 2)
    base = charges.assessment(25000, date(2023, 5, 31), date(2026, 2, 27), RATES, POLICY_B)
    assert charges.due_on(base, 25000, date(2026, 3, 2), date(2026, 5, 1), RATES, POLICY_B).cents == 35206
    on_time = charges.due_on(base, 25000, date(2026, 3, 2), date(2026, 7, 1), RATES, POLICY_B)
    assert on_time.amount("collection") == 1033
    assert charges.due_on(base, 25000, date(2026, 3, 2), date(2026, 7, 2), RATES, POLICY_B).amount("collection") \
        == 2065


def test_collection_charges_are_capped():
    base = charges.Breakdown((charges.Line("tax", "Imposta", 10**8, ""),))
    late = charges.due_on(base, 10**8, date(2026, 3, 2), date(2027, 1, 1), RATES, POLICY_B)
    assert late.amount("collection") == 60000


def test_every_line_explains_itself():
    base = charges.assessment(25000, date(2023, 5, 31), date(2026, 2, 27), RATES, POLICY_B)
    text = {line.code: line.explanation for line in base.lines}
    assert "30%" in text["penalty"]
    assert "31/08/2024" in text["penalty"]
    assert "214 gg al 5%" in text["interest"]


# --- Example D: traffic fines ---------------------------------------------------------------------------------


def test_example_d_semester_surcharge_both_conventions():
    assert charges.semester_surcharge(8650, date(2025, 5, 10), date(2026, 11, 25)) == (3, 2595)
    assert charges.semester_surcharge(8650, date(2025, 5, 10), date(2026, 11, 25), convention="started") == (4, 3460)


def test_split_by_shares_adds_up():
    assert charges.split_by_shares(7500, [23810, 1190]) == [7143, 357]
    assert sum(charges.split_by_shares(1001, [1, 1, 1])) == 1001
