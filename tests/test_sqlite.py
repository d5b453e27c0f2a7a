"""The whole ledger path on SQLite (the laptop demo database), migrated from the same Alembic scripts."""

import logging
from contextlib import contextmanager
from datetime import UTC, date, timedelta

import pytest
import sqlalchemy as sa

from portal import create_app
from portal.extensions import db
from portal.ledger import allocation, notice_numbers, queries
from portal.ledger import services as ledger
from portal.ledger.inputs import TransferInput
from portal.ledger.models import Event, EventIsAppendOnly, NumberCounter, PaymentOption, Position, Service, Transfer
from portal.ledger.status import PositionStatus
from portal.settings import services as settings_svc
from tests.conftest import CF_COMUNE, IBAN_COMUNE, position_input


@contextmanager
def _logging_kept():
    """Alembic's env.py runs logging.config.fileConfig, which disables every logger that exists; undo that."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers),
             {name: lg.disabled for name, lg in root.manager.loggerDict.items() if isinstance(lg, logging.Logger)})
    try:
        yield
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for name, disabled in saved[2].items():
            logging.getLogger(name).disabled = disabled


@contextmanager
def sqlite_app(path, **config):
    """An app on a fresh SQLite file, migrated to head (``config`` added to its settings); its engines are disposed
    on exit."""
    from flask_migrate import upgrade

    app = create_app({
        "PAYBOX_ENV": "testing",
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}",
        "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"timeout": 30}},
        "SERVER_NAME": "localhost",
        **config,
    })
    try:
        with app.app_context(), _logging_kept():
            upgrade()
        with app.app_context():
            yield app
            db.session.remove()
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def lite(tmp_path):
    with sqlite_app(tmp_path / "paybox.db") as app:
        yield app


@pytest.fixture
def lite_creditor(lite):
    return make_comune()


def make_comune():
    """The Comune with its treasury account and a TARI service, committed (on whichever database is current)."""
    comune = settings_svc.create_creditor(db.session, fiscal_code=CF_COMUNE, name="Comune di Prova",
                                    segregation_code="01", department="Settore Tributi")
    settings_svc.add_account(db.session, comune, iban=IBAN_COMUNE, label="Tesoreria")
    service = Service(creditor=comune, code="TARI", name="TARI", taxonomy_code="9/0101101IM/",
                      account=comune.accounts[0])
    db.session.add(service)
    db.session.commit()
    return comune


def test_migrated_sqlite_has_every_table(lite):
    tables = set(sa.inspect(db.engine).get_table_names())
    assert {t.name for t in db.metadata.sorted_tables} <= tables
    assert "alembic_version" in tables


def test_ledger_path_on_sqlite(lite_creditor):
    creditor = lite_creditor
    service = creditor.services[0]
    tefa = [TransferInput(amount_cents=9500),
            TransferInput(amount_cents=500, beneficiary_fiscal_code="00743110157", beneficiary_name="Provincia",
                          iban="IT60X0542811101000000123456", taxonomy_code="9/0201102IM/")]
    position, created = ledger.create_position(
        db.session, creditor, position_input(service, installments=(5000, 5000), transfers=tefa), actor="test"
    )
    db.session.commit()
    assert created
    db.session.expire_all()

    position = db.session.get(Position, position.id)
    assert [o.kind for o in position.options] == ["single", "installment", "installment"]
    assert [int(o.iuv[2:15]) for o in position.options] == [1, 2, 3]
    assert all(notice_numbers.is_valid_nav(o.notice_number) for o in position.options)
    assert [t.amount_cents for t in position.single_option.transfers] == [9500, 500]
    assert position.created_at.tzinfo is not None  # UTCDateTime on a backend without offsets

    company = position_input(service, fiscal_code="00743110157", name="Impresa Srl")
    second, _ = ledger.create_position(db.session, creditor, company, actor="test")
    db.session.commit()
    assert second.single_option.iuv[2:15] == "0000000000004"

    # Block allocation inside the caller's transaction.
    block = allocation.allocate(db.session, creditor, 10)
    assert [int(n.nav[3:16]) for n in block] == list(range(5, 15))
    db.session.commit()
    assert db.session.get(NumberCounter, creditor.id).next_value == 15

    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test")
    db.session.commit()
    assert position.published_at is not None

    page = queries.list_positions(db.session, creditor.id, queries.PositionFilter())
    assert [p.id for p in page.items] == [second.id, position.id]
    page = queries.list_positions(db.session, creditor.id, queries.PositionFilter(status=PositionStatus.PUBLISHED))
    assert [p.id for p in page.items] == [position.id]
    by_number = queries.PositionFilter(number=position.options[1].notice_number)
    page = queries.list_positions(db.session, creditor.id, by_number)
    assert [p.id for p in page.items] == [position.id]
    page = queries.list_positions(db.session, creditor.id, queries.PositionFilter(debtor="mario"))
    assert [p.id for p in page.items] == [position.id]
    page = queries.list_positions(db.session, creditor.id, queries.PositionFilter(), limit=1)
    assert page.next_cursor == second.id
    assert [p.id for p in queries.list_positions(db.session, creditor.id, queries.PositionFilter(),
                                                 after=page.next_cursor).items] == [position.id]

    assert db.session.scalar(sa.select(sa.func.count()).select_from(PaymentOption)) == 4
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Transfer)) == 5
    assert [e.kind for e in position.events] == ["created", "published"]


def test_sqlite_rollback_undoes_allocation(lite_creditor):
    """On SQLite the counter moves inside the caller's transaction (documented in allocation.py)."""
    creditor_id = lite_creditor.id
    allocation.allocate_bases(db.session, creditor_id, 3)
    db.session.rollback()
    assert allocation.allocate_bases(db.session, creditor_id, 1) == range(1, 2)


