"""Collections at a glance: due, paid and credited money per service and day, kept by triggers in the transaction of
each change, on PostgreSQL and SQLite, and read per week without touching the ledger's tables."""

from datetime import UTC, date, datetime, time, timedelta

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.imports import bulk
from portal.ledger import cashflow, changes, reporting
from portal.ledger import services as ledger
from portal.ledger.inputs import validate_position
from portal.ledger.models import CashflowTotal, PaymentOption, Position, Service
from portal.ledger.payments import CreditorRef, record_receipt
from portal.ledger.status import OptionStatus, PositionStatus
from portal.ledger.types import ROME, utcnow
from tests.conftest import IBAN_COMUNE, position_input
from tests.test_ledger_payments import receipt_for
from tests.test_reporting import header, lines_for
from tests.test_sqlite import sqlite_app

S = PositionStatus
OS = OptionStatus
REVISION = "2e38df6531af"
TRIGGERS = {"cashflow_options_insert", "cashflow_options_update", "cashflow_options_delete",
            "cashflow_lines_insert", "cashflow_lines_update", "cashflow_lines_delete"}
#: Instants whose Rome day is not their UTC day, or that sit on a change of summer time.
SUMMER_NIGHT = datetime(2026, 7, 14, 22, 30, tzinfo=UTC)  # 00:30 on 15 July in Rome
SPRING_FORWARD = datetime(2026, 3, 29, 0, 59, tzinfo=UTC)  # 01:59 CET, a minute before the clocks go forward
AUTUMN_BACK = datetime(2026, 10, 24, 22, 30, tzinfo=UTC)  # 00:30 CEST on 25 October, the night the clocks go back


def exact(session) -> None:
    """The totals hold what the ledger says, key by key."""
    session.expire_all()
    assert cashflow.kept(session) == cashflow.from_ledger(session)


def due_of(session, position) -> dict[date, int]:
    """The due contributions on the due dates of one position's options (the positions here have dates of their own)."""
    figures = cashflow.from_ledger(session)
    dates = {o.due_date for o in position.options}
    return {day: cents for (_, _, basis, day), (_, cents) in figures.items() if basis == "due" and day in dates}


