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


# --- Bad input: each gets a precise row/column message or is normalised; nothing is half imported -----------------

import io  # noqa: E402
import os  # noqa: E402
import zipfile  # noqa: E402

import pytest  # noqa: E402

from portal.imports import services as imports  # noqa: E402
from tests.import_support import HEADER, settings  # noqa: E402


def refused(creditor, service, data, tmp_path, filename="file.csv"):
    before = [p for p in (tmp_path / "imports").rglob("*") if p.is_file()]
    with pytest.raises(imports.ImportRefused) as info:
        imports.create_import(db.session, creditor, service, filename, io.BytesIO(data), actor="user:1",
                              settings=settings(tmp_path), enqueue=False)
    # A refused upload leaves no file behind.
    assert [p for p in (tmp_path / "imports").rglob("*") if p.is_file()] == before
    return str(info.value)


def test_windows_1252_and_a_bom_are_read_right(creditor, service, tmp_path):
    latin = rows_csv([single("K1", name="Niccolò Pèrez")], encoding="cp1252")
    bom = rows_csv([single("K2", name="Niccolò Pèrez")], bom=True)
    for data in (latin, bom):
        imp = upload(creditor, service, data, tmp_path)
        assert errors(imp) == []
        assert imp.positions_new == 1
        confirm_and_run(imp, tmp_path)
    assert {p.debtor.name for p in db.session.scalars(sa.select(Position))} == {"Niccolò Pèrez"}


@pytest.mark.parametrize(("data", "message"), [
    (b"", "Il file è vuoto."),
    ("chiave;nome\r\n".encode("utf-16"), "UTF-16"),
    (b"chiave;nominativo\r\nK1;Caf\x81\r\n\xff", "né UTF-8 né Windows-1252"),
    (os.urandom(10 * 1024 * 1024), "contiene dati binari"),
])
def test_unreadable_files_are_refused_whole(creditor, service, tmp_path, data, message):
    assert message in refused(creditor, service, data, tmp_path)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(imports.Import)) == 0


def test_a_zip_bomb_renamed_xlsx_is_refused_from_the_zip_directory(creditor, service, tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (300 * 1024 * 1024))
    assert len(out.getvalue()) < 1024 * 1024
    assert "zip bomb" in refused(creditor, service, out.getvalue(), tmp_path, filename="bolletta.xlsx")


