"""The dashboard's totals, kept by triggers in the same transaction as each change, on PostgreSQL and SQLite."""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger import queries, totals
from portal.ledger import services as ledger
from portal.ledger.models import Position, PositionTotal
from portal.ledger.payments import CreditorRef, record_receipt
from portal.ledger.status import PositionStatus
from tests.conftest import position_input
from tests.test_ledger_payments import receipt_for
from tests.test_sqlite import sqlite_app

S = PositionStatus
#: The migration that creates the totals and their triggers.
TOTALS_REVISION = "7a3c5e9d1f20"


def churn(session, creditor, service) -> None:
    """Every kind of change a position goes through: create, publish, pay, pay in part, cancel, bulk updates,
    an update of nothing counted, a rolled-back change; then the bulk paths of imports and scripts (see
    :func:`bulk_churn`)."""
    made = []
    for n in range(6):
        position, _ = ledger.create_position(session, creditor, position_input(service, amount=1000 * (n + 1),
                                                                             installments=(600 * (n + 1),) * 2),
                                             actor="test", enqueue_sync=False)
        made.append(position)
    session.commit()
    for position in made[:5]:
        ledger.transition(session, position, S.PUBLISHED, actor="test")
    session.commit()
    ref = CreditorRef.of(creditor)
    record_receipt(session, ref, receipt_for(made[0].single_option), source="paSendRTV2", raw_xml="<r/>")
    record_receipt(session, ref, receipt_for(made[1].installments[0]), source="paSendRTV2", raw_xml="<r/>")
    ledger.cancel_position(session, made[2], reason="Errore", actor="test")
    session.commit()
    session.execute(sa.update(Position).where(Position.id == made[3].id)
                    .values(due_date=date.today() - timedelta(days=40)))
    session.execute(sa.update(Position).where(Position.id == made[4].id).values(amount_cents=777))
    session.commit()
    before = session.scalar(sa.select(sa.func.count()).select_from(PositionTotal))
    session.execute(sa.update(Position).where(Position.id == made[4].id).values(subject="Altra causale"))
    session.commit()
    assert session.scalar(sa.select(sa.func.count()).select_from(PositionTotal)) == before  # nothing counted moved
    made[5].amount_cents = 1
    session.flush()
    session.rollback()  # a change rolled back takes its delta rows with it
    bulk_churn(session, creditor, service, made)


def bulk_churn(session, creditor, service, made) -> None:
    """Statements that bypass the ORM's unit of work: a multi-row INSERT (as the demo and bench load), one UPDATE
    moving several positions between statuses, services and due dates at once, and a DELETE (positions without
    events: the ledger itself never deletes, but a script may)."""
    from portal.ledger.models import Service

    other = Service(creditor_id=creditor.id, code="IMU", name="IMU", taxonomy_code="9/0101100IM/",
                    account_id=service.account_id)
    session.add(other)
    session.flush()
    debtor_id = made[0].debtor_id
    rows = [{"creditor_id": creditor.id, "service_id": service.id, "debtor_id": debtor_id, "iupd": f"BULK-{n}",
             "subject": f"Import {n}", "status": S.PUBLISHED, "amount_cents": 500 + n, "paid_cents": 0,
             "due_date": date.today() + timedelta(days=n - 2)} for n in range(4)]
    session.execute(sa.insert(Position), rows)
    session.commit()
    bulk = sa.select(Position.id).where(Position.iupd.like("BULK-%")).order_by(Position.id)
    ids = list(session.scalars(bulk))
    session.execute(sa.update(Position).where(Position.id.in_(ids[:3])).values(
        status=S.EXPIRED, service_id=other.id, due_date=date.today() - timedelta(days=20)))
    session.execute(sa.update(Position).where(Position.id.in_(ids[1:])).values(paid_cents=Position.amount_cents))
    session.execute(sa.update(Position).where(Position.id == ids[0]).values(service_id=service.id))  # service only
    session.commit()
    session.execute(sa.delete(Position).where(Position.id.in_(ids[2:])))
    session.commit()
    assert session.scalar(sa.select(sa.func.count()).select_from(bulk.subquery())) == 2