def test_sqlite_constraints_and_append_only_events(lite_creditor):
    position = ledger.create_position(db.session, lite_creditor, position_input(lite_creditor.services[0]),
                                      actor="test")[0]
    db.session.commit()
    event = position.events[0]
    event.kind = "tampered"
    with pytest.raises(EventIsAppendOnly):
        db.session.flush()
    db.session.rollback()
    with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
        conn.execute(sa.update(Position.__table__).values(amount_cents=0))
    with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
        conn.execute(sa.update(Position.__table__).values(status="lost"))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event)) == 1


def test_sqlite_due_dates_and_filters(lite_creditor):
    service = lite_creditor.services[0]
    late = position_input(service, due=date.today() + timedelta(days=1))
    position, _ = ledger.create_position(db.session, lite_creditor, late, actor="test")
    db.session.commit()
    overdue = queries.PositionFilter(overdue=True)
    assert queries.list_positions(db.session, lite_creditor.id, overdue).items == []
    later = date.today() + timedelta(days=5)
    assert [p.id for p in queries.list_positions(db.session, lite_creditor.id, overdue, today=later).items] == [
        position.id
    ]


def test_sqlite_ids_past_int64_are_404_or_a_filter_message(lite, lite_creditor):
    """SQLite overflows on integers past 2⁶³-1 (OverflowError): the same checks as on PostgreSQL."""
    from portal.accounts.services import create_user
    from tests.conftest import PASSWORD, CSRFClient
    from tests.test_officer_ids import check_ids_out_of_range

    position, _ = ledger.create_position(db.session, lite_creditor, position_input(lite_creditor.services[0]),
                                         actor="test", enqueue_sync=False)
    create_user(db.session, lite_creditor, username="admin", full_name="Admin", password=PASSWORD, role="admin")
    db.session.commit()
    lite.test_client_class = CSRFClient
    client = lite.test_client()
    assert client.post("/officer/login", data={"username": "admin", "password": PASSWORD}).status_code == 302
    check_ids_out_of_range(client, position.id)


def test_sqlite_debtor_versions(lite_creditor):
    """The partial unique index holds on SQLite: one shared row per fiscal code, any number of versions."""
    from portal.ledger.models import Debtor

    tari = lite_creditor.services[0]
    mensa = Service(creditor=lite_creditor, code="MENSA", name="Mensa", taxonomy_code="9/0101101IM/",
                    account=lite_creditor.accounts[0])
    db.session.add(mensa)
    db.session.commit()
    first, _ = ledger.create_position(db.session, lite_creditor, position_input(tari), actor="test",
                                      enqueue_sync=False)
    versions = []
    for street in ("Via Milano", "Via Torino"):
        data = position_input(mensa, name="Mario Rossi (genitore)")
        data.debtor.street = street
        position, _ = ledger.create_position(db.session, lite_creditor, data, actor="test", enqueue_sync=False,
                                             visible_service_ids={mensa.id})
        versions.append(position)
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Position, first.id).debtor.street == "Via Roma"
    assert [db.session.get(Position, p.id).debtor.street for p in versions] == ["Via Milano", "Via Torino"]
    assert all(db.session.get(Position, p.id).debtor.version_of_id == first.debtor_id for p in versions)
    page = queries.list_positions(db.session, lite_creditor.id, queries.PositionFilter(debtor=first.debtor.fiscal_code))
    assert {p.id for p in page.items} == {first.id, *(p.id for p in versions)}
    db.session.add(Debtor(creditor_id=lite_creditor.id, kind="F", fiscal_code=first.debtor.fiscal_code, name="X"))
    with pytest.raises(sa.exc.IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_sqlite_offline_payments(lite_creditor):
    """A payment at the counter, its reversal and the schema's rules hold on SQLite too."""
    from datetime import datetime

    from portal.ledger import offline_payments as offline
    from portal.ledger.models import OfflinePayment
    from portal.ledger.status import OptionStatus
    from portal.reports import payments

    position = ledger.create_position(db.session, lite_creditor,
                                      position_input(lite_creditor.services[0], installments=(4000, 6000)),
                                      actor="test")[0]
    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test")
    db.session.commit()
    today = date.today()
    first = position.installments[0]
    payment = offline.record(db.session, position.id, offline.OfflinePaymentInput(
        option_id=first.id, paid_on=today, channel="bank_transfer", reference="TRN 1", amount_cents=4000),
        actor="user:1")
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Position, position.id).status == PositionStatus.PARTIALLY_PAID
    assert db.session.get(Position, position.id).single_option.status == OptionStatus.CANCELLED
    rows = list(payments.payment_rows(db.session, lite_creditor.id, today, today))
    assert [r[payments.COLUMNS.index("channel")] for r in rows if r[0] == "payment"] == ["bank_transfer"]
    copy = {c.name: getattr(payment, c.key) for c in OfflinePayment.__table__.c if c.name != "id"}
    with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
        conn.execute(sa.insert(OfflinePayment.__table__).values(**copy))  # a second active payment of the option
    with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
        conn.execute(sa.update(OfflinePayment.__table__).values(reversed_at=datetime.now(UTC), reversal_reason="x",
                                                                pagopa_notified_at=datetime.now(UTC)))
    offline.reverse(db.session, payment.id, reason="Errore", actor="user:1")
    db.session.commit()
    db.session.expire_all()
    position = db.session.get(Position, position.id)
    assert (position.status, position.paid_cents) == (PositionStatus.PUBLISHED, 0)
    assert {o.status for o in position.options} == {OptionStatus.UNPAID}