def test_a_zip_that_is_not_a_workbook_is_refused(creditor, service, tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a.txt", "x")
    assert "non un foglio XLSX" in refused(creditor, service, out.getvalue(), tmp_path, filename="a.xlsx")


def test_header_only_missing_and_extra_columns(creditor, service, tmp_path):
    imp = upload(creditor, service, rows_csv([]), tmp_path)
    assert errors(imp) == [(1, "", "Il file contiene solo l'intestazione: nessuna riga da importare.")]
    assert imports.refusal(imp)
    header = [h for h in HEADER if h != "importo"] + ["note"]
    imp = upload(creditor, service, rows_csv([single("K1")], header=header), tmp_path)
    assert errors(imp) == [(1, "", "Manca la colonna «importo» (obbligatoria).")]
    imp = upload(creditor, service, rows_csv([single("K1")], header=HEADER + ["note"]), tmp_path)
    assert errors(imp) == []
    assert imp.message == "Colonne non previste, ignorate: «note»."


@pytest.mark.parametrize(("cell", "value", "expected"), [
    ("importo", "1.234,50", 123450), ("importo", "1,234.50", 123450), ("importo", "1234.5", 123450),
    ("importo", "-5", "L'importo non può essere negativo."),
    ("importo", "0", "L'importo deve essere maggiore di zero."),
    ("importo", "12,345", "L'importo può avere al massimo due decimali."),
    ("scadenza", "31/12/2099", "2099-12-31"), ("scadenza", "2099-12-31", "2099-12-31"),
    ("scadenza", "73415", "2100-12-31"), ("scadenza", "31/02/2099", "Data non valida «31/02/2099»"),
    ("scadenza", "01/01/2001", "La scadenza non può essere nel passato."),
    ("codice_fiscale", " rssmra80a01h501u ", "RSSMRA80A01H501U"),
    ("nominativo", "=HYPERLINK(\"http://x\")", "Il testo inizia con «=»"),
])
def test_cells_are_normalised_or_get_a_precise_message(creditor, service, tmp_path, cell, value, expected):
    imp = upload(creditor, service, rows_csv([{**single("K1"), cell: value}]), tmp_path)
    if isinstance(expected, str) and not expected[:1].isdigit() and expected != "RSSMRA80A01H501U":
        [(row, column, message)] = errors(imp)
        assert (row, column) == (2, cell)
        assert message.startswith(expected)
        return
    assert errors(imp) == []
    confirm_and_run(imp, tmp_path)
    position = db.session.scalar(sa.select(Position))
    got = {"importo": position.amount_cents, "scadenza": position.due_date.isoformat(),
           "codice_fiscale": position.debtor.fiscal_code}[cell]
    assert got == expected


def test_rows_of_a_position_must_agree_and_keys_not_repeat(creditor, service, tmp_path):
    rata = {"tipo_pagamento": "rata"}
    data = rows_csv([
        single("K1", "100,00"),
        {**single("K1", "60,00"), **rata, "numero_rata": "1"},
        {**single("K1", "30,00", when=due(90)), **rata, "numero_rata": "2"},
        single("K2", cf=CF_OTHER, name="Luisa Verdi"),
        {**single("K2", name="Altro Nome", cf=CF_OTHER), **rata, "numero_rata": "1"},
        single("K3"),
        single("K4"),
        single("K3"),
    ])
    imp = upload(creditor, service, data, tmp_path)
    found = errors(imp)
    assert (2, "importo", "La somma delle rate (90,00\u00a0€) è diversa dall'importo in unica soluzione "
                          "(100,00\u00a0€).") in found
    assert (6, "nominativo", "Dati del debitore diversi da quelli della riga 5: una posizione ha un solo "
                             "debitore.") in found
    assert (9, "chiave", "La chiave «K3» compare già alla riga 7: le righe di una posizione devono essere "
                         "consecutive e una chiave non può ripetersi.") in found
    assert (imp.positions_new, imp.positions_refused) == (1, 4)
    # All or nothing: a file with errors imports nothing...
    with pytest.raises(imports.ImportRefused, match="Il file contiene"):
        imports.confirm(db.session, imp.id, actor="user:1", enqueue=False)
    # ...unless only the valid rows are wanted: K4 alone.
    imp = upload(creditor, service, data, tmp_path, valid_rows_only=True)
    confirm_and_run(imp, tmp_path)
    assert [p.external_id for p in db.session.scalars(sa.select(Position))] == ["K4"]


def test_the_same_file_twice_imports_nothing_the_second_time(creditor, service, tmp_path):
    data = rows_csv([single("K1"), single("K2")])
    confirm_and_run(upload(creditor, service, data, tmp_path), tmp_path)
    assert "già stato importato" in refused(creditor, service, data, tmp_path)
    # Another file with the same keys (one line more): only the new key is new.
    imp = upload(creditor, service, rows_csv([single("K1"), single("K2"), single("K3")]), tmp_path)
    assert (imp.positions_new, imp.positions_unchanged) == (1, 2)
    confirm_and_run(imp, tmp_path)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Position)) == 3


def test_xlsx_with_number_and_date_cells(creditor, service, tmp_path):
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    from datetime import date, timedelta
    sheet.append(["K1", "RSSMRA80A01H501U", "Mario Rossi", "TARI", "unica", None, 1234.5,
                  date.today() + timedelta(days=40)])
    sheet.append(["K2", "RSSMRA80A01H501U", "Mario Rossi", "TARI", "unica", None, 10, 73415])
    out = io.BytesIO()
    workbook.save(out)
    imp = upload(creditor, service, out.getvalue(), tmp_path, filename="bollette.xlsx")
    assert imp.file_format == "xlsx"
    assert errors(imp) == []
    confirm_and_run(imp, tmp_path)
    assert [p.amount_cents for p in db.session.scalars(sa.select(Position).order_by(Position.id))] == [123450, 1000]


def test_a_row_report_csv_is_safe_against_formula_injection(creditor, service, tmp_path):
    imp = upload(creditor, service, rows_csv([single("@SUM(1)", amount="x")]), tmp_path)
    text = "".join(imports.report_csv(db.session, imp.id))
    assert ";'@SUM(1);" in text
    assert ";@SUM(1)" not in text