def churn(session, creditor, service) -> None:
    """Every way money moves: receipts (late ones, at night, across summer time), an abatement, a payment at the
    counter and its reversal, a cancellation, statements changing several options at once, a rolled-back change,
    a reporting flow and its revision, a bulk import; the totals are checked after each step."""
    ref = CreditorRef.of(creditor)
    today = date.today()

    def make(**kwargs) -> Position:
        position, _ = ledger.create_position(session, creditor, position_input(service, **kwargs), actor="test",
                                             enqueue_sync=False)
        return position

    both = make(amount=3000, installments=(1000, 1000, 1000), due=today + timedelta(days=10))
    plan = make(amount=0, installments=(1500, 1500), due=today + timedelta(days=6))
    single = make(amount=4250, installments=(2125, 2125), due=today + timedelta(days=3))
    spare = make(amount=999, installments=(500, 499), due=today + timedelta(days=47))
    session.commit()
    exact(session)
    # Its first installment fell due weeks ago (dates moved by a script).
    session.execute(sa.update(PaymentOption).where(PaymentOption.position_id == plan.id).values(
        due_date=sa.case(*((PaymentOption.id == o.id, o.due_date - timedelta(days=25)) for o in plan.options))))
    session.commit()
    exact(session)
    # A position offering both ways counts once, on the single payment's date.
    assert due_of(session, both) == {today + timedelta(days=10): 3000}
    for position in (both, plan, single, spare):
        ledger.transition(session, position, S.PUBLISHED, actor="test")
    session.commit()

    receipts = {
        "single": record_receipt(session, ref, receipt_for(single.single_option, payment_at=SUMMER_NIGHT),
                                 source="paSendRTV2", raw_xml="<r/>").receipt,
        # The first installment paid: the single payment is cancelled, the plan counts from now on.
        "both": record_receipt(session, ref, receipt_for(both.installments[0], payment_at=SPRING_FORWARD),
                               source="paSendRTV2", raw_xml="<r/>").receipt,
        # A late receipt: paid three weeks ago, heard of now.
        "plan": record_receipt(session, ref, receipt_for(plan.installments[0], payment_at=utcnow() - timedelta(
            days=21)), source="receipts-api", raw_xml="<r/>").receipt,
    }
    # A second payment of an option already paid pays nothing: money to give back, not collected.
    record_receipt(session, ref, receipt_for(single.installments[0], payment_at=AUTUMN_BACK), source="paSendRTV2",
                   raw_xml="<r/>")
    session.commit()
    exact(session)
    assert due_of(session, both) == {o.due_date: 1000 for o in both.installments}
    paid_days = {day for (_, _, basis, day) in cashflow.kept(session) if basis == "paid"}
    assert {date(2026, 7, 15), date(2026, 3, 29)} <= paid_days

    changes.abate_position(session, both, 500, reason="Sgravio parziale", actor="test")
    session.commit()
    exact(session)

    # A payment at the counter, outside pagoPA (no receipt): the option is paid, then reversed as a mistake.
    counter = plan.installments[1]
    counter.status, counter.paid_at = OS.PAID, AUTUMN_BACK
    plan.paid_cents = plan.paid_cents + counter.amount_cents
    session.commit()
    exact(session)
    counter.status, counter.paid_at = OS.UNPAID, None
    plan.paid_cents = plan.paid_cents - counter.amount_cents
    session.commit()
    exact(session)

    ledger.cancel_position(session, spare, reason="Errore di emissione", actor="test")
    session.commit()
    exact(session)
    assert due_of(session, spare) == {}

    # One statement changing every option of a position at once (PostgreSQL runs row triggers only after the whole
    # statement, when each sees its siblings already changed): open again, then everything cancelled.
    for status in (OS.UNPAID, OS.CANCELLED, OS.UNPAID):
        session.execute(sa.update(PaymentOption).where(PaymentOption.position_id == spare.id).values(status=status))
        session.commit()
        exact(session)
    session.execute(sa.update(PaymentOption).where(PaymentOption.position_id == spare.id)
                    .values(due_date=today, amount_cents=PaymentOption.amount_cents + 1))
    session.commit()
    exact(session)

    # A script's multi-row insert of a position's options (single and plan in one statement), then their deletion.
    position_id = session.execute(sa.insert(Position).values(
        creditor_id=creditor.id, service_id=service.id, debtor_id=both.debtor_id, iupd="SCRIPT-1", subject="Script",
        status=S.PUBLISHED, amount_cents=800, paid_cents=0, due_date=today).returning(Position.id)).scalar_one()
    session.execute(sa.insert(PaymentOption), [
        {"position_id": position_id, "creditor_id": creditor.id, "kind": kind, "installment_number": number,
         "iuv": f"0199{n:013d}", "notice_number": f"30199{n:013d}", "amount_cents": amount,
         "due_date": today + timedelta(days=n), "description": "Script", "status": OS.UNPAID}
        for n, (kind, number, amount) in enumerate((("single", None, 800), ("installment", 1, 400),
                                                    ("installment", 2, 400)), start=1)])
    session.commit()
    exact(session)
    session.execute(sa.delete(PaymentOption).where(PaymentOption.position_id == position_id,
                                                   PaymentOption.kind == "single"))
    session.commit()
    exact(session)
    session.execute(sa.delete(PaymentOption).where(PaymentOption.position_id == position_id))
    session.commit()
    exact(session)

    before = cashflow.kept(session)
    single.single_option.amount_cents = 1
    session.flush()
    session.rollback()  # a change rolled back takes its delta rows with it
    assert cashflow.kept(session) == before

    # Reporting: a flow credits two receipts; its revision drops one (withdrawn, no longer credited).
    session.expire_all()
    single, both = session.get(Position, single.id), session.get(Position, both.id)
    lines = lines_for((receipts["single"], single.single_option), (receipts["both"], both.installments[0]))
    lines.append(reporting.FlowLine(index=len(lines) + 1, iuv="01999999999999999", iur="X" * 20, id_transfer=1,
                                    amount_cents=999))  # no receipt of ours: an anomaly, not credited to a service
    reporting.record_flow(session, creditor, header(lines, regulation_date=date(2026, 7, 20)), lines)
    session.commit()
    exact(session)
    credited = {k: v for k, v in cashflow.kept(session).items() if k[2] == "regulation"}
    assert credited == {(creditor.id, service.id, "regulation", date(2026, 7, 20)): (2, 4250 + 1000)}
    reporting.record_flow(session, creditor, header(lines[:1], revision=2, regulation_date=date(2026, 7, 20)),
                          lines[:1])
    session.commit()
    exact(session)
    credited = {k: v for k, v in cashflow.kept(session).items() if k[2] == "regulation"}
    assert credited == {(creditor.id, service.id, "regulation", date(2026, 7, 20)): (1, 4250)}

    # A bulk import (COPY on PostgreSQL).
    batch = [position_input(service, amount=2000 + n, installments=(1000, 1000 + n), external_id=f"IMP-{n}",
                            source="import") for n in range(5)]
    for data in batch:
        validate_position(data, today=today, creditor_fiscal_code=creditor.fiscal_code, default_iban=IBAN_COMUNE,
                          default_taxonomy=service.taxonomy_code)
    bulk.write_new_positions(session, bulk.WriteContext(creditor=creditor, services={service.id: service},
                                                        import_id=None, actor="test"), batch)
    session.commit()
    exact(session)


