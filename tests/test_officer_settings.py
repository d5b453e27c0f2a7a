"""Settings area (admins only): the Ente, its accounts, its services and its users."""

import logging

import pytest
import sqlalchemy as sa
from werkzeug.security import check_password_hash

from portal.accounts.models import Role, User
from portal.accounts.services import AccountError, create_user, set_password, update_user
from portal.extensions import db
from portal.ledger.errors import ValidationFailed
from portal.ledger.models import Account, Creditor, Service
from portal.settings import services as settings_svc
from tests.conftest import IBAN_COMUNE, PASSWORD

CF_OTHER = "00123456782"
IBAN_OTHER = "IT25O0306909606100000012345"
IBAN_SECOND = "IT78N0760103200001012345678"
EXPIRED_TAXONOMY = "9/0115119AP/"


@pytest.fixture
def admin(make_user, login):
    return login(make_user("admin", role="admin"))


@pytest.fixture
def other():
    """Another creditor with an account, a service and a user: none of them may be reached by URL."""
    comune = settings_svc.create_creditor(db.session, fiscal_code=CF_OTHER, name="Comune Altro", segregation_code="02")
    account = settings_svc.add_account(db.session, comune, iban=IBAN_OTHER, label="Tesoreria altra")
    service = Service(creditor=comune, code="IMU", name="IMU", taxonomy_code="9/0101100IM/", account=account)
    db.session.add(service)
    user = create_user(db.session, comune, username="altro", full_name="Altro", password=PASSWORD, role="admin")
    db.session.commit()
    return {"creditor": comune, "account": account, "service": service, "user": user}


@pytest.fixture
def logs(caplog, monkeypatch):
    """Capture the settings log lines.

    migrations/env.py runs ``fileConfig`` (disable_existing_loggers) when the test database is migrated, which
    disables the loggers imported before it: turn ours back on for the test.
    """
    for name in ("portal.settings.services", "portal.accounts.services"):
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
        caplog.set_level(logging.INFO, logger=name)
    return caplog


