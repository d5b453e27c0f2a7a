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
    assert len(statements) == 2
    for statement in statements:
        assert "FROM cashflow_totals" in statement
        assert not any(name in statement for name in ("positions", "payment_options", "receipts", "reported_"))


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


# --- The dashboard ------------------------------------------------------------------------------------------------


FLOW = "2026-12-01BCITITMM-0042"
UNKNOWN_IUV = "01999999999999999"


def paid_and_reported(creditor, service, make_service, make_position) -> dict:
    """This week: a TARI notice of 42,50 € due today paid now (its webhook, if any, goes out), an IMU one of 12,00 €
    due today, unpaid, and a flow crediting the TARI payment and 9,99 € we have no receipt for (an anomaly)."""
    imu = make_service(code="IMU", name="IMU - Imposta municipale", taxonomy_code="9/0101100IM/")
    tari = make_position(amount=4250, due=date.today())
    make_position(amount=1200, due=date.today(), service=imu)
    ledger.transition(db.session, tari, S.PUBLISHED, actor="test")
    db.session.commit()
    receipt = record_receipt(db.session, CreditorRef.of(creditor), receipt_for(tari.single_option, payment_at=utcnow()),
                             source="paSendRTV2", raw_xml="<r/>").receipt
    db.session.commit()
    lines = lines_for((receipt, tari.single_option))
    lines.append(reporting.FlowLine(index=2, iuv=UNKNOWN_IUV, iur="X" * 20, id_transfer=1, amount_cents=999))
    reporting.record_flow(db.session, creditor, header(lines, fdr=FLOW, regulation_date=date.today()), lines)
    db.session.commit()
    return {"tari": service, "imu": imu}


@pytest.fixture
def collected(creditor, service, make_service, make_position):
    return paid_and_reported(creditor, service, make_service, make_position)


def section(html: str) -> str:
    start = html.index('<section id="cashflow"')
    return html[start:html.index("</section>", start)]


def this_week_row(html: str) -> str:
    monday = date.today() - timedelta(days=date.today().weekday())
    start = html.index(f'<tr data-week="{monday.isoformat()}">')
    return html[start:html.index("</tr>", start)]


def test_the_dashboard_charts_the_weeks_with_their_table_and_the_last_flows(client, login, make_user, collected):
    login(make_user("admin", role="admin"))
    html = section(client.get("/officer/").get_data(as_text=True))
    assert 'role="img"' in html
    assert 'aria-labelledby="cashflow-chart-title" aria-describedby="cashflow-chart-desc"' in html
    assert "<title id=\"cashflow-chart-title\">Incassi per settimana: tutti i servizi</title>" in html
    desc = html[html.index("<desc"):html.index("</desc>")]
    assert "dovuto 54,50\u00a0€" in desc
    assert "incassato per data di pagamento 42,50\u00a0€ (78% del dovuto)" in desc
    assert "riversato dai PSP per data di regolamento 42,50\u00a0€" in desc
    week = this_week_row(html)
    assert [cell for cell in ("54,50", "42,50", "42,50") if cell in week] == ["54,50", "42,50", "42,50"]
    assert html.count("<g data-week=") == cashflow.WEEKS
    imu_row = html[html.index('<tr data-service="IMU">'):]
    assert "12,00\u00a0€" in imu_row.split("</tr>")[0]
    assert "0%" in imu_row.split("</tr>")[0]  # nothing of it collected
    flows = html[html.index('data-testid="last-flows"'):]
    assert FLOW in flows
    assert "Banca di Prova" in flows
    assert "text-danger fw-bold\" data-testid=\"flow-difference\">9,99\u00a0€" in flows


def test_the_chart_of_one_service_and_its_htmx_answer(client, login, make_user, collected):
    login(make_user("admin", role="admin"))
    imu = collected["imu"].id
    html = section(client.get(f"/officer/?service_id={imu}").get_data(as_text=True))
    assert "Incassi per settimana: IMU - Imposta municipale" in html
    assert f'<option value="{imu}" selected>' in html
    week = this_week_row(html)
    assert "12,00\u00a0€" in week
    assert "42,50" not in week
    assert '<tr data-service="TARI">' in html  # the per-service table keeps every service
    fragment = client.get(f"/officer/?service_id={imu}", headers={"HX-Request": "true", "HX-Target": "cashflow"})
    body = fragment.get_data(as_text=True)
    assert body.lstrip().startswith('<section id="cashflow"')
    assert "<html" not in body
    assert "Incassi per settimana: IMU - Imposta municipale" in body


def test_an_officer_sees_the_collections_of_their_services_only(client, login, make_user, collected):
    login(make_user("imu", role="operator", services=[collected["imu"]]))
    # Another service's id in the address changes nothing: the chart stays on the officer's services.
    html = section(client.get(f"/officer/?service_id={collected['tari'].id}").get_data(as_text=True))
    assert "Incassi per settimana: tutti i servizi" in html
    assert "42,50" not in html
    assert '<tr data-service="TARI">' not in html
    assert "12,00\u00a0€" in this_week_row(html)
    flows = html[html.index('data-testid="last-flows"'):]
    assert FLOW in flows
    assert "9,99" not in flows  # a flow mixes every service's money: no amounts
    assert "da verificare" in flows
    assert "i suoi importi li vede chi ha accesso a ogni servizio" in html


def test_the_chart_draws_bars_and_the_due_line_to_scale_on_round_ticks(ctx):
    from portal.officer import cashflow as chart

    assert [chart.nice_ceiling(c) for c in (0, 399, 401, 123_456, 1_000_000)] == [400, 400, 800, 200_000, 1_000_000]
    weeks = [cashflow.Week(start=date(2026, 1, 5) + timedelta(weeks=n)) for n in range(5)]
    weeks[1].add("due", 1, 100_000)
    weeks[1].add("paid", 1, 50_000)
    weeks[2].add("regulation", 1, 100_000)
    drawn = chart.build(cashflow.Cashflow(weeks))
    assert [t.label for t in drawn.ticks] == ["0\u00a0€", "250\u00a0€", "500\u00a0€", "750\u00a0€", "1.000\u00a0€"]
    full = drawn.bottom - drawn.ticks[-1].y
    assert drawn.weeks[1].paid.height == pytest.approx(full / 2)
    assert drawn.weeks[2].regulation.height == pytest.approx(full)
    assert drawn.weeks[0].paid.height == 0
    assert drawn.weeks[1].regulation.x > drawn.weeks[1].paid.x + drawn.weeks[1].paid.width  # side by side
    assert drawn.due_path.count(" V ") == 4  # one step per week after the first
    assert f"V {drawn.ticks[-1].y}" in drawn.due_path
    assert [(m.label, m.year) for m in drawn.months] == [("gen", "2026"), ("feb", None)]
    assert "Settimana dal 12/01 al 18/01/2026: dovuto 1.000,00\u00a0€" in drawn.weeks[1].label