def test_cancel_before_confirm_and_batch_cancel_after(creditor, service, tmp_path):
    imp = upload(creditor, service, rows_csv([single("K1")]), tmp_path)
    imports.cancel_import(db.session, imp.id)
    db.session.commit()
    with pytest.raises(imports.ImportRefused):
        imports.confirm(db.session, imp.id, actor="user:1", enqueue=False)
    imp = upload(creditor, service, rows_csv([single("K1"), single("K2")]), tmp_path)
    confirm_and_run(imp, tmp_path)
    with pytest.raises(imports.ImportRefused):
        imports.cancel_import(db.session, imp.id)
    db.session.rollback()
    assert imports.cancel_positions(db.session, imp.id, reason="Ruolo errato", actor="user:1") == 2
    db.session.commit()
    assert imports.pagopa_counts(db.session, imp.id).cancelled == 2


def test_cli_imports_run(app, creditor, service, tmp_path):
    path = tmp_path / "tari.csv"
    path.write_bytes(rows_csv([single("K1"), single("K2", amount="-5")]))
    app.config["IMPORTS_DIR"] = str(tmp_path / "store")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["imports", "run", str(path), "--service", "tari", "--dry-run"])
    assert result.exit_code == 1, result.output
    assert "riga 3, colonna «importo»: L'importo non può essere negativo." in result.output
    result = runner.invoke(args=["imports", "run", str(path), "--service", "TARI", "--valid-rows-only"])
    assert result.exit_code == 1
    assert "Importate 1 posizioni" in result.output
    path.write_bytes(rows_csv([single("K3")]))
    result = runner.invoke(args=["imports", "run", str(path), "--service", "TARI"])
    assert result.exit_code == 0
    assert "Importate 1 posizioni" in result.output
    db.session.remove()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Position)) == 2


def test_the_positions_list_filters_by_import(creditor, service, tmp_path, make_position):
    from portal.ledger import queries
    from portal.officer.positions import parse_filter

    make_position()
    imp = confirm_and_run(upload(creditor, service, rows_csv([single("K1"), single("K2")]), tmp_path), tmp_path)
    form = parse_filter({"import_id": str(imp.id)}, scope=None)
    page = queries.list_positions(db.session, creditor.id, form.flt)
    assert sorted(p.external_id for p in page.items) == ["K1", "K2"]
    assert parse_filter({"import_id": "x"}, scope=None).errors == {"import_id": "Importazione non valida."}


def test_existing_keys_are_updated_only_when_asked_and_never_when_paid(creditor, service, tmp_path):
    from portal.ledger.status import PositionStatus

    confirm_and_run(upload(creditor, service, rows_csv([single("K1", "100,00"), single("K2", "50,00")]), tmp_path),
                    tmp_path)
    changed = rows_csv([single("K1", "150,00"), single("K2", "70,00"), single("K3")])
    imp = upload(creditor, service, changed, tmp_path)
    assert (imp.positions_new, imp.positions_updated, imp.positions_unchanged) == (1, 0, 2)
    k2 = db.session.scalar(sa.select(Position).where(Position.external_id == "K2"))
    k2.status, k2.paid_cents = PositionStatus.PARTIALLY_PAID, 1000
    db.session.commit()
    imp = upload(creditor, service, changed, tmp_path, update_existing=True, valid_rows_only=True)
    assert (imp.positions_new, imp.positions_updated, imp.positions_refused) == (1, 1, 1)
    assert errors(imp) == [(3, "chiave", "La posizione esiste già ed è pagata (in tutto o in parte) o chiusa: non può "
                                         "essere aggiornata.")]
    confirm_and_run(imp, tmp_path)
    assert imp.status == "done"
    amounts = dict(db.session.execute(sa.select(Position.external_id, Position.amount_cents)).tuples().all())
    assert amounts == {"K1": 15000, "K2": 5000, "K3": 10000}


# --- The dry run's spill: confirm does not read and validate the file again -------------------------------------

from datetime import date as _date  # noqa: E402
from datetime import timedelta as _timedelta  # noqa: E402

from portal.imports import reader, spill  # noqa: E402


def _unreadable(monkeypatch):
    """Reading the upload again fails the test: the import must come from the spill."""
    def refuse(*args, **kwargs):
        raise AssertionError("the file was read again")

    monkeypatch.setattr(reader, "RowReader", refuse)