def service_form(account_id, **overrides):
    data = {"code": "MENSA", "name": "Mensa scolastica", "description": "Rette mensa", "taxonomy_code": "9/0101101IM/",
            "account_id": str(account_id), "office": "Ufficio scuola", "default_due_days": "45", "draft_first": "y",
            "active": "y"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def creditor_form(creditor, **overrides):
    data = {"name": creditor.name, "department": creditor.department or "", "fiscal_code": creditor.fiscal_code,
            "segregation_code": creditor.segregation_code, "cbill_code": "", "postal_account": "",
            "postal_authorization": "", "broker_id": "", "station_id": "", "address": "", "city": "", "province": "",
            "postal_code": "", "email": "", "pec": "", "phone": "", "website": ""}
    data.update(overrides)
    return data


def text(response):
    return response.get_data(as_text=True)


def fresh(model, ident):
    db.session.expire_all()
    return db.session.get(model, ident)


# --- access ----------------------------------------------------------------------------------------------------

#: Every route of the settings area with the methods it answers (others are a 405 for everyone).
ROUTES = {
    "/officer/settings": ("GET",),
    "/officer/settings/creditor": ("GET", "POST"),
    "/officer/settings/accounts": ("GET",),
    "/officer/settings/accounts/new": ("GET", "POST"),
    "/officer/settings/accounts/{account}": ("GET", "POST"),
    "/officer/settings/accounts/{account}/delete": ("POST",),
    "/officer/settings/services": ("GET",),
    "/officer/settings/services/new": ("GET", "POST"),
    "/officer/settings/services/{service}": ("GET", "POST"),
    "/officer/settings/users": ("GET",),
    "/officer/settings/users/new": ("GET", "POST"),
    "/officer/settings/users/{user}": ("GET", "POST"),
    "/officer/settings/users/{user}/password": ("GET", "POST"),
}
ROUTE_METHODS = [(method, url) for url, methods in ROUTES.items() for method in methods]


@pytest.mark.parametrize("role", ["operator", "viewer"])
@pytest.mark.parametrize(("method", "url"), ROUTE_METHODS)
def test_non_admins_are_refused(client, make_user, login, creditor, service, role, method, url):
    user = login(make_user("utente", role=role))
    url = url.format(account=creditor.accounts[0].id, service=service.id, user=user.id)
    response = client.open(url, method=method, data={"label": "x", "role": "admin", "code": "X", "full_name": "X",
                                                     "password": "x" * 12, "confirm": "x" * 12})
    assert response.status_code == 403
    saved = fresh(User, user.id)
    assert (saved.role, saved.full_name) == (Role(role), "Utente")
    assert check_password_hash(saved.password_hash, PASSWORD)
    assert fresh(Account, creditor.accounts[0].id).label == "Tesoreria"


@pytest.mark.parametrize("role", ["admin", "operator"])
@pytest.mark.parametrize(("method", "url"), [(m, u) for u, ms in ROUTES.items() for m in {"GET", "POST"} - set(ms)])
def test_unsupported_methods_are_refused(client, make_user, login, creditor, role, method, url):
    login(make_user("utente", role=role))
    assert client.open(url.format(account=creditor.accounts[0].id), method=method).status_code == 405


def test_anonymous_is_sent_to_login(client, ctx):
    response = client.get("/officer/settings/users")
    assert response.status_code == 302
    assert "/officer/login" in response.headers["Location"]


def test_menu_shows_settings_to_admin(client, admin):
    assert 'href="/officer/settings"' in text(client.get("/officer/settings"))


@pytest.mark.parametrize(("method", "url"), [(m, u) for m, u in ROUTE_METHODS if "{" in u])
def test_other_creditors_rows_are_not_found(client, admin, other, method, url):
    url = url.format(account=other["account"].id, service=other["service"].id, user=other["user"].id)
    response = client.open(url, method=method, data={"label": "preso", "full_name": "Preso", "role": "viewer",
                                                     "password": "x" * 12, "confirm": "x" * 12})
    assert response.status_code == 404
    assert fresh(Account, other["account"].id).label == "Tesoreria altra"
    assert fresh(User, other["user"].id).role == Role.ADMIN


def test_post_without_csrf_is_refused(client, admin, creditor):
    response = client.post("/officer/settings/accounts/new", data={"iban": IBAN_SECOND, "label": "Secondo"},
                           csrf=False)
    assert response.status_code == 400
    assert len(fresh(Creditor, creditor.id).accounts) == 1


# --- overview and creditor --------------------------------------------------------------------------------------


def test_overview_links_every_area(client, admin):
    page = text(client.get("/officer/settings"))
    for href in ("/officer/settings/creditor", "/officer/settings/accounts", "/officer/settings/services",
                 "/officer/settings/users"):
        assert f'href="{href}"' in page


def test_admin_edits_the_creditor(client, admin, creditor, logs):
    response = client.get("/officer/settings/creditor")
    assert response.status_code == 200
    assert "solo per i nuovi numeri" in text(response)
    response = client.post("/officer/settings/creditor", data=creditor_form(
        creditor, name="Comune di Prova Nuovo", segregation_code="12", cbill_code="abc12", province="rm",
        postal_code="00100", email="Tributi@Comune.it", website="https://www.comune.example.it",
        broker_id="80015010723", station_id="80015010723_01", bilingual_notices="y"))
    assert response.status_code == 302
    saved = fresh(Creditor, creditor.id)
    assert saved.name == "Comune di Prova Nuovo"
    assert saved.segregation_code == "12"
    assert (saved.cbill_code, saved.province, saved.email) == ("ABC12", "RM", "tributi@comune.it")
    assert saved.bilingual_notices is True
    assert f"changed by user:{admin.id}" in logs.text
    page = text(client.get(response.headers["Location"]))
    assert "Codice di segregazione cambiato da 01 a 12" in page


@pytest.mark.parametrize(("field", "value", "message"), [
    ("segregation_code", "47", "riservato da pagoPA"),
    ("segregation_code", "85", "riservato da pagoPA"),
    ("segregation_code", "1a", "deve essere di due cifre"),
    ("fiscal_code", "80015010724", "cifra di controllo errata"),
    ("fiscal_code", "1234", "deve essere di 11 cifre"),
    ("postal_code", "123", "Il CAP deve essere di 5 cifre"),
    ("email", "non-una-mail", "Indirizzo e-mail non valido"),
])
def test_invalid_creditor_data_is_refused(client, admin, creditor, field, value, message):
    response = client.post("/officer/settings/creditor",
                           data=creditor_form(creditor, name="Nome che non deve restare", **{field: value}))
    assert response.status_code == 422
    page = text(response)
    assert message in page
    assert f'id="{field}-error"' in page
    assert 'aria-invalid="true"' in page
    saved = fresh(Creditor, creditor.id)
    assert saved.name == "Comune di Prova"
    assert getattr(saved, field) != value


def test_fiscal_code_of_another_creditor_is_refused(client, admin, creditor, other):
    response = client.post("/officer/settings/creditor", data=creditor_form(creditor, fiscal_code=CF_OTHER))
    assert response.status_code == 422
    assert "già usato da un altro ente" in text(response)


# --- accounts ---------------------------------------------------------------------------------------------------


def test_admin_adds_and_renames_an_account(client, admin, creditor):
    response = client.post("/officer/settings/accounts/new", data={
        "iban": "it78 n076 0103 2000 0101 2345 678", "label": "Conto postale", "is_postal": "y"})
    assert response.status_code == 302
    account = db.session.scalar(sa.select(Account).where(Account.iban == IBAN_SECOND))
    assert account.creditor_id == creditor.id
    assert (account.label, account.is_postal) == ("Conto postale", True)
    assert IBAN_SECOND in text(client.get("/officer/settings/accounts"))

    response = client.post(f"/officer/settings/accounts/{account.id}", data={"label": "Poste"})
    assert response.status_code == 302
    saved = fresh(Account, account.id)
    assert (saved.label, saved.is_postal, saved.iban) == ("Poste", False, IBAN_SECOND)


@pytest.mark.parametrize(("iban", "message"), [
    ("IT60X0542811101000000123457", "IBAN non valido"),
    ("XX00", "IBAN non valido"),
    (IBAN_COMUNE, "è già registrato"),
])
def test_invalid_iban_is_refused(client, admin, creditor, iban, message):
    response = client.post("/officer/settings/accounts/new", data={"iban": iban, "label": "Nuovo"})
    assert response.status_code == 422
    assert message in text(response)
    assert 'id="iban-error"' in text(response)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Account)) == 1


