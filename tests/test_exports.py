"""Exports of positions: columns, one row per option, formula injection, the download route and the CLI."""

import csv
import io
from datetime import date

import pytest
from openpyxl import load_workbook

from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.status import PositionStatus
from portal.reports import exports
from tests.conftest import CF_COMUNE, CF_PERSON

HEADER = ("creditor_fiscal_code,iupd,external_id,service_code,debtor_fiscal_code,debtor_name,option_kind,"
          "installment_number,iuv,notice_number,amount_cents,due_date,status,created_at,published_at,"
          "notice_issued_at,paid_at,option_status,option_paid_at")
EVIL = '=HYPERLINK("http://example.com/x","clic")'


@pytest.fixture
def admin(make_user, login):
    return login(make_user("admin", role="admin"))


def parse_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_download_has_the_header_and_one_row_per_option(client, admin, make_position):
    plan = make_position(amount=30000, installments=(15000, 15000), external_id="A-1")
    single = make_position(amount=999)
    ledger.transition(db.session, single, PositionStatus.PUBLISHED, actor="test")
    db.session.commit()
    response = client.get("/officer/positions/export?format=csv&layout=machine")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="posizioni-{date.today():%Y%m%d}-dati.csv"'
    )
    text = response.get_data(as_text=True)
    assert text.split("\r\n")[0] == HEADER
    rows = parse_csv(text)
    assert len(rows) == 4
    by_kind = [(r["iupd"], r["option_kind"], r["installment_number"]) for r in rows]
    assert by_kind == [(single.iupd, "single", ""), (plan.iupd, "single", ""), (plan.iupd, "installment", "1"),
                       (plan.iupd, "installment", "2")]
    first = rows[0]
    option = single.options[0]
    assert first["creditor_fiscal_code"] == CF_COMUNE
    assert first["debtor_fiscal_code"] == CF_PERSON
    assert first["debtor_name"] == "Mario Rossi"
    assert first["iuv"] == option.iuv
    assert first["notice_number"] == option.notice_number
    assert first["amount_cents"] == "999"
    assert first["due_date"] == option.due_date.isoformat()
    assert first["status"] == "published"
    assert first["service_code"] == "TARI"
    # Rome time with its offset.
    assert first["published_at"][-6:] in ("+01:00", "+02:00")
    assert "T" in first["published_at"]
    assert first["paid_at"] == ""
    assert rows[1]["external_id"] == "A-1"


def test_export_keeps_the_list_filters(client, admin, make_position):
    make_position(amount=1000)
    big = make_position(amount=500000, installments=(250000, 250000))
    url = "/officer/positions/export?format=csv&layout=machine&amount_min=1.000,00"
    rows = parse_csv(client.get(url).get_data(as_text=True))
    assert {r["iupd"] for r in rows} == {big.iupd}
    assert len(rows) == 3


def test_unknown_format_is_refused(client, admin):
    assert client.get("/officer/positions/export?format=pdf").status_code == 400
    assert client.get("/officer/positions/export?format=csv&layout=klingon").status_code == 400


def test_the_default_csv_is_the_italian_one_an_accountant_opens(client, admin, make_position):
    position = make_position(amount=123450, installments=(61725, 61725), due=date(2027, 3, 31))
    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test")
    db.session.commit()
    response = client.get("/officer/positions/export?format=csv")
    assert f"posizioni-{date.today():%Y%m%d}.csv" in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")  # Excel reads it as UTF-8
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    assert len(rows) == 3
    single, first = rows[0], rows[1]
    assert single["Codice fiscale ente"] == CF_COMUNE
    assert single["Importo (euro)"] == "1.234,50"
    assert single["Scadenza"] == "31/03/2027"
    assert single["Stato posizione"] == "Caricata su pagoPA"
    assert (single["Modalità"], single["Stato rata/opzione"]) == ("Unica soluzione", "Da pagare")
    assert (first["Modalità"], first["Rata n."], first["Importo (euro)"]) == ("Rata", "1", "617,25")
    assert len(single["Caricata su pagoPA il"]) == len("31/01/2027 14:05")
    assert single["Pagata il"] == ""


