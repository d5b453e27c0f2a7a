"""Impostazioni → Interessi, sanzioni e solleciti: the legal-rate table and the services' policies, admins only,
every change in the history."""

from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa

from portal.collections.history import SettingChange
from portal.collections.models import CollectionPolicy, LegalRate
from portal.collections.settings import POLICY_FIELDS, policy_values
from portal.extensions import db
from tests.test_officer_settings import fresh, text

BASE = "/officer/settings/collections"


@pytest.fixture
def admin(make_user, login):
    return login(make_user("admin", role="admin"))


def rates() -> dict[date, tuple[Decimal, str]]:
    db.session.expire_all()
    return {r.effective_from: (r.percent, r.decree) for r in db.session.scalars(sa.select(LegalRate))}


def history() -> list[tuple]:
    db.session.expire_all()
    return [(c.subject, c.field, c.old_value, c.new_value)
            for c in db.session.scalars(sa.select(SettingChange).order_by(SettingChange.id))]


def assert_in_history(page: str, *texts: str) -> None:
    """Each text is shown in the page's history table."""
    shown = page.split('data-testid="settings-history"')[1]
    for expected in texts:
        assert expected in shown, expected


def policy_form(**overrides) -> dict:
    """The policy form as the page sends it with the defaults (amounts in euro, decimals with a comma)."""
    data = {"grace_days": "0", "reminder_days": "30", "reminder_cost_cents": "0,00", "requires_reminder": "y",
            "interest_spread": "0", "interest_divisor": "365", "penalty_kind": "percent",
            "penalty_percent_before": "30", "penalty_percent_after": "25", "penalty_regime_change": "01/09/2024",
            "penalty_fixed_cents": "0,00", "penalty_min_cents": "", "penalty_max_cents": "",
            "penalty_reduce_late": "y", "penalty_half_within_days": "90", "penalty_daily_within_days": "15",
            "notification_method": "raccomandata_ar", "notification_cents": "7,83", "appeal_days": "60",
            "late_spread": "2", "late_delay_days": "30", "charges_early_percent": "3",
            "charges_early_cap_cents": "300,00", "charges_late_percent": "6", "charges_late_cap_cents": "600,00",
            "charges_window_days": "60", "assessment_taxonomy_code": "", "penalty_taxonomy_code": "",
            "costs_taxonomy_code": ""}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_the_policy_form_covers_every_setting_of_the_model():
    editable = {c.key for c in CollectionPolicy.__table__.columns} - {"service_id", "updated_at"}
    assert {name for name, _kind, _label in POLICY_FIELDS} == editable
    assert set(policy_form()) == editable


# --- access -----------------------------------------------------------------------------------------------------


def routes(rate_id, service_id):
    return [("GET", BASE), ("POST", f"{BASE}/rates"), ("GET", f"{BASE}/rates/{rate_id}"),
            ("POST", f"{BASE}/rates/{rate_id}"), ("POST", f"{BASE}/rates/{rate_id}/delete"),
            ("GET", f"{BASE}/services/{service_id}"), ("POST", f"{BASE}/services/{service_id}"),
            ("POST", f"{BASE}/services/{service_id}/check")]


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_non_admins_get_403_and_change_nothing(client, make_user, login, service, legal_rates, role):
    login(make_user("utente", role=role))
    rate_id = db.session.scalar(sa.select(LegalRate.id).where(LegalRate.effective_from == date(2026, 1, 1)))
    for method, url in routes(rate_id, service.id):
        response = client.open(url.format(), method=method,
                               data={"effective_from": "01/01/2026", "percent": "9", **policy_form(grace_days="9")})
        assert response.status_code == 403, (method, url)
    assert rates()[date(2026, 1, 1)][0] == Decimal("1.600")
    assert db.session.get(CollectionPolicy, service.id) is None
    assert history() == []


def test_posts_without_csrf_are_refused(client, admin, service, legal_rates):
    rate_id = db.session.scalar(sa.select(LegalRate.id).where(LegalRate.effective_from == date(2026, 1, 1)))
    for method, url in routes(rate_id, service.id):
        if method == "POST":
            response = client.post(url, data={"effective_from": "01/01/2027", "percent": "9",
                                              **policy_form(grace_days="9")}, csrf=False)
            assert response.status_code == 400, url
    assert len(rates()) == 16
    assert history() == []


def test_settings_overview_links_the_page(client, admin):
    assert f'href="{BASE}"' in text(client.get("/officer/settings"))