def test_account_in_use_cannot_be_removed(client, admin, creditor, service):
    account = creditor.accounts[0]
    response = client.post(f"/officer/settings/accounts/{account.id}/delete")
    assert response.status_code == 302
    assert "è usato dai servizi TARI" in text(client.get(response.headers["Location"]))
    assert fresh(Account, account.id) is not None


def test_unused_account_is_removed(client, admin, creditor):
    spare = settings_svc.create_account(db.session, creditor, iban=IBAN_SECOND, label="Spare", actor="test")
    db.session.commit()
    spare_id = spare.id
    response = client.post(f"/officer/settings/accounts/{spare_id}/delete")
    assert response.status_code == 302
    assert fresh(Account, spare_id) is None


# --- services ---------------------------------------------------------------------------------------------------


def test_admin_creates_and_edits_a_service(client, admin, creditor):
    account_id = creditor.accounts[0].id
    assert client.get("/officer/settings/services/new").status_code == 200
    response = client.post("/officer/settings/services/new", data=service_form(account_id, code="mensa-2027"))
    assert response.status_code == 302
    service = db.session.scalar(sa.select(Service).where(Service.creditor_id == creditor.id))
    assert service.code == "MENSA-2027"
    assert (service.taxonomy_code, service.account_id, service.default_due_days) == ("9/0101101IM/", account_id, 45)
    assert (service.draft_first, service.spontaneous, service.active) == (True, False, True)
    assert (service.description, service.office) == ("Rette mensa", "Ufficio scuola")

    second = settings_svc.create_account(db.session, creditor, iban=IBAN_SECOND, label="Secondo", actor="test")
    db.session.commit()
    response = client.post(f"/officer/settings/services/{service.id}", data=service_form(
        second.id, code="MENSA-2027", name="Mensa", taxonomy_code="9/0101102TS/", draft_first=None, spontaneous="y",
        active=None, default_due_days="0"))
    assert response.status_code == 302
    saved = fresh(Service, service.id)
    assert (saved.name, saved.taxonomy_code, saved.account_id) == ("Mensa", "9/0101102TS/", second.id)
    assert (saved.draft_first, saved.spontaneous, saved.active, saved.default_due_days) == (False, True, False, 0)
    assert "Mensa" in text(client.get("/officer/settings/services"))


