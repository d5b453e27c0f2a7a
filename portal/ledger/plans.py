"""Arithmetic of installment plans: splitting amounts to the cent and spacing due dates a month apart."""

import calendar
from datetime import date


def split_evenly(total_cents: int, count: int) -> list[int]:
    """Split ``total_cents`` into ``count`` equal parts; the leftover cents go to the first part."""
    if count < 1:
        raise ValueError("count must be positive")
    base, rest = divmod(total_cents, count)
    return [base + rest] + [base] * (count - 1)


def split_by_ratio(total_cents: int, weights: list[int]) -> list[int]:
    """Split ``total_cents`` in proportion to ``weights`` (largest remainder; ties go to the earlier weight).

    The parts always add up to ``total_cents`` exactly, and the result depends only on the inputs.
    """
    whole = sum(weights)
    if whole <= 0 or any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative with a positive sum")
    shares = [total_cents * w // whole for w in weights]
    remainders = [total_cents * w % whole for w in weights]
    left = total_cents - sum(shares)
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        shares[i] += 1
    return shares


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, or the last day of that month when it is shorter."""
    years, month0 = divmod(day.month - 1 + months, 12)
    year, month = day.year + years, month0 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def monthly_due_dates(first: date, count: int) -> list[date]:
    """``count`` due dates one month apart, starting at ``first`` (the day of month is kept when it exists)."""
    return [add_months(first, n) for n in range(count)]