def figures_from_positions(session, creditor_id, today) -> tuple:
    """The dashboard's figures computed straight from the positions, as the dashboard did before the totals."""
    from portal.ledger.status import OPEN_STATUSES

    rows = session.execute(sa.select(Position.service_id, Position.status, sa.func.count(),
                                     sa.func.sum(Position.amount_cents))
                           .where(Position.creditor_id == creditor_id).group_by(Position.service_id, Position.status))
    groups = {(service_id, S(status)): (count, int(amount)) for service_id, status, count, amount in rows}
    late = session.execute(sa.select(sa.func.count(), sa.func.sum(Position.amount_cents - Position.paid_cents))
                           .where(Position.creditor_id == creditor_id, Position.status.in_(OPEN_STATUSES),
                                  Position.due_date < today)).one()
    return groups, (late[0], int(late[1] or 0))


def figures_from_totals(session, creditor_id, today) -> tuple:
    figures = queries.dashboard_totals(session, creditor_id, today=today)
    groups = {(service.id, status): (t.count, t.amount_cents)
              for service, by_status in figures["by_service"].items() for status, t in by_status.items()}
    by_status = {}
    for (_, status), (count, amount) in groups.items():
        by_status[status] = tuple(map(sum, zip(by_status.get(status, (0, 0)), (count, amount), strict=True)))
    assert {s: (t.count, t.amount_cents) for s, t in figures["by_status"].items()} == by_status
    return groups, (figures["overdue_count"], figures["overdue_cents"])


def test_totals_follow_every_change_on_postgresql(ctx, creditor, service):
    churn(db.session, creditor, service)
    assert totals.matches_positions(db.session)
    for today in (date.today(), date.today() + timedelta(days=45), date.today() + timedelta(days=400)):
        assert figures_from_totals(db.session, creditor.id, today) == figures_from_positions(
            db.session, creditor.id, today)
    assert figures_from_positions(db.session, creditor.id, date.today())[1][0] > 0  # some are overdue today
    rows = db.session.scalar(sa.select(sa.func.count()).select_from(PositionTotal))
    folded = totals.compact(db.session)
    db.session.commit()
    assert folded > 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(PositionTotal)) == rows - folded
    assert totals.matches_positions(db.session)
    assert totals.compact(db.session) == 0  # already one row per key


def test_totals_follow_every_change_on_sqlite(tmp_path):
    from portal.ledger.models import Creditor, Service
    from tests.test_concurrent_receipts import seed

    with sqlite_app(tmp_path / "paybox.db"):
        seed(db.session)
        creditor = db.session.scalar(sa.select(Creditor))
        service = db.session.scalar(sa.select(Service))
        churn(db.session, creditor, service)
        assert totals.matches_positions(db.session)
        for today in (date.today(), date.today() + timedelta(days=45)):
            assert figures_from_totals(db.session, creditor.id, today) == figures_from_positions(
                db.session, creditor.id, today)
        totals.compact(db.session)
        db.session.commit()
        assert totals.matches_positions(db.session)
        triggers = {r[0] for r in db.session.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))}
        assert {"position_totals_insert", "position_totals_update", "position_totals_delete"} <= triggers


def test_the_dashboard_reads_the_totals_not_the_positions(ctx, creditor, service, make_position):
    overdue = make_position(amount=10000)
    make_position(amount=2500)
    db.session.execute(sa.update(Position).where(Position.id == overdue.id)
                       .values(due_date=date.today() - timedelta(days=3)))
    db.session.commit()
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        figures = queries.dashboard_totals(db.session, creditor.id)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)
    assert figures["overdue_count"] == 1
    assert figures["overdue_cents"] == 10000
    assert figures["by_status"][S.DRAFT].count == 2
    assert figures["by_status"][S.DRAFT].amount_cents == 12500
    assert not any("FROM positions" in s for s in statements)
    assert overdue.status == S.DRAFT