@pytest.mark.parametrize(("taxonomy_code", "message"), [
    ("9/0199999IM/", "non esiste nella tassonomia pagoPA"),
    (EXPIRED_TAXONOMY, "non è più in vigore"),
    ("TARI", "formato atteso 9/0101101IM/"),
])
def test_invalid_taxonomy_is_refused(client, admin, creditor, taxonomy_code, message):
    response = client.post("/officer/settings/services/new",
                           data=service_form(creditor.accounts[0].id, taxonomy_code=taxonomy_code))
    assert response.status_code == 422
    page = text(response)
    assert message in page
    assert 'id="taxonomy_code-error"' in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Service)) == 0


def test_invalid_taxonomy_on_edit_changes_nothing(client, admin, service):
    response = client.post(f"/officer/settings/services/{service.id}", data=service_form(
        service.account_id, code="TARI", name="Nome nuovo", taxonomy_code=EXPIRED_TAXONOMY))
    assert response.status_code == 422
    saved = fresh(Service, service.id)
    assert (saved.name, saved.taxonomy_code) == ("TARI - Tassa rifiuti", "9/0101101IM/")


def test_duplicate_service_code_is_refused(client, admin, make_service, creditor):
    make_service(code="TARI")
    other = make_service(code="IMU", name="IMU", taxonomy_code="9/0101100IM/")
    response = client.post("/officer/settings/services/new", data=service_form(creditor.accounts[0].id, code="tari"))
    assert response.status_code == 422
    assert "Esiste già un servizio con codice TARI" in text(response)
    response = client.post(f"/officer/settings/services/{other.id}",
                           data=service_form(creditor.accounts[0].id, code="TARI"))
    assert response.status_code == 422
    assert fresh(Service, other.id).code == "IMU"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Service)) == 2


def test_same_service_code_is_allowed_for_another_creditor(client, admin, creditor, other):
    response = client.post("/officer/settings/services/new", data=service_form(creditor.accounts[0].id, code="IMU"))
    assert response.status_code == 302


@pytest.mark.parametrize(("code", "message"), [
    ("TARI 2027", "Il codice ammette solo"),
    ("X" * 36, "Il codice ammette solo"),
])
def test_malformed_service_code_is_refused(client, admin, creditor, code, message):
    response = client.post("/officer/settings/services/new", data=service_form(creditor.accounts[0].id, code=code))
    assert response.status_code == 422
    assert message in text(response)


def test_account_of_another_creditor_cannot_be_chosen(client, admin, creditor, other):
    response = client.post("/officer/settings/services/new", data=service_form(other["account"].id))
    assert response.status_code == 422
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Service).where(
        Service.creditor_id == creditor.id)) == 0