def fold_and_check(session) -> None:
    rows = session.scalar(sa.select(sa.func.count()).select_from(CashflowTotal))
    folded = cashflow.compact(session)
    session.commit()
    assert folded > 0
    assert session.scalar(sa.select(sa.func.count()).select_from(CashflowTotal)) == rows - folded
    exact(session)
    assert cashflow.compact(session) == 0


def test_the_totals_follow_every_change_on_postgresql(ctx, creditor, service):
    churn(db.session, creditor, service)
    fold_and_check(db.session)
    kept = cashflow.kept(db.session)
    cashflow.rebuild(db.session)
    db.session.commit()
    assert cashflow.kept(db.session) == kept


def test_the_totals_follow_every_change_on_sqlite(tmp_path):
    from tests.test_concurrent_receipts import seed

    with sqlite_app(tmp_path / "paybox.db"):
        seed(db.session)
        creditor = db.session.scalar(sa.select(Service)).creditor
        churn(db.session, creditor, db.session.scalar(sa.select(Service)))
        fold_and_check(db.session)
        triggers = {r[0] for r in db.session.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))}
        assert triggers >= TRIGGERS


def test_the_payment_day_is_the_day_in_rome_on_both_databases(tmp_path, ctx, creditor, service, make_position):
    """Every half hour across both changes of summer time: the triggers' day equals Python's Europe/Rome day."""
    instants = [datetime(2026, 3, 28, 20, tzinfo=UTC) + timedelta(minutes=30 * n) for n in range(16)]
    instants += [datetime(2026, 10, 24, 20, tzinfo=UTC) + timedelta(minutes=30 * n) for n in range(16)]

    def pay_all(session, creditor, service):
        position, _ = ledger.create_position(session, creditor, position_input(
            service, amount=0, installments=(100,) * len(instants)), actor="test", enqueue_sync=False)
        for option, at in zip(position.installments, instants, strict=True):
            option.status, option.paid_at = OS.PAID, at
        session.commit()
        paid = {day: n for (_, _, basis, day), (n, _) in cashflow.kept(session).items() if basis == "paid"}
        expected = {}
        for at in instants:
            expected[at.astimezone(ROME).date()] = expected.get(at.astimezone(ROME).date(), 0) + 1
        assert paid == expected
        assert len(expected) == 4  # the night before and after each change

    pay_all(db.session, creditor, service)
    from tests.test_concurrent_receipts import seed

    with sqlite_app(tmp_path / "paybox.db"):
        seed(db.session)
        lite_service = db.session.scalar(sa.select(Service))
        db.session.execute(sa.delete(CashflowTotal))
        pay_all(db.session, lite_service.creditor, lite_service)


