"""The Importazioni pages: upload (and bad uploads), the dry run's progress and report, confirm and cancel, the
template and the column mapping, the cancellation of an import's positions; roles, scope and other creditors."""

import csv
import io
import os
import zipfile

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from portal.extensions import db
from portal.imports import services as imports
from portal.imports.models import Import, ImportMapping
from portal.jobs.queue import get_backend
from portal.ledger.models import Position
from portal.ledger.status import PositionStatus
from portal.settings import services as settings_svc
from tests.import_support import CF_OTHER, rows_csv, single


@pytest.fixture(autouse=True)
def store(app, tmp_path, monkeypatch):
    """Uploaded files under a temporary directory (the jobs read the app's settings too)."""
    monkeypatch.setitem(app.config, "IMPORTS_DIR", str(tmp_path / "imports"))
    return tmp_path / "imports"


CLEAN = rows_csv([single("K1", "120,00"), single("K2", "80,50", cf=CF_OTHER, name="Luisa Verdi")])
WITH_ERRORS = rows_csv([single("K1", "120,00"), single("K2", "-5"), single("K3", "10,00", when="31/02/2027")])


def post_file(client, service, data: bytes, filename="bollette.csv", **options):
    form = {"service_id": str(service.id), "file": (io.BytesIO(data), filename)}
    form.update({name: "y" for name, chosen in options.items() if chosen})
    return client.post("/officer/imports", data=form, content_type="multipart/form-data")


def uploaded(client, service, data: bytes, **options) -> Import:
    response = post_file(client, service, data, **options)
    assert response.status_code == 303, response.get_data(as_text=True)
    imp = db.session.scalars(sa.select(Import).order_by(Import.id.desc())).first()
    assert response.headers["Location"].endswith(f"/officer/imports/{imp.id}")
    return imp


def run_jobs(app):
    get_backend(app).run_pending()
    db.session.expire_all()


def page(client, imp, **args) -> str:
    response = client.get(f"/officer/imports/{imp.id}", query_string=args)
    assert response.status_code == 200
    return response.get_data(as_text=True)


# --- Upload, dry run, confirm, import --------------------------------------------------------------------------


def test_menu_list_and_upload_form(client, login, make_user, service):
    login(make_user())
    dashboard = client.get("/officer/").get_data(as_text=True)
    assert 'href="/officer/imports"' in dashboard
    assert "Importazioni" in dashboard
    text = client.get("/officer/imports").get_data(as_text=True)
    assert "Nessuna importazione finora." in text
    assert 'enctype="multipart/form-data"' in text
    for label in ("Servizio", "File CSV o XLSX", "Importa solo le righe valide", "Aggiorna le posizioni esistenti"):
        assert label in text
    assert "Al massimo 64 MB" in text
    assert f'href="/officer/imports/mapping/{service.id}"' in text


