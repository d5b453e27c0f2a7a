"""Read-side queries for the back office: the filtered positions list, per-citizen totals, dashboard figures.

Lists use keyset pagination on ``positions.id`` (newest first) so page 10,000 costs what page 1 costs.
"""

from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session, contains_eager

from portal.ledger import totals
from portal.ledger.identifiers import normalize_fiscal_code
from portal.ledger.models import Debtor, PaymentOption, Position, Service
from portal.ledger.notice_numbers import normalize_nav
from portal.ledger.status import OPEN_STATUSES, PositionStatus


@dataclass
class PositionFilter:
    """What an officer can filter the positions list by; empty fields do not filter."""

    service_id: int | None = None
    status: PositionStatus | None = None
    due_from: date | None = None
    due_to: date | None = None
    #: A fiscal code (exact) or the start of any word of a debtor's name.
    debtor: str | None = None
    #: An IUV (17 digits) or a notice number (18 digits, spaces allowed).
    number: str | None = None
    amount_min: int | None = None
    amount_max: int | None = None
    overdue: bool = False
    #: Only the positions created by this bulk upload (see portal.imports).
    import_id: int | None = None
    #: Service ids the officer may see (``None`` = all).
    scope: set[int] | None = field(default=None)

    def is_empty(self) -> bool:
        """Whether no filter field is set (the scope is not a filter)."""
        return not any((self.service_id, self.status, self.due_from, self.due_to, self.debtor, self.number,
                        self.amount_min is not None, self.amount_max is not None, self.overdue, self.import_id))


@dataclass
class Page:
    """One page of a keyset-paginated list."""

    items: list
    next_cursor: int | None


def matching_ids(creditor_id: int, flt: PositionFilter, today: date) -> sa.Select:
    """The ids of the matching positions, from ``positions`` alone (debtor and number filters as subqueries).

    Without joins the planner can answer it from ``ix_positions_creditor_list`` by a backwards index scan that
    tests the filters inside the index, instead of walking the primary key and reading every skipped row
    (measured in ``bench/positions_list.py``: a past due-date range on 1M positions went from 103 to 34 ms p95).
    """
    ids = sa.select(Position.id).where(Position.creditor_id == creditor_id)
    if flt.scope is not None:
        ids = ids.where(Position.service_id.in_(flt.scope or {-1}))
    if flt.service_id:
        ids = ids.where(Position.service_id == flt.service_id)
    if flt.status:
        ids = ids.where(Position.status == flt.status)
    if flt.overdue:
        ids = ids.where(Position.status.in_(OPEN_STATUSES), Position.due_date < today)
    if flt.import_id:
        ids = ids.where(Position.import_id == flt.import_id)
    if flt.due_from:
        ids = ids.where(Position.due_date >= flt.due_from)
    if flt.due_to:
        ids = ids.where(Position.due_date <= flt.due_to)
    if flt.amount_min is not None:
        ids = ids.where(Position.amount_cents >= flt.amount_min)
    if flt.amount_max is not None:
        ids = ids.where(Position.amount_cents <= flt.amount_max)
    if flt.debtor:
        text = flt.debtor.strip()
        code = normalize_fiscal_code(text)
        debtors = sa.select(Debtor.id).where(Debtor.creditor_id == creditor_id)
        if len(code) in (11, 16) and code.isascii() and code.isalnum() and any(ch.isdigit() for ch in code):
            debtors = debtors.where(Debtor.fiscal_code == code)
        else:
            # Each word typed starts a word of the name, in any order: "rossi" finds "Mario Rossi" and "Rossi
            # Mario", "donati emma" finds "Emma Donati" too.
            name = sa.func.lower(Debtor.name)
            for word in text.lower().split():
                word = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                debtors = debtors.where(
                    name.like(f"%{word}%", escape="\\"),  # served by the trigram index on PostgreSQL
                    sa.or_(name.like(f"{word}%", escape="\\"), name.like(f"% {word}%", escape="\\")),
                )
        ids = ids.where(Position.debtor_id.in_(debtors))
    if flt.number:
        digits = normalize_nav(flt.number)
        column = PaymentOption.notice_number if len(digits) == 18 else PaymentOption.iuv
        ids = ids.where(Position.id.in_(
            sa.select(PaymentOption.position_id).where(PaymentOption.creditor_id == creditor_id, column == digits)
        ))
    return ids


@dataclass(frozen=True)
class Count:
    """How many positions match: exact up to a bound, "more than the bound" beyond it (counting a million rows
    for every page would cost more than the page itself)."""

    value: int
    exact: bool


#: Matching positions counted exactly before the list says "more than".
COUNT_BOUND = 10_000


def count_positions(session: Session, creditor_id: int, flt: PositionFilter, *, bound: int | None = None,
                    today: date | None = None) -> Count:
    """How many positions match ``flt``, exactly up to ``bound`` (default :data:`COUNT_BOUND`)."""
    bound = bound or COUNT_BOUND
    ids = matching_ids(creditor_id, flt, today or date.today()).limit(bound + 1).subquery()
    found = session.scalar(sa.select(sa.func.count()).select_from(ids)) or 0
    return Count(min(found, bound), found <= bound)