def test_service_functions_refuse_another_creditors_account(ctx, creditor, other):
    data = settings_svc.ServiceInput(code="X", name="X", taxonomy_code="9/0101101IM/",
                                     account_id=other["account"].id)
    with pytest.raises(ValidationFailed) as exc:
        settings_svc.create_service(db.session, creditor, data, actor="test")
    assert "account_id" in exc.value.by_field()


# --- users ------------------------------------------------------------------------------------------------------


def user_form(**overrides):
    data = {"username": "Mario.Rossi", "full_name": "Mario Rossi", "email": "mario@comune.it", "role": "operator",
            "password": "una-password-lunga", "confirm": "una-password-lunga"}
    data.update(overrides)
    return data


def test_admin_creates_a_scoped_user_with_a_hashed_password(client, admin, make_service, logs):
    tari = make_service(code="TARI")
    make_service(code="IMU", name="IMU", taxonomy_code="9/0101100IM/")
    assert client.get("/officer/settings/users/new").status_code == 200
    response = client.post("/officer/settings/users/new", data=user_form(service_ids=[str(tari.id)]))
    assert response.status_code == 302
    user = db.session.scalar(sa.select(User).where(User.username == "mario.rossi"))
    assert user.role == Role.OPERATOR
    assert user.service_scope() == {tari.id}
    assert user.password_hash != "una-password-lunga"
    assert check_password_hash(user.password_hash, "una-password-lunga")
    assert f"created by user:{admin.id}" in logs.text
    assert "una-password-lunga" not in logs.text
    assert "mario.rossi" in text(client.get("/officer/settings/users"))


def test_user_without_scope_sees_every_service(client, admin, service):
    response = client.post("/officer/settings/users/new", data=user_form(role="viewer"))
    assert response.status_code == 302
    user = db.session.scalar(sa.select(User).where(User.username == "mario.rossi"))
    assert user.service_scope() is None


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"password": "corta", "confirm": "corta"}, "password", "almeno 10 caratteri"),
    ({"confirm": "un-altra-password"}, "confirm", "Le due password non coincidono"),
    ({"username": "admin"}, "username", "è già in uso"),
    ({"username": "con spazi"}, "username", "Il nome utente ammette"),
    ({"full_name": ""}, "full_name", "Indicare nome e cognome"),
    ({"role": "superuser"}, "role", ""),
])
def test_invalid_user_is_refused(client, admin, overrides, field, message):
    response = client.post("/officer/settings/users/new", data=user_form(**overrides))
    assert response.status_code == 422
    assert message in text(response)
    assert f'id="{field}-error"' in text(response)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_admin_edits_a_user(client, admin, make_user, make_service):
    tari = make_service(code="TARI")
    user = make_user("operatore", role="operator")
    page = text(client.get(f"/officer/settings/users/{user.id}"))
    assert "Operatore" in page
    response = client.post(f"/officer/settings/users/{user.id}", data={
        "full_name": "Anna Bianchi", "email": "anna@comune.it", "role": "viewer", "service_ids": [str(tari.id)]})
    assert response.status_code == 302
    saved = fresh(User, user.id)
    assert (saved.full_name, saved.email, saved.role, saved.active) == ("Anna Bianchi", "anna@comune.it",
                                                                        Role.VIEWER, False)
    assert saved.service_scope() == {tari.id}

    response = client.post(f"/officer/settings/users/{user.id}", data={
        "full_name": "Anna Bianchi", "email": "", "role": "operator", "active": "y"})
    assert response.status_code == 302
    saved = fresh(User, user.id)
    assert (saved.role, saved.active, saved.service_scope(), saved.email) == (Role.OPERATOR, True, None, None)


def test_scope_with_service_of_another_creditor_is_refused(client, admin, make_user, other):
    user = make_user("operatore")
    response = client.post(f"/officer/settings/users/{user.id}", data={
        "full_name": "Operatore", "role": "operator", "active": "y", "service_ids": [str(other["service"].id)]})
    assert response.status_code == 422
    assert fresh(User, user.id).services == []