def test_a_clean_file_is_checked_with_progress_then_confirmed_and_imported(app, client, login, make_user, service):
    user = login(make_user())
    imp = uploaded(client, service, CLEAN)
    assert (imp.status, imp.created_by_id, imp.actor) == ("uploaded", user.id, f"user:{user.id}")

    # While the dry run waits or works, the block polls itself and shows a progress bar.
    block = client.get(f"/officer/imports/{imp.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert block.lstrip().startswith('<section id="import-live"')
    assert 'hx-trigger="every 2s"' in block
    assert 'role="progressbar"' in block
    assert 'aria-live="polite"' in block
    assert "In attesa di verifica" in block

    run_jobs(app)
    block = client.get(f"/officer/imports/{imp.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "hx-trigger" not in block
    assert 'role="progressbar"' not in block  # a checked file waits for the officer: no bar
    assert "Verificata" in block
    assert "Totali per servizio" in block
    assert "200,50" in block  # 120,00 + 80,50
    assert "Conferma e importa 2 posizioni" in block
    assert "Errori riga per riga" not in block

    confirmed = client.post(f"/officer/imports/{imp.id}/confirm")
    assert confirmed.status_code == 303
    db.session.expire_all()
    assert imp.status == "importing"
    block = client.get(f"/officer/imports/{imp.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-trigger="every 2s"' in block
    assert "Importazione in corso" in block
    # Confirming again changes nothing.
    assert client.post(f"/officer/imports/{imp.id}/confirm").status_code == 303

    run_jobs(app)
    text = page(client, imp)
    assert imp.status == "done"
    assert "Importate 2 posizioni" in text
    assert 'aria-valuenow="100"' in text
    block = client.get(f"/officer/imports/{imp.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "hx-trigger" not in block
    assert "Annulla tutte le posizioni di questa importazione" in block
    assert f'href="/officer/positions?import_id={imp.id}"' in text
    assert "Annulla tutte le posizioni di questa importazione" in text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Position).where(Position.import_id == imp.id)) == 2
    listing = client.get("/officer/imports").get_data(as_text=True)
    assert "bollette.csv" in listing
    assert "Importata" in listing
    assert user.full_name in listing
    positions = client.get(f"/officer/positions?import_id={imp.id}").get_data(as_text=True)
    assert "Luisa Verdi" in positions


def test_the_progress_bar_shows_the_running_job(app, client, login, make_user, service):
    login(make_user())
    imp = uploaded(client, service, CLEAN)
    from portal.jobs.models import JobRecord

    record = db.session.scalars(sa.select(JobRecord).where(JobRecord.rq_id == f"import-{imp.id}-check")).one()
    record.status, record.progress, record.total = "running", 250, 1000
    db.session.commit()
    block = client.get(f"/officer/imports/{imp.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'aria-valuenow="25"' in block
    assert "width: 25%" in block
    assert "Verifica del file: 25% letto." in block


def test_a_file_with_errors_shows_each_row_and_cannot_be_confirmed(app, client, login, make_user, service):
    login(make_user())
    imp = uploaded(client, service, WITH_ERRORS)
    run_jobs(app)
    text = page(client, imp)
    assert "Errori riga per riga" in text
    assert "L&#39;importo non può essere negativo." in text
    assert "31/02/2027" in text
    assert "importa solo le righe valide" in text  # the refusal says how to go on
    assert "Conferma e importa" not in text
    refused = client.post(f"/officer/imports/{imp.id}/confirm", follow_redirects=True).get_data(as_text=True)
    assert "nulla viene importato" in refused
    db.session.expire_all()
    assert imp.status == "checked"

    report = client.get(f"/officer/imports/{imp.id}/report.csv")
    assert report.status_code == 200
    assert report.mimetype == "text/csv"
    assert "attachment" in report.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(report.get_data(as_text=True).lstrip("\ufeff")), delimiter=";"))
    assert rows[0] == ["riga", "colonna", "chiave", "errore"]
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [("3", "importo", "K2"), ("4", "scadenza", "K3")]

    cancelled = client.post(f"/officer/imports/{imp.id}/cancel")
    assert cancelled.status_code == 303
    db.session.expire_all()
    assert imp.status == "cancelled"
    assert "Annullata" in page(client, imp)


def test_valid_rows_only_imports_the_rest(app, client, login, make_user, service):
    login(make_user())
    imp = uploaded(client, service, WITH_ERRORS, valid_rows_only=True)
    run_jobs(app)
    text = page(client, imp)
    assert "Conferma e importa 1 posizione" in text
    client.post(f"/officer/imports/{imp.id}/confirm")
    run_jobs(app)
    assert imp.status == "done"
    assert [p.external_id for p in db.session.scalars(sa.select(Position))] == ["K1"]


def test_the_row_report_is_paged(app, client, login, make_user, service):
    login(make_user())
    data = rows_csv([single(f"K{n}", "-1") for n in range(1, 61)])
    imp = uploaded(client, service, data)
    run_jobs(app)
    first = page(client, imp)
    assert first.count("L&#39;importo non può essere negativo.") == 50
    assert 'data-testid="import-errors-next"' in first
    last_id = imports.report_rows(db.session, imp.id, limit=50)[-1].id
    second = page(client, imp, after=last_id)
    assert second.count("L&#39;importo non può essere negativo.") == 10
    assert "K60" in second
    assert ">K1<" not in second
    assert 'data-testid="import-errors-next"' not in second
    assert "Primi errori" in second


def test_cancel_all_positions_asks_a_reason_and_a_confirmation(app, client, login, make_user, service):
    login(make_user())
    imp = uploaded(client, service, CLEAN)
    run_jobs(app)
    client.post(f"/officer/imports/{imp.id}/confirm")
    run_jobs(app)

    missing = client.post(f"/officer/imports/{imp.id}/cancel-positions", data={"reason": "Emissione errata"},
                          follow_redirects=True).get_data(as_text=True)
    assert "Confermare l&#39;annullamento spuntando la casella." in missing
    missing = client.post(f"/officer/imports/{imp.id}/cancel-positions", data={"reason": "", "confirm": "y"},
                          follow_redirects=True).get_data(as_text=True)
    assert "Indicare il motivo dell&#39;annullamento." in missing
    assert get_backend(app).pending == []

    asked = client.post(f"/officer/imports/{imp.id}/cancel-positions",
                        data={"reason": "Emissione errata", "confirm": "y"})
    assert asked.status_code == 303
    block = client.get(f"/officer/imports/{imp.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-trigger="every 2s"' in block
    assert "Annullamento delle posizioni" in block
    run_jobs(app)
    assert {p.status for p in db.session.scalars(sa.select(Position))} == {PositionStatus.CANCELLED}
    text = page(client, imp)
    assert "hx-trigger" not in text
    assert "Annulla tutte le posizioni di questa importazione" not in text


# --- Bad uploads ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "filename", "message"), [
    (b"", "vuoto.csv", "Il file è vuoto."),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(2000), "foto.png", "contiene dati binari"),
    (b"PK\x03\x04" + os.urandom(500), "finto.xlsx", "non è un XLSX valido"),
])
def test_bad_uploads_are_refused_on_the_form(client, login, make_user, service, store, data, filename, message):
    login(make_user())
    response = post_file(client, service, data, filename=filename)
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert message in text
    assert 'id="form-errors"' in text
    assert 'aria-invalid="true"' in text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Import)) == 0
    assert not [p for p in store.rglob("*") if p.is_file()]