def list_positions(session: Session, creditor_id: int, flt: PositionFilter, *, after: int | None = None,
                   limit: int = 50, today: date | None = None) -> Page:
    """One page of positions, newest first, starting after the position id ``after``."""
    ids = matching_ids(creditor_id, flt, today or date.today())
    if after is not None:
        ids = ids.where(Position.id < after)
    ids = ids.order_by(Position.id.desc()).limit(limit + 1)
    rows = session.scalars(
        sa.select(Position)
        .join(Position.debtor)
        .join(Position.service)
        .options(contains_eager(Position.debtor), contains_eager(Position.service))
        .where(Position.id.in_(ids.scalar_subquery()))
        .order_by(Position.id.desc())
    ).unique().all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    return Page(items=list(rows), next_cursor=rows[-1].id if has_more and rows else None)


def iter_positions(session: Session, creditor_id: int, flt: PositionFilter, *, batch: int = 1000,
                   today: date | None = None):
    """Every position matching the filter, fetched a batch at a time by keyset (for exports)."""
    after = None
    while True:
        page = list_positions(session, creditor_id, flt, after=after, limit=batch, today=today)
        yield from page.items
        if page.next_cursor is None:
            return
        after = page.next_cursor
        session.expunge_all()


@dataclass
class CitizenSummary:
    """Totals of one debtor's positions, in cents."""

    debtor: Debtor | None
    positions: list[Position]
    due_cents: int
    paid_cents: int
    overdue_cents: int
    #: Drafts kept here (not sent to pagoPA): not yet owed, shown apart.
    draft_cents: int = 0


def is_kept_draft(position: Position) -> bool:
    """A draft an officer still has to publish (not one on its way to pagoPA): nothing is owed on it yet."""
    return position.status == PositionStatus.DRAFT and position.pagopa_target == "absent"


def citizen_summary(session: Session, creditor_id: int, fiscal_code: str, *, scope: set[int] | None = None,
                    today: date | None = None) -> CitizenSummary:
    """Every position of one fiscal code (on the shared debtor or a version of it) with what is due, paid and
    overdue. The debtor shown is the shared one if a position in ``scope`` uses it, else the version of the latest
    position: data of services outside the scope is never shown."""
    today = today or date.today()
    code = normalize_fiscal_code(fiscal_code)
    debtors = sa.select(Debtor.id).where(Debtor.creditor_id == creditor_id, Debtor.fiscal_code == code)
    query = (
        sa.select(Position)
        .join(Position.service)
        .options(contains_eager(Position.service))
        .where(Position.debtor_id.in_(debtors.scalar_subquery()))
        .order_by(Position.due_date.desc(), Position.id.desc())
    )
    if scope is not None:
        query = query.where(Position.service_id.in_(scope or {-1}))
    positions = list(session.scalars(query))
    if not positions:
        return CitizenSummary(None, [], 0, 0, 0)
    shared = [p.debtor for p in positions if p.debtor.version_of_id is None]
    debtor = shared[0] if shared else max(positions, key=lambda p: p.id).debtor
    due = overdue = paid = drafts = 0
    for position in positions:
        paid += position.paid_cents
        if is_kept_draft(position):
            drafts += position.amount_cents
        elif position.status in OPEN_STATUSES:
            remaining = position.amount_cents - position.paid_cents
            due += remaining
            if position.due_date < today:
                overdue += remaining
    return CitizenSummary(debtor, positions, due, paid, overdue, drafts)


@dataclass
class StatusTotal:
    """Count and amount of positions in one status (and service)."""

    status: PositionStatus
    count: int
    amount_cents: int
    service_id: int | None = None


def dashboard_totals(session: Session, creditor_id: int, *, scope: set[int] | None = None,
                     today: date | None = None) -> dict:
    """Counts and amounts per status and per service, and the overdue totals (from :mod:`portal.ledger.totals`,
    so the cost does not grow with the number of positions)."""
    today = today or date.today()
    by_status: dict[PositionStatus, StatusTotal] = {}
    by_service: dict[int, dict[PositionStatus, StatusTotal]] = {}
    overdue_count = overdue_cents = 0
    for group in totals.groups(session, creditor_id, today=today, scope=scope):
        total = by_status.setdefault(group.status, StatusTotal(group.status, 0, 0))
        total.count += group.count
        total.amount_cents += group.amount_cents
        by_service.setdefault(group.service_id, {})[group.status] = StatusTotal(
            group.status, group.count, group.amount_cents, group.service_id)
        overdue_count += group.overdue_count
        overdue_cents += group.overdue_cents
    services = {s.id: s for s in session.scalars(sa.select(Service).where(Service.creditor_id == creditor_id))}
    return {
        "by_status": by_status,
        "by_service": {services[sid]: totals_ for sid, totals_ in by_service.items() if sid in services},
        "overdue_count": overdue_count,
        "overdue_cents": overdue_cents,
    }