def test_sqlite_bulk_import(lite_creditor, tmp_path):
    """The bulk upload on SQLite (executemany inserts instead of COPY): a row error placed on its row and column,
    all or nothing, only the valid rows when asked, shared debtors, transfers to a second beneficiary, events,
    the same file twice, an update of an existing key."""
    from portal.imports import services as imports
    from tests.import_support import CF_OTHER, HEADER, confirm_and_run, errors, rows_csv, single, upload

    creditor = lite_creditor
    service = creditor.services[0]
    header = [*HEADER, "importo_1", "cf_beneficiario_2", "beneficiario_2", "iban_2", "tassonomia_2", "importo_2"]
    tefa = {"importo_1": "95,00", "cf_beneficiario_2": "00743110157", "beneficiario_2": "Provincia",
            "iban_2": "IT60X0542811101000000123456", "tassonomia_2": "9/0201102IM/", "importo_2": "5,00"}
    rows = [{**single("K1", "100,00"), **tefa}, single("K2", "50,00", cf=CF_OTHER, name="Luisa Verdi"),
            single("K3", "-5"), single("K4", "30,00")]
    data = rows_csv(rows, header=header)
    imp = upload(creditor, service, data, tmp_path)
    assert errors(imp) == [(4, "importo", "L'importo non può essere negativo.")]
    with pytest.raises(imports.ImportRefused):
        imports.confirm(db.session, imp.id, actor="user:1", enqueue=False)
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Position)) == 0

    imp = upload(creditor, service, data, tmp_path, valid_rows_only=True)
    assert (imp.positions_new, imp.positions_refused) == (3, 1)
    confirm_and_run(imp, tmp_path)
    assert (imp.status, imp.imported) == ("done", 3)
    positions = db.session.scalars(sa.select(Position).order_by(Position.id)).all()
    assert [(p.external_id, p.amount_cents, p.debtor.fiscal_code) for p in positions] == [
        ("K1", 10000, "RSSMRA80A01H501U"), ("K2", 5000, CF_OTHER), ("K4", 3000, "RSSMRA80A01H501U")]
    assert positions[0].debtor_id == positions[2].debtor_id
    assert [(t.amount_cents, t.beneficiary_fiscal_code) for t in positions[0].single_option.transfers] == [
        (9500, CF_COMUNE), (500, "00743110157")]
    assert all(notice_numbers.is_valid_nav(p.single_option.notice_number) for p in positions)
    assert [e.kind for p in positions for e in p.events] == ["created"] * 3

    with pytest.raises(imports.ImportRefused, match="già stato importato"):
        upload(creditor, service, data, tmp_path, valid_rows_only=True)
    db.session.rollback()
    changed = rows_csv([single("K1", "120,00"), single("K4", "30,00")])
    imp = upload(creditor, service, changed, tmp_path, update_existing=True)
    assert (imp.positions_new, imp.positions_updated, imp.positions_unchanged) == (0, 1, 1)
    confirm_and_run(imp, tmp_path)
    assert db.session.get(Position, positions[0].id).amount_cents == 12000