def test_another_creditors_service_is_not_found(client, admin, make_service, creditor):
    from portal.ledger.models import Service
    from portal.settings import services as settings_svc

    comune = settings_svc.create_creditor(db.session, fiscal_code="00123456782", name="Comune Altro",
                                          segregation_code="02")
    account = settings_svc.add_account(db.session, comune, iban="IT25O0306909606100000012345", label="Altra")
    theirs = Service(creditor=comune, code="IMU", name="IMU", taxonomy_code="9/0101100IM/", account=account)
    db.session.add(theirs)
    db.session.commit()
    assert client.get(f"{BASE}/services/{theirs.id}").status_code == 404
    assert client.post(f"{BASE}/services/{theirs.id}", data=policy_form(grace_days="5")).status_code == 404
    assert db.session.get(CollectionPolicy, theirs.id) is None


# --- the legal-rate table ----------------------------------------------------------------------------------------


def test_the_page_shows_the_table_with_each_period(client, admin, service, legal_rates):
    page = text(client.get(BASE))
    assert "01/01/2026" in page
    assert "1,6%" in page
    assert "DM 10/12/2025" in page
    assert "31/12/2025" in page  # the 2025 rate's last day
    assert f'href="{BASE}/services/{service.id}"' in page


def test_admin_adds_a_period_and_it_goes_to_the_history(client, admin, legal_rates):
    response = client.post(f"{BASE}/rates", data={"effective_from": "01/01/2027", "percent": "1,25",
                                                  "decree": "DM 11/12/2026"})
    assert response.status_code == 303
    assert rates()[date(2027, 1, 1)] == (Decimal("1.250"), "DM 11/12/2026")
    assert history() == [("legal_rate", "effective_from", None, "2027-01-01"), ("legal_rate", "percent", None, "1.25"),
                         ("legal_rate", "decree", None, "DM 11/12/2026")]
    page = text(client.get(BASE))
    assert "Tasso legale dal 01/01/2027 salvato." in page
    assert_in_history(page, "Admin", "1,25", "Tasso legale dal 01/01/2027")


def test_the_same_period_again_changes_nothing_twice(client, admin, legal_rates):
    data = {"effective_from": "01/01/2027", "percent": "1,25", "decree": "DM 11/12/2026"}
    client.post(f"{BASE}/rates", data=data)
    client.post(f"{BASE}/rates", data=data)
    assert len(history()) == 3
    assert len(rates()) == 17


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"effective_from": "", "percent": "1,6"}, "effective_from", "Indicare la data da cui il tasso è in vigore"),
    ({"effective_from": "31/02/2027", "percent": "1,6"}, "effective_from", "Indicare la data"),
    ({"effective_from": "01/01/2027", "percent": "uno"}, "percent", "Tasso non valido"),
    ({"effective_from": "01/01/2027", "percent": "120"}, "percent", "Tasso non valido"),
    ({"effective_from": "01/01/2027", "percent": "1,23456"}, "percent", "al più tre decimali"),
])
def test_a_wrong_rate_is_refused_with_the_field(client, admin, legal_rates, data, field, message):
    response = client.post(f"{BASE}/rates", data=data)
    assert response.status_code == 422
    page = text(response)
    assert f'id="{field}" ' in page.split(f'id="{field}-error"')[0][-800:]
    error_box = page.split(f'id="{field}-error"')[1].split("</div>")[0]
    assert message in error_box
    assert f'<a href="#{field}">' in page  # the summary links to the field
    assert len(rates()) == 16
    assert history() == []


def test_admin_corrects_a_row_date_and_rate(client, admin, legal_rates):
    rate_id = db.session.scalar(sa.select(LegalRate.id).where(LegalRate.effective_from == date(2026, 1, 1)))
    form = text(client.get(f"{BASE}/rates/{rate_id}"))
    assert 'value="01/01/2026"' in form
    assert 'value="1,6"' in form
    response = client.post(f"{BASE}/rates/{rate_id}", data={
        "edit-effective_from": "01/01/2026", "edit-percent": "1,7",
        "edit-decree": "DM 10/12/2025 (GU 289 del 13/12/2025)"})
    assert response.status_code == 303
    assert rates()[date(2026, 1, 1)][0] == Decimal("1.700")
    assert history() == [("legal_rate", "percent", "1.6", "1.7")]