@pytest.mark.parametrize("scope", [set(), None])
def test_scope_limits_the_totals(ctx, creditor, make_position, scope):
    make_position(amount=1000)
    figures = queries.dashboard_totals(db.session, creditor.id, scope=scope)
    assert sum(t.count for t in figures["by_status"].values()) == (0 if scope == set() else 1)


def test_the_migration_sums_the_positions_already_there(tmp_path):
    """Upgrading a database that already holds positions fills the totals from them (nothing is lost)."""
    from flask_migrate import downgrade, upgrade

    from portal.ledger.models import Creditor, PaymentOption, Service
    from portal.webhooks import events as webhook_events
    from tests.test_concurrent_receipts import seed
    from tests.test_migrations import _script
    from tests.test_sqlite import _logging_kept

    before = _script().get_revision(TOTALS_REVISION).down_revision
    with sqlite_app(tmp_path / "paybox.db"):
        with _logging_kept():
            downgrade(revision=before)
        assert "position_totals" not in sa.inspect(db.engine).get_table_names()
        # The models have the columns of later migrations: give them a stand-in while seeding.
        later = []
        for table in (Position.__table__, PaymentOption.__table__):
            there = {col["name"] for col in sa.inspect(db.engine).get_columns(table.name)}
            later += [(table.name, c) for c in table.columns if c.name not in there]
        for table_name, column in later:
            db.session.execute(sa.text(f"ALTER TABLE {table_name} ADD COLUMN {column.name} "
                                       f"{column.type.compile(dialect=db.engine.dialect)}"))
        webhooks_off = webhook_events.paused()  # their tables come later too
        webhooks_off.__enter__()
        ids = seed(db.session)
        creditor = db.session.scalar(sa.select(Creditor))
        first, second = (db.session.get(Position, i) for i in ids[:2])
        record_receipt(db.session, CreditorRef.of(creditor), receipt_for(first.installments[0]),
                       source="paSendRTV2", raw_xml="<r/>")
        ledger.cancel_position(db.session, second, reason="Errore", actor="test")
        ledger.create_position(db.session, creditor, position_input(db.session.scalar(sa.select(Service)),
                                                                    amount=4321), actor="test", enqueue_sync=False)
        db.session.commit()
        webhooks_off.__exit__(None, None, None)
        for table_name, column in later:
            db.session.execute(sa.text(f"ALTER TABLE {table_name} DROP COLUMN {column.name}"))
        db.session.commit()
        db.session.remove()
        with _logging_kept():
            upgrade()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PositionTotal)) > 0
        assert totals.matches_positions(db.session)


def _rows_by_id(session) -> dict[int, tuple]:
    return {r.id: (r.service_id, r.status, r.due_date) for r in session.scalars(sa.select(PositionTotal))}


def test_folding_rewrites_only_the_keys_that_changed(ctx, creditor, service, make_position):
    """A fold every minute must not rewrite the whole table (a dead row per key each time, on a table that grows
    with the days of history): keys already down to one row keep it."""
    quiet = make_position(amount=1000, due=date.today() + timedelta(days=5))
    moving = make_position(amount=2000, due=date.today() + timedelta(days=9))
    totals.compact(db.session)
    db.session.commit()
    folded = _rows_by_id(db.session)
    assert len(folded) == 2
    assert totals.compact(db.session) == 0
    db.session.commit()
    assert _rows_by_id(db.session) == folded  # nothing to fold: nothing rewritten

    ledger.transition(db.session, moving, S.PUBLISHED, actor="test")
    db.session.commit()
    assert totals.compact(db.session) == 2  # the draft key's +1 and -1 go; the published key keeps its one row
    db.session.commit()
    after = _rows_by_id(db.session)
    quiet_row = next(i for i, (_, status, due) in folded.items() if due == quiet.due_date)
    assert after[quiet_row] == folded[quiet_row]
    assert sorted(after.values()) == sorted([folded[quiet_row], (service.id, "published", moving.due_date)])
    assert totals.matches_positions(db.session)