def test_a_missing_file_or_service_is_refused(client, login, make_user, service):
    login(make_user())
    response = client.post("/officer/imports", data={"service_id": str(service.id)},
                           content_type="multipart/form-data")
    assert response.status_code == 422
    assert "Scegliere il file da caricare." in response.get_data(as_text=True)
    response = client.post("/officer/imports", data={"service_id": "0", "file": (io.BytesIO(CLEAN), "a.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 422
    assert "Scegliere il servizio." in response.get_data(as_text=True)


def test_a_file_over_the_limit_is_refused_before_it_is_read(app, client, login, make_user, service, monkeypatch):
    login(make_user())
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1024 * 1024)
    # The body built in memory (werkzeug spools a large one to a temporary file the refused request never closes).
    boundary, body = encode_multipart({"service_id": str(service.id), "file": FileStorage(
        io.BytesIO(b"chiave;importo\r\n" + b"K;1\r\n" * 300_000), "big.csv")})
    response = client.post("/officer/imports", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 413
    text = response.get_data(as_text=True)
    assert "Il file supera la dimensione massima di 1 MB." in text
    assert 'data-testid="import-upload"' in text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Import)) == 0


def test_the_same_file_twice_is_refused_once_imported(app, client, login, make_user, service):
    login(make_user())
    imp = uploaded(client, service, CLEAN)
    run_jobs(app)
    client.post(f"/officer/imports/{imp.id}/confirm")
    run_jobs(app)
    again = post_file(client, service, CLEAN)
    assert again.status_code == 422
    assert "Questo file è già stato importato" in again.get_data(as_text=True)


def test_upload_without_csrf_is_refused(client, login, make_user, service):
    login(make_user())
    response = client.post("/officer/imports", data={"service_id": str(service.id),
                                                     "file": (io.BytesIO(CLEAN), "a.csv")},
                           content_type="multipart/form-data", csrf=False)
    assert response.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Import)) == 0


# --- Template and mapping ----------------------------------------------------------------------------------------


def test_the_template_downloads_as_csv_and_xlsx(client, login, make_user, service):
    login(make_user("consulta", role="viewer"))
    response = client.get("/officer/imports/template.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    header = response.get_data(as_text=True).lstrip("\ufeff").splitlines()[0].split(";")
    assert header[:3] == ["chiave", "servizio", "codice_fiscale"]
    response = client.get("/officer/imports/template.xlsx")
    assert response.status_code == 200
    assert zipfile.is_zipfile(io.BytesIO(response.data))
    assert client.get("/officer/imports/template.pdf").status_code == 404


def test_the_mapping_is_saved_and_used_for_the_next_upload(app, client, login, make_user, service):
    login(make_user())
    form = client.get(f"/officer/imports/mapping/{service.id}")
    assert form.status_code == 200
    text = form.get_data(as_text=True)
    assert "Colonna per «codice_fiscale»" in text
    assert "Formato delle date" in text
    response = client.post(f"/officer/imports/mapping/{service.id}", data={
        "date_format": "%d.%m.%Y", "decimal": ",", "column_chiave": "Codice utenza", "column_codice_fiscale": "CF",
        "fixed_causale": "TARI 2027"})
    assert response.status_code == 303
    saved = db.session.scalars(sa.select(ImportMapping)).one()
    assert saved.columns == {"chiave": "Codice utenza", "codice_fiscale": "CF"}
    assert saved.fixed == {"causale": "TARI 2027"}
    text = client.get(f"/officer/imports/mapping/{service.id}").get_data(as_text=True)
    assert 'value="Codice utenza"' in text
    assert 'value="TARI 2027"' in text

    data = rows_csv([{"Codice utenza": "U1", "CF": "RSSMRA80A01H501U", "nominativo": "Mario Rossi",
                      "importo": "10,00", "scadenza": "31.12.2030"}],
                    header=["Codice utenza", "CF", "nominativo", "importo", "scadenza"])
    imp = uploaded(client, service, data)
    run_jobs(app)
    assert (imp.error_count, imp.positions_new) == (0, 1)


def test_a_wrong_mapping_is_refused_with_its_reasons(client, login, make_user, service):
    login(make_user())
    response = client.post(f"/officer/imports/mapping/{service.id}", data={
        "date_format": "auto", "decimal": "auto", "column_chiave": "X", "column_codice_fiscale": "x"})
    assert response.status_code == 422
    assert "La colonna «x» è assegnata a più campi." in response.get_data(as_text=True)
    response = client.post(f"/officer/imports/mapping/{service.id}", data={"date_format": "%s", "decimal": "auto"})
    assert response.status_code == 422
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ImportMapping)) == 0