def test_the_import_writes_what_the_dry_run_validated_without_reading_the_file(creditor, service, tmp_path,
                                                                               monkeypatch):
    imp = upload(creditor, service, rows_csv([single("K1", "120,00"), single("K2", "-1"), single("K3")]),
                 tmp_path, valid_rows_only=True)
    upload_path = imports.file_path(imp, settings(tmp_path))
    assert spill.path_for(upload_path).is_file()
    _unreadable(monkeypatch)
    confirm_and_run(imp, tmp_path)
    assert (imp.status, imp.imported, imp.positions_refused) == ("done", 2, 1)
    assert sorted(p.external_id for p in db.session.scalars(sa.select(Position))) == ["K1", "K3"]
    assert not spill.path_for(upload_path).exists()  # gone once imported; the upload stays
    assert upload_path.is_file()


def test_a_repeated_key_across_batches_is_refused_from_the_spill_too(creditor, service, tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "BATCH", 2)
    rows = [single("K1"), single("K2"), single("K3"), single("K4"), single("K1", "5,00")]
    imp = upload(creditor, service, rows_csv(rows), tmp_path, valid_rows_only=True)
    assert (imp.positions_new, imp.positions_refused) == (3, 2)
    _unreadable(monkeypatch)
    confirm_and_run(imp, tmp_path)
    assert sorted(p.external_id for p in db.session.scalars(sa.select(Position))) == ["K2", "K3", "K4"]
    assert (imp.positions_new, imp.positions_refused) == (3, 2)


def test_a_spill_made_on_another_day_is_not_used(creditor, service, tmp_path, monkeypatch):
    imp = upload(creditor, service, rows_csv([single("K1")]), tmp_path)
    imports.confirm(db.session, imp.id, actor="user:1", enqueue=False)
    db.session.commit()
    real, opened = reader.RowReader, []

    def counting(*args, **kwargs):
        opened.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(reader, "RowReader", counting)
    imports.run_import(db.session, imp.id, settings=settings(tmp_path), enqueue=False,
                       today=_date.today() + _timedelta(days=1))
    db.session.commit()
    assert opened  # validated again, against the new day
    assert imp.status == "done"


def test_a_spill_that_holds_anything_else_is_ignored(creditor, service, tmp_path, monkeypatch):
    import pickle

    imp = upload(creditor, service, rows_csv([single("K1")]), tmp_path)
    path = spill.path_for(imports.file_path(imp, settings(tmp_path)))
    with open(path, "wb") as out:
        pickle.dump(print, out)
    assert spill.open_matching(imports.file_path(imp, settings(tmp_path)), {}) is None
    confirm_and_run(imp, tmp_path)  # read from the file instead
    assert (imp.status, imp.imported) == ("done", 1)


# --- The write pipeline (PostgreSQL: batches sent by a writer thread, debtors remembered per import) -------------

from portal.imports import bulk  # noqa: E402
from portal.ledger.inputs import DebtorInput  # noqa: E402
from portal.ledger.models import Debtor  # noqa: E402
from portal.ledger.services import upsert_debtor  # noqa: E402


def test_a_debtor_in_many_batches_is_one_row_with_its_last_data(creditor, service, tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "BATCH", 2)
    monkeypatch.setattr(bulk.Pipeline, "MAX_DEBTORS", 2)  # forgotten (after storing what they are owed) mid-import
    upsert_debtor(db.session, creditor, DebtorInput(fiscal_code=CF_OTHER, name="Luisa Verdi", kind="F",
                                                    street="Via Vecchia", email="luisa@example.org"))
    db.session.commit()

    def row(key, cf, name, civic):
        return {**single(key, cf=cf, name=name), "indirizzo": "Via Roma", "civico": civic}

    rows = [row("K1", "RSSMRA80A01H501U", "Mario Rossi", "1"), row("K2", CF_OTHER, "Luisa Verdi", "2"),
            row("K3", "RSSMRA80A01H501U", "Mario Rossi", "3"), row("K4", "BNCGVN70A01H501H", "Gianni Bianchi", "4"),
            row("K5", CF_OTHER, "Luisa Verdi", "5"), row("K6", "RSSMRA80A01H501U", "Mario Rossi", "6"),
            row("K7", "RSSMRA80A01H501U", "Mario Rossi", "7")]
    imp = upload(creditor, service, rows_csv(rows, header=[*HEADER, "indirizzo", "civico"]), tmp_path)
    assert errors(imp) == []
    confirm_and_run(imp, tmp_path)
    assert (imp.status, imp.imported) == ("done", 7)
    debtors = {d.fiscal_code: d for d in db.session.scalars(sa.select(Debtor))}
    assert len(debtors) == 3  # one row per fiscal code, no version
    assert (debtors["RSSMRA80A01H501U"].street, debtors["RSSMRA80A01H501U"].civic_number) == ("Via Roma", "7")
    other = debtors[CF_OTHER]
    assert (other.street, other.civic_number, other.email) == ("Via Roma", "5", "luisa@example.org")
    by_key = {p.external_id: p.debtor.fiscal_code for p in db.session.scalars(sa.select(Position))}
    assert by_key == {"K1": "RSSMRA80A01H501U", "K2": CF_OTHER, "K3": "RSSMRA80A01H501U",
                      "K4": "BNCGVN70A01H501H", "K5": CF_OTHER, "K6": "RSSMRA80A01H501U", "K7": "RSSMRA80A01H501U"}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event)) == 7


