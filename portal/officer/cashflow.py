"""The dashboard's *collections at a glance*: the weekly chart (server-rendered SVG, no script) of what fell due, what
was paid and what the PSPs credited, its figures as a table, and the reconciliation of the last flows.

The figures come from :mod:`portal.ledger.cashflow` (two grouped reads of the summary); this module only lays them
out: the coordinates of each bar and of the due line, the axis ticks and the month labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from flask_babel import format_date
from flask_babel import gettext as _

from portal.ledger import cashflow, reporting
from portal.ledger.cashflow import Cashflow, Week
from portal.money import format_euro

#: The drawing's own units (the SVG scales to its box); room for the euro ticks on the left, the months below.
WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 84, 8, 12, 40
TICKS = 4
#: Where the two bars of a week sit in its slot (fractions of the slot's width).
PAID_AT, REGULATION_AT, BAR_WIDTH = 0.12, 0.52, 0.36


@dataclass(frozen=True)
class Bar:
    """One bar: position and size in the drawing's units."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class WeekShape:
    """The two bars of one week and the text a pointer shows over it."""

    week: Week
    paid: Bar
    regulation: Bar
    label: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class MonthLabel:
    x: float
    label: str
    #: The year, under the month, on the first label and on January's.
    year: str | None = None


@dataclass(frozen=True)
class Chart:
    """Everything the template draws."""

    width: int
    height: int
    left: float
    right: float
    bottom: float
    weeks: list[WeekShape]
    #: The step line of what fell due, as an SVG path.
    due_path: str
    ticks: list[Tick]
    months: list[MonthLabel]


def nice_ceiling(cents: int) -> int:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten, in whole euros, that is at least ``cents`` / ``TICKS``
    per tick, times ``TICKS``: axis ticks on round amounts."""
    step_needed = max(cents, 100 * TICKS) / TICKS
    power = 100
    while True:
        for factor in (1, 2, 2.5, 5):
            if factor * power >= step_needed:
                return int(factor * power * TICKS)
        power *= 10


def euro_tick(cents: int) -> str:
    """``12.500 €``: a tick's amount without the cents when it has none."""
    text = format_euro(cents)
    return text.replace(",00", "") if cents % 100 == 0 else text


def week_label(week: Week) -> str:
    """The sentence a pointer shows over a week (the table says the same)."""
    return _("Settimana dal %(start)s al %(end)s: dovuto %(due)s, incassato %(paid)s, riversato %(regulation)s",
             start=week.start.strftime("%d/%m"), end=week.end.strftime("%d/%m/%Y"), due=format_euro(week.due_cents),
             paid=format_euro(week.paid_cents), regulation=format_euro(week.regulation_cents))


def build(flow: Cashflow) -> Chart:
    """Lay out ``flow``'s weeks: a bar for what was paid and one for what was credited, the due line over them."""
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_ceiling(max((max(w.due_cents, w.paid_cents, w.regulation_cents) for w in flow.weeks), default=0))
    slot = plot_width / len(flow.weeks)
    base = TOP + plot_height

    def y(cents: int) -> float:
        return round(base - cents * plot_height / top, 2)

    def bar(x: float, cents: int) -> Bar:
        return Bar(round(x, 2), y(cents), round(slot * BAR_WIDTH, 2), round(base - y(cents), 2))

    shapes, path, months = [], [], []
    previous: date | None = None
    for n, week in enumerate(flow.weeks):
        x = LEFT + n * slot
        shapes.append(WeekShape(week, bar(x + slot * PAID_AT, week.paid_cents),
                                bar(x + slot * REGULATION_AT, week.regulation_cents), week_label(week)))
        path.append(f"V {y(week.due_cents)}" if n else f"M {x:.2f} {y(week.due_cents)}")
        path.append(f"H {x + slot:.2f}")
        starts_month = week.start.month != previous.month if previous else week.start.day <= 7
        if starts_month and x + 40 <= WIDTH:  # a label that would run off the right edge is left out
            year = str(week.start.year) if not months or week.start.month == 1 else None
            months.append(MonthLabel(round(x, 2), format_date(week.start, "MMM"), year))
        previous = week.start
    ticks = [Tick(y(top * i // TICKS), euro_tick(top * i // TICKS)) for i in range(TICKS + 1)]
    return Chart(WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, base, shapes, " ".join(path), ticks, months)


def format_share(share: float | None) -> str:
    """``78%``: what was paid of what fell due; ``—`` when nothing fell due."""
    return "—" if share is None else f"{share:.0%}"


def summary(flow: Cashflow, service_name: str | None) -> str:
    """The chart's description for a screen reader: the period, its totals, and where the week-by-week figures are."""
    total = flow.total
    return _("%(scope)s, dal %(start)s al %(end)s: dovuto %(due)s, incassato per data di pagamento %(paid)s "
             "(%(share)s del dovuto), riversato dai PSP per data di regolamento %(regulation)s. "
             "Le cifre di ogni settimana sono nella tabella dei dati del grafico.",
             scope=service_name or _("Tutti i servizi"), start=flow.start.strftime("%d/%m/%Y"),
             end=flow.end.strftime("%d/%m/%Y"), due=format_euro(total.due_cents), paid=format_euro(total.paid_cents),
             share=format_share(total.paid_share), regulation=format_euro(total.regulation_cents))


def context(session, creditor_id: int, *, today: date, scope: set[int] | None, services: list,
            service_id: int | None) -> dict:
    """What the dashboard's collections section shows: the chart of one visible service (or all), the per-service
    figures, and the last flows (their amounts only for who sees every service: a flow mixes them all)."""
    visible = [s for s in services if scope is None or s.id in scope]
    chosen = next((s for s in visible if s.id == service_id), None)
    flow = cashflow.weekly(session, creditor_id, today=today, scope=scope, service_id=chosen.id if chosen else None)
    return {"cashflow": flow, "chart": build(flow), "chart_summary": summary(flow, chosen.name if chosen else None),
            "cashflow_services": visible, "cashflow_service": chosen,
            "last_flows": reporting.list_flows(session, creditor_id, limit=5), "flow_amounts": scope is None,
            "share": format_share}