def test_a_correction_cannot_take_the_date_of_another_row(client, admin, legal_rates):
    rate_id = db.session.scalar(sa.select(LegalRate.id).where(LegalRate.effective_from == date(2026, 1, 1)))
    response = client.post(f"{BASE}/rates/{rate_id}", data={"edit-effective_from": "01/01/2025", "edit-percent": "1,6"})
    assert response.status_code == 422
    assert "Esiste già un tasso in vigore dal 01/01/2025" in text(response)
    assert rates()[date(2025, 1, 1)][0] == Decimal("2.000")
    assert history() == []


def test_admin_removes_a_row_entered_by_mistake(client, admin, legal_rates):
    client.post(f"{BASE}/rates", data={"effective_from": "01/01/2031", "percent": "4"})
    rate_id = db.session.scalar(sa.select(LegalRate.id).where(LegalRate.effective_from == date(2031, 1, 1)))
    response = client.post(f"{BASE}/rates/{rate_id}/delete")
    assert response.status_code == 303
    assert date(2031, 1, 1) not in rates()
    assert history()[-2:] == [("legal_rate", "effective_from", "2031-01-01", None),
                              ("legal_rate", "percent", "4", None)]
    assert client.post(f"{BASE}/rates/{rate_id}/delete").status_code == 404


def test_the_last_rate_is_kept(client, admin, ctx):
    client.post(f"{BASE}/rates", data={"effective_from": "01/01/2026", "percent": "1,6"})
    rate_id = db.session.scalar(sa.select(LegalRate.id))
    refused = client.post(f"{BASE}/rates/{rate_id}/delete", headers={"HX-Request": "true"})
    assert refused.status_code == 422
    assert "È l&#39;ultimo tasso della tabella" in text(refused)
    plain = client.post(f"{BASE}/rates/{rate_id}/delete", follow_redirects=True)
    assert "ultimo tasso della tabella" in text(plain)
    assert len(rates()) == 1


def test_htmx_gets_the_table_and_the_history_out_of_band(client, admin, legal_rates):
    headers = {"HX-Request": "true", "HX-Target": "legal-rates"}
    response = client.post(f"{BASE}/rates", data={"effective_from": "01/01/2027", "percent": "1,25"}, headers=headers)
    assert response.status_code == 200
    page = text(response)
    assert page.lstrip().startswith('<div id="legal-rates">')
    assert "Tasso legale dal 01/01/2027 salvato." in page
    assert 'id="settings-history" hx-swap-oob="true"' in page
    assert "<html" not in page
    refused = client.post(f"{BASE}/rates", data={"effective_from": "", "percent": "x"}, headers=headers)
    assert refused.status_code == 422
    assert "Tasso non valido" in text(refused)
    assert "<html" not in text(refused)
    editing = text(client.get(f"{BASE}/rates/1", headers=headers))
    assert 'data-testid="rate-editing"' in editing
    assert "<html" not in editing


# --- a service's policy --------------------------------------------------------------------------------------------


def test_the_policy_form_shows_the_defaults_in_euro(client, admin, service):
    page = text(client.get(f"{BASE}/services/{service.id}"))
    assert 'value="7,83"' in page
    assert 'value="300,00"' in page
    assert 'value="01/09/2024"' in page
    for label in ("Sanzione minima", "Sanzione massima", "Interessi di mora c.802: giorni dopo",
                  "Oneri di riscossione entro la finestra: massimo", "Finestra degli oneri ridotti",
                  "Sanzione ridotta alla metà"):
        assert label in page, label


def test_admin_changes_spread_penalty_and_caps(client, admin, service):
    response = client.post(f"{BASE}/services/{service.id}", data=policy_form(
        interest_spread="+1,5", penalty_percent_after="20", penalty_max_cents="1.234,56", charges_window_days="45",
        penalty_reduce_late=None, penalty_taxonomy_code="9/0101106SA/"))
    assert response.status_code == 303, text(response)
    policy = fresh(CollectionPolicy, service.id)
    assert (policy.interest_spread, policy.penalty_percent_after, policy.penalty_max_cents) == (
        Decimal("1.50"), Decimal("20.000"), 123456)
    assert (policy.charges_window_days, policy.penalty_reduce_late, policy.penalty_taxonomy_code) == (
        45, False, "9/0101106SA/")
    assert policy.penalty_rule().reduce_late is False
    assert sorted(history()) == sorted([
        ("policy", "interest_spread", "0", "1.5"), ("policy", "penalty_percent_after", "25", "20"),
        ("policy", "penalty_max_cents", None, "123456"), ("policy", "charges_window_days", "60", "45"),
        ("policy", "penalty_reduce_late", "true", "false"), ("policy", "penalty_taxonomy_code", None, "9/0101106SA/")])
    page = text(client.get(f"{BASE}/services/{service.id}"))
    assert "Impostazioni di TARI salvate." in page
    assert_in_history(page, "1.234,56", "1,5", "Sanzione massima")


