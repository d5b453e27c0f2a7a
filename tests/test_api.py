"""The REST API /api/v1: tokens, positions (create idempotently, read, list, update, abate, cancel, notice,
timeline), debtors, services, RFC 9457 problems with field paths, on PostgreSQL."""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from portal.accounts import api_tokens
from portal.extensions import db
from portal.ledger.models import Event, Position
from tests.conftest import CF_PERSON

DUE = (date.today() + timedelta(days=30)).isoformat()


@pytest.fixture
def issue(creditor, service):
    def make(name="tari-software", scope="write", services=(), **kwargs):
        issued = api_tokens.create_token(db.session, creditor, name=name, scope=scope, services=list(services),
                                         **kwargs)
        db.session.commit()
        return {"Authorization": f"Bearer {issued.secret}"}

    return make


@pytest.fixture
def writer(issue):
    return issue()


def body(**overrides):
    data = {
        "service": "TARI", "external_id": "TARI-2027-0001", "subject": "TARI 2027",
        "debtor": {"fiscal_code": CF_PERSON.lower()[:8] + " " + CF_PERSON.lower()[8:], "name": "Mario Rossi",
                   "street": "Via Roma", "civic_number": "1", "postal_code": "00100", "city": "Roma",
                   "province": "RM"},
        "single": {"amount_cents": 12000, "due_date": DUE},
    }
    data.update(overrides)
    return data


def test_create_is_idempotent_on_external_id(client, writer):
    first = client.post("/api/v1/positions", json=body(), headers=writer)
    assert first.status_code == 201, first.get_json()
    created = first.get_json()
    assert created["source"] == "api:tari-software"
    assert created["debtor"]["fiscal_code"] == CF_PERSON
    assert created["options"][0]["notice_number"].startswith("3")
    assert created["pagopa"]["pending"] is True
    again = client.post("/api/v1/positions", json=body(), headers=writer)
    assert again.status_code == 200
    assert again.get_json()["id"] == created["id"]
    changed = body(subject="TARI 2027 bis", single={"amount_cents": 13000, "due_date": DUE})
    conflict = client.post("/api/v1/positions", json=changed, headers=writer)
    assert conflict.status_code == 409
    assert conflict.mimetype == "application/problem+json"
    assert set(conflict.get_json()["differences"]) >= {"subject", "single.amount_cents"}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Position)) == 1
    [event] = db.session.scalars(sa.select(Event).where(Event.kind == "created")).all()
    assert event.actor == "api:tari-software"


def test_errors_name_each_field_path_in_italian(client, writer):
    bad = body(installments=[{"amount_cents": 6000, "due_date": DUE}, {"amount_cents": "60", "due_date": "31/12"}],
               colour="blu")
    response = client.post("/api/v1/positions", json=bad, headers=writer)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    errors = {e["field"]: e["message"] for e in response.get_json()["errors"]}
    assert errors["colour"] == "Campo non previsto: controllare il nome."
    assert "intero" in errors["installments[1].amount_cents"]
    assert "AAAA-MM-GG" in errors["installments[1].due_date"]
    ledger_rules = client.post("/api/v1/positions", headers=writer, json=body(
        installments=[{"amount_cents": 6000, "due_date": DUE}, {"amount_cents": 6000, "due_date": "2020-01-01"}],
        debtor={"fiscal_code": "RSSMRA80A01H501X", "name": "Mario Rossi"}))
    errors = {e["field"]: e["message"] for e in ledger_rules.get_json()["errors"]}
    assert ledger_rules.status_code == 422
    assert "installments[1].due_date" in errors
    assert "debtor.fiscal_code" in errors


@pytest.mark.parametrize(("data", "content_type", "status"), [
    (b"{not json", "application/json", 400),
    (b"service=TARI", "application/x-www-form-urlencoded", 415),
])
def test_malformed_bodies_are_refused_clearly(client, writer, data, content_type, status):
    response = client.post("/api/v1/positions", data=data, content_type=content_type, headers=writer)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["detail"]