# --- Roles, scope, other creditors --------------------------------------------------------------------------------


def test_viewers_look_but_do_not_act(app, client, login, make_user, service):
    login(make_user())
    imp = uploaded(client, service, CLEAN)
    run_jobs(app)
    client.post("/officer/logout")
    login(make_user("consulta", role="viewer"))
    listing = client.get("/officer/imports").get_data(as_text=True)
    assert "bollette.csv" in listing
    assert 'data-testid="import-upload"' not in listing
    text = page(client, imp)
    assert "Conferma e importa" not in text
    assert "Annulla l&#39;importazione" not in text
    assert client.get(f"/officer/imports/{imp.id}/report.csv").status_code == 200
    mapping = client.get(f"/officer/imports/mapping/{service.id}").get_data(as_text=True)
    assert "disabled" in mapping
    assert "Salva le colonne" not in mapping
    assert post_file(client, service, CLEAN).status_code == 403
    for action in ("confirm", "cancel", "cancel-positions"):
        assert client.post(f"/officer/imports/{imp.id}/{action}").status_code == 403
    assert client.post(f"/officer/imports/mapping/{service.id}", data={"date_format": "auto",
                                                                       "decimal": "auto"}).status_code == 403
    db.session.expire_all()
    assert imp.status == "checked"


def test_scoped_officers_see_only_their_services(app, client, login, make_user, service, make_service):
    other = make_service(code="MENSA", name="Mensa scolastica")
    login(make_user())
    mine = uploaded(client, service, CLEAN)
    theirs = uploaded(client, other, rows_csv([single("M1")]))
    client.post("/officer/logout")
    login(make_user("scuola", role="operator", services=[other]))
    listing = client.get("/officer/imports").get_data(as_text=True)
    assert f'data-import-id="{theirs.id}"' in listing
    assert f'data-import-id="{mine.id}"' not in listing
    assert client.get(f"/officer/imports/{theirs.id}").status_code == 200
    for url in (f"/officer/imports/{mine.id}", f"/officer/imports/{mine.id}/report.csv",
                f"/officer/imports/mapping/{service.id}"):
        assert client.get(url).status_code == 404, url
    for action in ("confirm", "cancel", "cancel-positions"):
        assert client.post(f"/officer/imports/{mine.id}/{action}").status_code == 404
    # A service outside the scope is not among the choices of the upload form.
    assert post_file(client, service, CLEAN).status_code == 422


def test_another_creditors_import_is_not_found(app, client, login, make_user, service):
    login(make_user())
    imp = uploaded(client, service, CLEAN)
    client.post("/officer/logout")
    other = settings_svc.create_creditor(db.session, fiscal_code="00488410010", name="Comune di Altrove",
                                         segregation_code="02", department="Tributi")
    from portal.accounts.services import create_user
    from tests.conftest import PASSWORD

    create_user(db.session, other, username="altrove", full_name="Altrove", password=PASSWORD, role="admin")
    db.session.commit()
    client.post("/officer/login", data={"username": "altrove", "password": PASSWORD})
    assert f'data-import-id="{imp.id}"' not in client.get("/officer/imports").get_data(as_text=True)
    assert client.get(f"/officer/imports/{imp.id}").status_code == 404
    assert client.get(f"/officer/imports/{imp.id}/report.csv").status_code == 404
    assert client.post(f"/officer/imports/{imp.id}/cancel").status_code == 404
    assert client.get(f"/officer/imports/mapping/{service.id}").status_code == 404


def test_anonymous_visitors_are_sent_to_login(client, service):
    for url in ("/officer/imports", "/officer/imports/template.csv", f"/officer/imports/mapping/{service.id}",
                "/officer/imports/1"):
        response = client.get(url)
        assert response.status_code == 302
        assert "/officer/login" in response.headers["Location"]