def test_saving_the_same_policy_changes_nothing(client, admin, service):
    client.post(f"{BASE}/services/{service.id}", data=policy_form())
    assert db.session.get(CollectionPolicy, service.id) is None  # still the defaults, nothing stored
    client.post(f"{BASE}/services/{service.id}", data=policy_form(grace_days="5"))
    client.post(f"{BASE}/services/{service.id}", data=policy_form(grace_days="5"))
    assert history() == [("policy", "grace_days", "0", "5")]


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"interest_spread": "3,5"}, "interest_spread", "fra -3 e 3"),
    ({"interest_spread": "tre"}, "interest_spread", "Indicare un numero"),
    ({"reminder_days": "0"}, "reminder_days", "fra 1 e 3650"),
    ({"grace_days": "dieci"}, "grace_days", "numero intero di giorni"),
    ({"grace_days": ""}, "grace_days", "Indicare un valore."),
    ({"notification_cents": "7,835"}, "notification_cents", "al massimo due decimali"),
    ({"charges_late_cap_cents": "-5"}, "charges_late_cap_cents", "non può essere negativo"),
    ({"penalty_percent_after": "120"}, "penalty_percent_after", "fra 0 e 100"),
    ({"penalty_regime_change": "31/02/2024"}, "penalty_regime_change", "Data non valida"),
    ({"penalty_min_cents": "50,00", "penalty_max_cents": "10,00"}, "penalty_max_cents", "minore della minima"),
    ({"penalty_daily_within_days": "100"}, "penalty_daily_within_days", "non possono superare"),
    ({"penalty_taxonomy_code": "9/XYZ/"}, "penalty_taxonomy_code", "tassonomic"),
    ({"penalty_kind": "doppia"}, "penalty_kind", "Scelta non prevista"),
])
def test_a_wrong_policy_is_refused_with_the_field(client, admin, service, overrides, field, message):
    response = client.post(f"{BASE}/services/{service.id}", data=policy_form(**overrides))
    assert response.status_code == 422
    page = text(response)
    error_box = page.split(f'id="{field}-error"')[1].split("</div>")[0]
    assert message.lower() in error_box.lower(), error_box
    assert f'<a href="#{field}">' in page
    assert db.session.get(CollectionPolicy, service.id) is None
    assert history() == []


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"interest_spread": "3,5"}, "interest_spread", "Indicare un numero fra -3 e 3, al più 2 decimali."),
    ({"grace_days": ""}, "grace_days", "Indicare un valore."),
    ({"penalty_min_cents": "50,00", "penalty_max_cents": "10,00"}, "penalty_max_cents",
     "La sanzione massima non può essere minore della minima."),
    ({"interest_spread": "-2,5"}, "interest_spread", ""),
])
def test_a_field_is_checked_as_it_is_typed(client, admin, service, overrides, field, message):
    response = client.post(f"{BASE}/services/{service.id}/check", data=policy_form(**overrides),
                           headers={"HX-Request": "true", "HX-Trigger-Name": field})
    assert response.status_code == 200
    assert text(response) == message
    assert db.session.get(CollectionPolicy, service.id) is None
    assert client.post(f"{BASE}/services/{service.id}/check", data=policy_form(),
                       headers={"HX-Request": "true", "HX-Trigger-Name": "nope"}).status_code == 400


def test_stored_policy_values_round_trip_through_the_form(client, admin, service):
    client.post(f"{BASE}/services/{service.id}", data=policy_form(penalty_min_cents="5,00", late_spread="1,25"))
    before = policy_values(fresh(CollectionPolicy, service.id))
    page = text(client.get(f"{BASE}/services/{service.id}"))
    assert 'value="5,00"' in page
    assert 'value="1,25"' in page
    client.post(f"{BASE}/services/{service.id}", data=policy_form(penalty_min_cents="5,00", late_spread="1,25"))
    assert policy_values(fresh(CollectionPolicy, service.id)) == before
    assert len(history()) == 2