@pytest.mark.parametrize(("data", "message"), [
    ({"role": "operator", "active": "y"}, "togliere a sé stessi il ruolo di amministratore"),
    ({"role": "admin"}, "disattivare la propria utenza"),
])
def test_admin_cannot_demote_or_deactivate_themselves(client, admin, data, message):
    response = client.post(f"/officer/settings/users/{admin.id}", data={"full_name": "Admin", **data})
    assert response.status_code == 422
    assert message in text(response)
    saved = fresh(User, admin.id)
    assert (saved.role, saved.active) == (Role.ADMIN, True)
    assert client.get("/officer/settings").status_code == 200


def test_admin_can_demote_another_admin(client, admin, make_user):
    other_admin = make_user("admin2", role="admin")
    response = client.post(f"/officer/settings/users/{other_admin.id}",
                           data={"full_name": "Admin2", "role": "viewer", "active": "y"})
    assert response.status_code == 302
    assert fresh(User, other_admin.id).role == Role.VIEWER


def test_admin_resets_a_password(client, admin, make_user, logs):
    user = make_user("operatore")
    old_hash = user.password_hash
    assert client.get(f"/officer/settings/users/{user.id}/password").status_code == 200
    response = client.post(f"/officer/settings/users/{user.id}/password",
                           data={"password": "nuova-password-1", "confirm": "nuova-password-1"})
    assert response.status_code == 302
    saved = fresh(User, user.id)
    assert saved.password_hash not in (old_hash, "nuova-password-1")
    assert check_password_hash(saved.password_hash, "nuova-password-1")
    assert "nuova-password-1" not in logs.text
    assert f"password set by user:{admin.id}" in logs.text


def test_short_reset_password_is_refused(client, admin, make_user):
    user = make_user("operatore")
    response = client.post(f"/officer/settings/users/{user.id}/password",
                           data={"password": "corta", "confirm": "corta"})
    assert response.status_code == 422
    assert "almeno 10 caratteri" in text(response)
    assert check_password_hash(fresh(User, user.id).password_hash, PASSWORD)


def test_user_services_refuse_lock_out_and_short_passwords(ctx, creditor):
    admin = create_user(db.session, creditor, username="capo", full_name="Capo", password=PASSWORD, role="admin")
    with pytest.raises(AccountError):
        update_user(db.session, admin, by=admin, full_name="Capo", email=None, role=Role.VIEWER, services=[],
                    active=True)
    with pytest.raises(AccountError):
        set_password(db.session, admin, "breve", by=admin)
    assert admin.role == Role.ADMIN


def test_settings_services_validate_on_their_own(ctx, creditor):
    """The domain functions refuse bad input even when no form checked it first, and change nothing."""
    with pytest.raises(ValidationFailed) as exc:
        settings_svc.update_creditor(db.session, creditor, settings_svc.CreditorInput(
            name="Altro nome", fiscal_code="80015010724", segregation_code="47"), actor="test")
    assert set(exc.value.by_field()) == {"fiscal_code", "segregation_code"}
    assert (creditor.name, creditor.segregation_code) == ("Comune di Prova", "01")
    with pytest.raises(ValidationFailed) as exc:
        settings_svc.create_account(db.session, creditor, iban="IT00X0000", label="", actor="test")
    assert set(exc.value.by_field()) == {"iban", "label"}
    with pytest.raises(ValidationFailed) as exc:
        settings_svc.create_service(db.session, creditor, settings_svc.ServiceInput(
            code="ok", name="Ok", taxonomy_code=EXPIRED_TAXONOMY, account_id=creditor.accounts[0].id,
            default_due_days=-1), actor="test")
    assert set(exc.value.by_field()) == {"taxonomy_code", "default_due_days"}
    assert not db.session.new
    assert not db.session.dirty