def test_tokens_missing_revoked_expired_or_read_only(client, issue, creditor):
    assert client.get("/api/v1/services").status_code == 401
    assert client.get("/api/v1/services", headers={"Authorization": "Bearer pbx_nope"}).status_code == 401
    reader = issue(name="reader", scope="read")
    assert client.get("/api/v1/services", headers=reader).status_code == 200
    assert client.post("/api/v1/positions", json=body(), headers=reader).status_code == 403
    token = db.session.scalar(sa.select(api_tokens.ApiToken).where(api_tokens.ApiToken.name == "reader"))
    assert token.last_used_at is not None
    api_tokens.revoke(db.session, token)
    db.session.commit()
    assert client.get("/api/v1/services", headers=reader).status_code == 401
    stored = db.session.scalar(sa.select(api_tokens.ApiToken.token_hash).where(api_tokens.ApiToken.name == "reader"))
    assert reader["Authorization"].split()[1] not in stored


def test_a_token_sees_only_its_services_and_its_creditor(client, issue, make_service, make_position):
    mensa = make_service(code="MENSA", name="Mensa scolastica", taxonomy_code="9/0201102IM/")
    tari_position = make_position(amount=5000)
    canteen = issue(name="mensa", services=[mensa])
    assert [s["code"] for s in client.get("/api/v1/services", headers=canteen).get_json()["items"]] == ["MENSA"]
    assert client.get(f"/api/v1/positions/{tari_position.id}", headers=canteen).status_code == 404
    forbidden = client.post("/api/v1/positions", json=body(service="TARI"), headers=canteen)
    assert forbidden.status_code == 403
    assert client.get("/api/v1/positions", headers=canteen).get_json()["items"] == []
    assert client.get(f"/api/v1/debtors/{CF_PERSON}", headers=canteen).status_code == 404


def test_read_by_every_key_list_with_filters_and_cursor(client, writer, make_position):
    positions = [make_position(amount=1000 + n) for n in range(5)]
    first = positions[0]
    nav = first.options[0].notice_number
    for url in (f"/api/v1/positions/{first.id}", f"/api/v1/positions/iupd/{first.iupd}",
                f"/api/v1/positions/notice/{nav}"):
        assert client.get(url, headers=writer).get_json()["id"] == first.id, url
    created = client.post("/api/v1/positions", json=body(), headers=writer).get_json()
    assert client.get("/api/v1/positions/external/TARI-2027-0001", headers=writer).get_json()["id"] == created["id"]
    page = client.get("/api/v1/positions?limit=4", headers=writer).get_json()
    assert len(page["items"]) == 4
    assert page["next_cursor"]
    rest = client.get(f"/api/v1/positions?limit=4&cursor={page['next_cursor']}", headers=writer).get_json()
    assert len(rest["items"]) == 2
    assert rest["next_cursor"] is None
    drafts = client.get("/api/v1/positions?status=paid", headers=writer).get_json()
    assert drafts["items"] == []
    mine = client.get(f"/api/v1/positions?debtor_fiscal_code={CF_PERSON}&service=TARI", headers=writer).get_json()
    assert len(mine["items"]) == 6
    bad = client.get("/api/v1/positions?limit=5000&status=lost", headers=writer)
    assert bad.status_code == 422
    assert {e["field"] for e in bad.get_json()["errors"]} == {"limit", "status"}
    debtor = client.get(f"/api/v1/debtors/{CF_PERSON}", headers=writer).get_json()
    assert len(debtor["positions"]) == 6
    assert debtor["due_cents"] == sum(p.amount_cents for p in positions) + 12000