def test_weeks_sum_the_days_per_service_within_the_scope(ctx, creditor, service, make_service, make_position):
    imu = make_service(code="IMU", name="IMU", taxonomy_code="9/0101100IM/")
    today = date.today() + timedelta(days=30)  # every due date below can still be entered
    monday = today - timedelta(days=today.weekday())
    tari = make_position(amount=1000, due=monday)
    make_position(amount=2500, due=monday + timedelta(days=6))  # Sunday: the same week
    make_position(amount=700, due=monday - timedelta(days=1), service=imu)  # the Sunday before
    early = make_position(amount=333, due=monday)
    early.single_option.due_date = cashflow.first_week(today) - timedelta(days=1)  # before the period
    option = tari.single_option
    # 00:30 on Monday in Rome is still Sunday in UTC.
    option.status, option.paid_at = OS.PAID, datetime.combine(monday, time(0, 30), tzinfo=ROME).astimezone(UTC)
    db.session.commit()

    flow = cashflow.weekly(db.session, creditor.id, today=today)
    assert len(flow.weeks) == cashflow.WEEKS
    assert flow.weeks[-1].start == monday
    assert flow.end == monday + timedelta(days=6)
    last, previous = flow.weeks[-1], flow.weeks[-2]
    assert (last.due_count, last.due_cents, last.paid_count, last.paid_cents) == (2, 3500, 1, 1000)
    assert (previous.due_cents, previous.paid_cents) == (700, 0)
    assert flow.total.due_cents == 4200  # the 333 fell due before the period
    assert flow.by_service[service.id].due_cents == 3500
    assert flow.by_service[service.id].paid_share == pytest.approx(1000 / 3500)
    assert flow.by_service[imu.id].due_cents == 700

    only_imu = cashflow.weekly(db.session, creditor.id, today=today, service_id=imu.id)
    assert only_imu.total.due_cents == 700
    assert set(only_imu.by_service) == {service.id, imu.id}  # the table still lists every service in scope
    scoped = cashflow.weekly(db.session, creditor.id, today=today, scope={imu.id})
    assert scoped.total.due_cents == 700
    assert set(scoped.by_service) == {imu.id}
    assert cashflow.weekly(db.session, creditor.id, today=today, scope=set()).total.due_cents == 0


def test_reading_the_weeks_touches_only_the_totals(ctx, creditor, make_position):
    make_position(amount=1000)
    creditor_id = creditor.id
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        flow = cashflow.weekly(db.session, creditor_id, today=date.today() + timedelta(days=35))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)
    assert flow.total.due_cents == 1000
    assert len(statements) == 1
    assert "cashflow_totals" in statements[0]
    assert not any(name in statements[0] for name in ("positions", "payment_options", "receipts", "reported_"))


def test_the_migration_sums_what_is_there_on_postgresql(app, ctx, creditor, service):
    """Upgrading a database that already holds payments and flows fills the totals from them."""
    from flask_migrate import downgrade, upgrade

    from tests.test_sqlite import _logging_kept

    churn(db.session, creditor, service)
    expected = cashflow.from_ledger(db.session)
    db.session.remove()
    try:
        with _logging_kept():
            downgrade(revision=_down_revision())
        assert "cashflow_totals" not in sa.inspect(db.engine).get_table_names()
    finally:
        with _logging_kept():
            upgrade()
    assert cashflow.kept(db.session) == expected


def test_the_migration_sums_what_is_there_on_sqlite(tmp_path):
    from flask_migrate import downgrade, upgrade

    from tests.test_concurrent_receipts import seed
    from tests.test_sqlite import _logging_kept

    with sqlite_app(tmp_path / "paybox.db"):
        seed(db.session)
        service = db.session.scalar(sa.select(Service))
        churn(db.session, service.creditor, service)
        expected = cashflow.from_ledger(db.session)
        db.session.remove()
        with _logging_kept():
            downgrade(revision=_down_revision())
            upgrade()
        assert cashflow.kept(db.session) == expected
        assert {r[0] for r in db.session.execute(
            sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))} >= TRIGGERS


def _down_revision() -> str:
    from tests.test_migrations import _script

    return _script().get_revision(REVISION).down_revision