def test_the_italian_xlsx_has_numbers_in_euros_and_real_dates(client, admin, make_position):
    make_position(amount=123450, due=date(2027, 3, 31))
    sheet = load_workbook(io.BytesIO(client.get("/officer/positions/export?format=xlsx").data)).active
    header = [c.value for c in sheet[1]]
    amount = sheet.cell(row=2, column=header.index("Importo (euro)") + 1)
    due = sheet.cell(row=2, column=header.index("Scadenza") + 1)
    assert (amount.value, amount.number_format) == (1234.5, "#,##0.00")
    assert due.value.date() == date(2027, 3, 31)
    assert due.number_format == "DD/MM/YYYY"


def test_xlsx_download(client, admin, make_position):
    position = make_position(amount=12345, installments=(6000, 6345))
    response = client.get("/officer/positions/export?format=xlsx&layout=machine")
    assert response.status_code == 200
    assert response.mimetype == exports.XLSX_MIMETYPE
    assert f"posizioni-{date.today():%Y%m%d}-dati.xlsx" in response.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(response.data)).active
    values = list(sheet.iter_rows(values_only=True))
    assert ",".join(values[0]) == HEADER
    assert len(values) == 4
    assert values[1][1] == position.iupd
    assert values[1][10] == 12345


def _make_evil(make_position):
    position = make_position(name="Mario Rossi", external_id="+SUM(A1:A2)")
    position.debtor.name = EVIL  # stored as typed by an import, whatever the form would have said
    position.subject = "@cmd"
    db.session.commit()
    return position


def test_formula_injection_is_neutralised_in_the_italian_csv(client, admin, make_position):
    _make_evil(make_position)
    text = client.get("/officer/positions/export?format=csv").get_data(as_text=True).lstrip("\ufeff")
    row = next(csv.DictReader(io.StringIO(text), delimiter=";"))
    assert row["Debitore"] == "'" + EVIL
    assert row["Identificativo esterno"] == "'+SUM(A1:A2)"


def test_formula_injection_is_neutralised_in_csv(client, admin, make_position):
    _make_evil(make_position)
    row = parse_csv(client.get("/officer/positions/export?format=csv&layout=machine").get_data(as_text=True))[0]
    assert row["debtor_name"] == "'" + EVIL
    assert row["external_id"] == "'+SUM(A1:A2)"
    assert row["creditor_fiscal_code"] == CF_COMUNE  # ordinary values untouched


def test_formula_injection_is_neutralised_in_xlsx(client, admin, make_position):
    _make_evil(make_position)
    data = client.get("/officer/positions/export?format=xlsx&layout=machine").data
    sheet = load_workbook(io.BytesIO(data)).active
    name_cell = sheet.cell(row=2, column=6)
    external_cell = sheet.cell(row=2, column=3)
    assert name_cell.value == EVIL
    assert name_cell.data_type == "s"
    assert name_cell.quotePrefix  # shown as text, stays text when edited
    assert external_cell.value == "+SUM(A1:A2)"
    assert external_cell.data_type == "s"
    assert b"<f>" not in _sheet_xml(data)  # no formula anywhere in the sheet


def _sheet_xml(data: bytes) -> bytes:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read("xl/worksheets/sheet1.xml")


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@x", "\tx", "\rx"])
def test_every_formula_prefix_gets_an_apostrophe(value):
    out = io.StringIO()
    exports.write_csv(out, [(value, "ok", 5)])
    row = next(csv.reader(io.StringIO(out.getvalue().split("\r\n", 1)[1])))
    assert row == ["'" + value, "ok", "5"]


def test_cli_export_writes_every_position(app, make_position, tmp_path):
    make_position(amount=1000)
    make_position(amount=2000, installments=(1000, 1000))
    target = tmp_path / "posizioni.csv"
    result = app.test_cli_runner().invoke(args=["positions", "export", str(target)])
    assert result.exit_code == 0, result.output
    assert "4 righe scritte" in result.output
    text = target.read_bytes().decode("utf-8")
    assert text.split("\r\n")[0] == HEADER
    assert len(parse_csv(text)) == 4
    result = app.test_cli_runner().invoke(args=["positions", "export", "--layout", "it", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8-sig").startswith("Codice fiscale ente;")


def test_batches_load_options_without_a_query_per_position(ctx, creditor, make_position):
    import sqlalchemy as sa

    for n in range(6):
        make_position(amount=1000 + n, installments=(500 + n, 500))
    creditor_id = creditor.id
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        rows = list(exports.export_rows(db.session, creditor_id, exports.queries.PositionFilter(), batch=4))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    assert len(rows) == 18
    # creditor code + 2 keyset pages × (positions + options)
    assert len(statements) <= 5, "\n\n".join(statements)