def test_update_cancel_abate_notice_and_timeline(client, writer):
    created = client.post("/api/v1/positions", json=body(), headers=writer).get_json()
    url = f"/api/v1/positions/{created['id']}"
    content = {k: v for k, v in body().items() if k not in ("service", "external_id")}
    content["single"] = {"amount_cents": 9000, "due_date": DUE}
    updated = client.put(url, json={**content, "reason": "Rettifica superficie"}, headers=writer)
    assert updated.status_code == 200, updated.get_json()
    assert updated.get_json()["amount_cents"] == 9000
    assert updated.get_json()["options"][0]["notice_number"] == created["options"][0]["notice_number"]
    assert updated.get_json()["pagopa"]["version"] == 2
    abated = client.post(f"{url}/abatement", json={"amount_cents": 1000, "reason": "Compostaggio"}, headers=writer)
    assert abated.get_json()["amount_cents"] == 8000
    events = client.get(f"{url}/events", headers=writer).get_json()["items"]
    assert [e["kind"] for e in events] == ["created", "updated", "abated"]
    assert events[1]["actor"] == "api:tari-software"
    assert events[1]["description"] == "La posizione è stata modificata."
    pdf = client.get(f"{url}/notice.pdf", headers=writer)
    assert pdf.status_code == 409  # not on pagoPA yet: the notice cannot be paid, and the problem says why
    assert pdf.get_json()["detail"]
    key = {**writer, "Idempotency-Key": "cancel-1"}
    cancelled = client.post(f"{url}/cancel", json={"reason": "Errore di emissione"}, headers=key)
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled"
    replay = client.post(f"{url}/cancel", json={"reason": "Errore di emissione"}, headers=key)
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json()["status"] == "cancelled"
    other = client.post(f"{url}/cancel", json={"reason": "Altro"}, headers=key)
    assert other.status_code == 422
    assert client.post(f"{url}/cancel", json={"reason": "Ancora"}, headers=writer).status_code == 409
    assert len([e for e in db.session.scalars(sa.select(Event.kind)) if e == "cancelled"]) == 1
    assert client.put(url, json=content, headers=writer).status_code == 409


def test_the_openapi_document_is_3_1_and_the_docs_page_is_served(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    assert "/api/v1/positions" in document["paths"]
    assert document["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert "swagger-ui" in page.get_data(as_text=True)


def test_cli_prints_a_token_on_its_last_line(app, creditor, service):
    result = app.test_cli_runner().invoke(args=["api", "token", "create", "gestionale", "--scope", "write",
                                                "--service", "TARI"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("pbx_")
    with app.test_client() as c:
        assert c.get("/api/v1/services", headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_an_admin_creates_a_token_seen_once_and_revokes_it(client, login, make_user, service, make_service):
    mensa = make_service(code="MENSA", name="Mensa scolastica", taxonomy_code="9/0201102IM/")
    login(make_user("operatore", role="operator"))
    assert client.get("/officer/settings/api").status_code == 403
    client.post("/officer/logout")
    login(make_user("admin", role="admin"))
    refused = client.post("/officer/settings/api", data={"name": "Tari Software!", "scope": "write"})
    assert refused.status_code == 422
    assert "lettere minuscole" in refused.get_data(as_text=True)
    created = client.post("/officer/settings/api", data={"name": "mensa-app", "scope": "write",
                                                         "service_ids": [mensa.id], "expires_on": "31/12/2099"})
    assert created.status_code == 200
    assert created.headers["Cache-Control"] == "no-store"
    page = created.get_data(as_text=True)
    secret = page.split('data-testid="token-secret"')[0].rsplit('value="', 1)[1].split('"')[0]
    assert secret.startswith("pbx_")
    listed = client.get("/officer/settings/api").get_data(as_text=True)
    assert secret not in listed
    assert "mensa-app" in listed
    assert "MENSA" in listed
    bearer = {"Authorization": f"Bearer {secret}"}
    assert [s["code"] for s in client.get("/api/v1/services", headers=bearer).get_json()["items"]] == ["MENSA"]
    token = db.session.scalar(sa.select(api_tokens.ApiToken).where(api_tokens.ApiToken.name == "mensa-app"))
    assert client.post(f"/officer/settings/api/{token.id}/revoke", csrf=False).status_code == 400
    assert client.post(f"/officer/settings/api/{token.id}/revoke").status_code == 303
    assert client.get("/api/v1/services", headers=bearer).status_code == 401


def test_calls_beyond_the_rate_limit_get_429_problems(app, client, writer, monkeypatch):
    monkeypatch.setitem(app.config, "API_RATE_LIMIT", "3 per minute")
    from portal.api.limits import limiter

    limiter.reset()
    statuses = [client.get("/api/v1/services", headers=writer).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = client.get("/api/v1/services", headers=writer)
    assert limited.mimetype == "application/problem+json"
    assert "Retry-After" in limited.headers
    limiter.reset()
