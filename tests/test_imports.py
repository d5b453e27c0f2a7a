"""Bulk upload (CSV/XLSX): the dry run's figures and row report, all or nothing, idempotency, updates, cancel."""

import sqlalchemy as sa

from portal.extensions import db
from portal.ledger.models import Event, PaymentOption, Position, Transfer
from tests.import_support import CF_OTHER, confirm_and_run, due, errors, rows_csv, single, upload


def test_a_clean_file_is_checked_then_imported_with_numbers_and_events(creditor, service, tmp_path):
    data = rows_csv([
        single("K1", "120,00"),
        single("K2", "300,00", cf=CF_OTHER, name="Luisa Verdi"),
        {**single("K2", "150,00", cf=CF_OTHER, name="Luisa Verdi"), "tipo_pagamento": "rata", "numero_rata": "1"},
        {**single("K2", "150,00", cf=CF_OTHER, name="Luisa Verdi", when=due(120)), "tipo_pagamento": "rata",
         "numero_rata": "2"},
    ])
    imp = upload(creditor, service, data, tmp_path)
    assert errors(imp) == []
    assert (imp.status, imp.rows_total, imp.positions_new, imp.error_count) == ("checked", 4, 2, 0)
    assert imp.totals == {"TARI": {"positions": 2, "options": 4, "amount_cents": 42000}}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Position)) == 0
    confirm_and_run(imp, tmp_path)
    assert (imp.status, imp.imported) == ("done", 2)
    positions = db.session.scalars(sa.select(Position).order_by(Position.id)).all()
    assert [(p.external_id, p.amount_cents, p.source, p.import_id, p.sync_pending) for p in positions] == [
        ("K1", 12000, "import", imp.id, True), ("K2", 30000, "import", imp.id, True)]
    assert len(positions[1].options) == 3
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Transfer)) == 4
    assert {o.notice_number[:3] for o in db.session.scalars(sa.select(PaymentOption))} == {"301"}
    events = db.session.scalars(sa.select(Event)).all()
    assert [(e.kind, e.actor, e.details["import_id"]) for e in events] == [("created", "user:1", imp.id)] * 2
