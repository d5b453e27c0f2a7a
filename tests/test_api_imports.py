"""The imports of the REST API: upload, read the dry run and its row report, confirm (idempotently), follow it,
cancel — the code path of the back office, with the token's scope."""

import io

import pytest
import sqlalchemy as sa

from portal.accounts import api_tokens
from portal.extensions import db
from portal.ledger.models import Position
from tests.import_support import rows_csv, single


@pytest.fixture
def bearer(app, creditor, service, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "IMPORTS_DIR", str(tmp_path / "imports"))
    issued = api_tokens.create_token(db.session, creditor, name="tributi", scope="write")
    db.session.commit()
    return {"Authorization": f"Bearer {issued.secret}"}


@pytest.fixture
def run_jobs(app):
    """Run the jobs the calls queued (the test app's manual backend), as a worker would."""
    def run():
        app.extensions["paybox_jobs"].run_pending()
        db.session.expire_all()

    return run


def upload(client, bearer, data: bytes, **fields):
    body = {"service": "TARI", "file": (io.BytesIO(data), "ruolo.csv"), **fields}
    return client.post("/api/v1/imports", data=body, headers=bearer, content_type="multipart/form-data")


def test_upload_check_report_fix_confirm(client, bearer, run_jobs):
    bad = rows_csv([single("A1"), single("A2", amount="-5"), single("A3", cf="RSSMRA80A01H501X")])
    answer = upload(client, bearer, bad)
    assert answer.status_code == 202, answer.get_json()
    first = answer.get_json()
    assert first["status"] == "uploaded"
    run_jobs()
    checked = client.get(f"/api/v1/imports/{first['id']}", headers=bearer).get_json()
    assert checked["status"] == "checked"
    assert checked["error_count"] == 2
    assert checked["confirmable"] is False
    assert "errori" in checked["refusal"]
    report = client.get(f"/api/v1/imports/{first['id']}/errors", headers=bearer).get_json()["items"]
    assert [(e["row"], e["column"]) for e in report] == [(3, "importo"), (4, "codice_fiscale")]
    csv_report = client.get(f"/api/v1/imports/{first['id']}/errors.csv", headers=bearer)
    assert csv_report.mimetype == "text/csv"
    assert "riga;colonna" in csv_report.get_data(as_text=True)
    refused = client.post(f"/api/v1/imports/{first['id']}/confirm", headers=bearer)
    assert refused.status_code == 409
    assert client.post(f"/api/v1/imports/{first['id']}/cancel", headers=bearer).get_json()["status"] == "cancelled"

    fixed = upload(client, bearer, rows_csv([single("A1"), single("A2"), single("A3")])).get_json()
    run_jobs()
    key = {**bearer, "Idempotency-Key": "ruolo-2027-1"}
    confirmed = client.post(f"/api/v1/imports/{fixed['id']}/confirm", headers=key)
    assert confirmed.status_code == 202
    assert confirmed.get_json()["status"] == "importing"
    again = client.post(f"/api/v1/imports/{fixed['id']}/confirm", headers=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    run_jobs()
    done = client.get(f"/api/v1/imports/{fixed['id']}", headers=bearer).get_json()
    assert (done["status"], done["imported"], done["pagopa"]["total"]) == ("done", 3, 3)
    assert done["job"]["step"] == "run"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Position)) == 3
    twice = upload(client, bearer, rows_csv([single("A1"), single("A2"), single("A3")]))
    assert twice.status_code == 422
    assert "già stato importato" in twice.get_json()["detail"]
    cancel = client.post(f"/api/v1/imports/{fixed['id']}/cancel-positions", json={"reason": "Ruolo errato"},
                         headers=bearer)
    assert cancel.status_code == 202
    assert cancel.get_json()["positions"] == 3
    run_jobs()
    assert {p.status.value for p in db.session.scalars(sa.select(Position))} == {"cancelled"}


def test_bad_uploads_and_scopes(client, bearer, creditor, make_service):
    missing = client.post("/api/v1/imports", data={"service": "TARI"}, headers=bearer,
                          content_type="multipart/form-data")
    assert missing.status_code == 422
    assert {e["field"] for e in missing.get_json()["errors"]} == {"file"}
    assert upload(client, bearer, b"", service="NOPE").status_code == 422
    assert upload(client, bearer, b"").status_code == 422  # an empty file, said in Italian
    mensa = make_service(code="MENSA", name="Mensa", taxonomy_code="9/0201102IM/")
    reader = api_tokens.create_token(db.session, creditor, name="lettore", scope="read")
    only_mensa = api_tokens.create_token(db.session, creditor, name="mensa", scope="write", services=[mensa])
    db.session.commit()
    assert upload(client, {"Authorization": f"Bearer {reader.secret}"}, b"x").status_code == 403
    assert upload(client, {"Authorization": f"Bearer {only_mensa.secret}"}, rows_csv([single("B1")])).status_code \
        == 403
    mine = upload(client, bearer, rows_csv([single("C1")])).get_json()
    assert client.get(f"/api/v1/imports/{mine['id']}",
                      headers={"Authorization": f"Bearer {only_mensa.secret}"}).status_code == 404


def test_a_file_over_the_upload_limit_is_a_413_problem(app, client, bearer, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 2000)
    answer = upload(client, bearer, rows_csv([single(f"K{n}") for n in range(100)]))
    assert answer.status_code == 413
    assert answer.mimetype == "application/problem+json"