def test_a_batch_refused_by_the_database_in_the_background_undoes_the_whole_import(creditor, service, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setattr(imports, "BATCH", 2)
    imp = upload(creditor, service, rows_csv([single(f"K{n}") for n in range(1, 8)]), tmp_path)
    made = []
    real = bulk.new_iupds

    def repeating(creditor, count):
        ids = real(creditor, count)
        made.append(ids)
        return made[0] if len(made) == 3 else ids  # the third batch repeats the first one's ids

    monkeypatch.setattr(bulk, "new_iupds", repeating)
    imports.confirm(db.session, imp.id, actor="user:1", enqueue=False)
    db.session.commit()
    import psycopg

    with pytest.raises(psycopg.errors.UniqueViolation):
        imports.run_import(db.session, imp.id, settings=settings(tmp_path), enqueue=False)
    db.session.rollback()
    assert len(made) >= 3
    for model in (Position, PaymentOption, Transfer, Event, Debtor):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(model)) == 0


def test_debtors_not_remembered_are_looked_up_batch_by_batch(creditor, service, make_service, tmp_path, monkeypatch):
    # An actor who does not see the import's service: the pipeline does not remember debtors between batches.
    monkeypatch.setattr(imports, "BATCH", 2)
    other = make_service(code="CUP", name="Mensa")
    upsert_debtor(db.session, creditor, DebtorInput(fiscal_code=CF_OTHER, name="Luisa Verdi", kind="F",
                                                    street="Via Vecchia", civic_number="9"))
    db.session.commit()
    header = [*HEADER, "indirizzo", "civico"]
    rows = [single("K1"), {**single("K2", cf=CF_OTHER, name="Luisa Verdi"), "indirizzo": "Via Roma", "civico": "2"},
            single("K3"), {**single("K4", cf=CF_OTHER, name="Luisa Verdi"), "civico": "5"}]
    imp = imports.create_import(db.session, creditor, service, "file.csv", io.BytesIO(rows_csv(rows, header=header)),
                                actor="user:1", settings=settings(tmp_path), enqueue=False)
    db.session.commit()
    visible = {other.id}
    imports.run_dry_run(db.session, imp.id, settings=settings(tmp_path), visible_service_ids=visible)
    db.session.commit()
    assert errors(imp) == []
    imports.confirm(db.session, imp.id, actor="user:1", enqueue=False)
    db.session.commit()
    imports.run_import(db.session, imp.id, settings=settings(tmp_path), enqueue=False, visible_service_ids=visible)
    db.session.commit()
    assert (imp.status, imp.imported) == ("done", 4)
    luisa = db.session.scalars(sa.select(Debtor).where(Debtor.fiscal_code == CF_OTHER).order_by(Debtor.id)).all()
    # Refreshed by the first batch; by the second she has a position the actor does not see, so K4 gets a version
    # (as one position after the other would have it). Mario, new in the first batch, is one row.
    assert [(d.street, d.civic_number, d.version_of_id) for d in luisa] == [("Via Roma", "2", None),
                                                                            (None, "5", luisa[0].id)]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Debtor).where(
        Debtor.fiscal_code == "RSSMRA80A01H501U")) == 1
