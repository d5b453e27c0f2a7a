"""Manual entry of a new position (``officer.new_position``): roles, scope, parsing, errors, installments, transfers."""

from datetime import date, timedelta

import lxml.html
import pytest
import sqlalchemy as sa
from flask import url_for

from portal.extensions import db
from portal.ledger.models import Position, Transfer
from portal.ledger.plans import add_months, monthly_due_dates, split_by_ratio, split_evenly
from tests.conftest import CF_COMUNE, CF_PERSON, IBAN_COMUNE

URL = "/officer/positions/new"
VALIDATE_URL = "/officer/positions/new/validate"
#: Provincia di Roma (Città metropolitana), beneficiary of the TEFA collected with the TARI.
CF_PROVINCIA = "80034390585"
IBAN_PROVINCIA = "IT08L0306903200000100000046"
TAXONOMY_TEFA = "9/0201102IM/"
HTMX = {"HX-Request": "true"}


def days(n: int) -> str:
    return (date.today() + timedelta(days=n)).isoformat()


def form(service, **overrides) -> dict:
    """A valid single payment of 1.020,99 € as the browser posts it."""
    data = {
        "service_id": str(service.id),
        "debtor_fiscal_code": CF_PERSON,
        "debtor_name": "Mario Rossi",
        "debtor_street": "Via Roma",
        "debtor_civic_number": "1",
        "debtor_postal_code": "00100",
        "debtor_city": "Roma",
        "debtor_province": "rm",
        "debtor_email": "mario.rossi@example.it",
        "debtor_pec": "",
        "subject": "TARI 2027",
        "external_id": "",
        "mode": "single",
        "single_amount": "1.020,99",
        "single_due_date": days(30),
        "installment_count": "",
        "plan_total": "",
        "plan_first_due": "",
        "transfers-0-iban": "",
        "transfers-0-taxonomy_code": "",
        "transfers-0-amount": "",
        "action": "save",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def installment_rows(*rows) -> dict:
    """``(amount, due date)`` pairs as installment rows."""
    data = {}
    for n, (amount, due) in enumerate(rows):
        data[f"installments-{n}-amount"] = amount
        data[f"installments-{n}-due_date"] = due
    return data


def province_row(index=1, amount="10,00", **overrides) -> dict:
    row = {"beneficiary_fiscal_code": CF_PROVINCIA, "beneficiary_name": "Provincia di Roma",
           "iban": IBAN_PROVINCIA, "taxonomy_code": TAXONOMY_TEFA, "amount": amount}
    row.update(overrides)
    return {f"transfers-{index}-{k}": v for k, v in row.items()}


def doc(response):
    return lxml.html.fromstring(response.get_data(as_text=True))


def error_of(response, field_id: str) -> str:
    """The text of a field's error box (``<id>-error``), as the page shows it next to the field."""
    boxes = doc(response).xpath(f'//*[@id="{field_id}-error"]')
    assert len(boxes) == 1, f"no single error box for {field_id}"
    return boxes[0].text_content().strip()


def count_positions() -> int:
    return db.session.scalar(sa.select(sa.func.count(Position.id)))


def flashes(client) -> list:
    with client.session_transaction() as session:
        return list(session.get("_flashes", []))


@pytest.fixture
def operator(make_user, login, service):
    return login(make_user(username="operatore", role="operator"))


# --- Access ---------------------------------------------------------------------------------------------------


def test_form_renders_for_operator(client, operator, service):
    response = client.get(URL)
    assert response.status_code == 200
    page = doc(response)
    assert page.xpath('//h1')[0].text_content().strip() == "Nuova posizione debitoria"
    options = page.xpath('//select[@id="service_id"]/option/@value')
    assert options == ["", str(service.id)]
    # Every field has a label and its error box is announced.
    for field_id in ("debtor_fiscal_code", "single_amount", "transfers-0-iban"):
        assert page.xpath(f'//label[@for="{field_id}"]')
        field = page.xpath(f'//*[@id="{field_id}"]')[0]
        assert f"{field_id}-error" in field.get("aria-describedby")
        assert field.get("hx-post") == VALIDATE_URL
        assert page.xpath(f'//*[@id="{field_id}-error"]/@aria-live') == ["polite"]


def test_admin_may_enter_positions(client, make_user, login, service):
    login(make_user(username="admin", role="admin"))
    assert client.get(URL).status_code == 200


def test_anonymous_is_sent_to_login(client, service):
    response = client.get(URL)
    assert response.status_code == 302
    assert "/officer/login" in response.headers["Location"]


def test_viewer_is_refused(client, make_user, login, service):
    login(make_user(username="lettore", role="viewer"))
    assert client.get(URL).status_code == 403
    assert client.post(URL, data=form(service)).status_code == 403
    assert client.post(VALIDATE_URL, data=form(service), headers=HTMX).status_code == 403
    assert count_positions() == 0


def test_operator_sees_and_uses_only_services_in_scope(client, make_service, make_user, login, service):
    mensa = make_service(code="MENSA", name="Mensa scolastica", taxonomy_code="9/0101101IM/")
    login(make_user(username="mensa", role="operator", services=[mensa]))
    page = doc(client.get(URL))
    assert page.xpath('//select[@id="service_id"]/option/@value') == ["", str(mensa.id)]

    response = client.post(URL, data=form(service))  # TARI: not in this operator's scope
    assert response.status_code == 422
    assert "Servizio non disponibile" in error_of(response, "service_id")
    assert count_positions() == 0

    assert client.post(URL, data=form(mensa)).status_code == 303
    assert count_positions() == 1


@pytest.mark.parametrize("service_id", ["", "9999", "abc"])
def test_unknown_or_missing_service_is_refused(client, operator, service, service_id):
    response = client.post(URL, data=form(service, service_id=service_id))
    assert response.status_code == 422
    assert error_of(response, "service_id")
    assert count_positions() == 0


def test_inactive_service_is_not_offered_nor_accepted(client, operator, make_service, service):
    old = make_service(code="OLD", name="Servizio dismesso", active=False)
    assert str(old.id) not in doc(client.get(URL)).xpath('//select[@id="service_id"]/option/@value')
    response = client.post(URL, data=form(old))
    assert response.status_code == 422
    assert "Servizio non disponibile" in error_of(response, "service_id")
    assert count_positions() == 0


def test_post_without_csrf_token_is_refused(client, operator, service):
    response = client.post(URL, data=form(service), csrf=False)
    assert response.status_code == 400
    assert count_positions() == 0


# --- Creating -------------------------------------------------------------------------------------------------


def test_single_payment_is_created_and_redirects_to_the_position(client, operator, service, creditor):
    response = client.post(URL, data=form(service))
    assert response.status_code == 303
    position = db.session.scalars(sa.select(Position)).one()
    assert response.headers["Location"] == url_for("officer.position", position_id=position.id, _external=False)
    assert response.headers["Location"].endswith(f"/officer/positions/{position.id}")
    assert ("success", "Posizione creata.") in flashes(client)

    assert position.amount_cents == 102099
    assert position.subject == "TARI 2027"
    assert position.source == "manual"
    assert position.created_by_id == operator.id
    assert position.events[0].actor == f"user:{operator.id}"
    assert position.debtor.kind == "F"  # derived from the codice fiscale
    assert position.debtor.province == "RM"
    (option,) = position.options
    assert option.kind == "single"
    assert option.due_date == date.today() + timedelta(days=30)
    (transfer,) = option.transfers
    assert (transfer.amount_cents, transfer.iban, transfer.taxonomy_code, transfer.beneficiary_fiscal_code) == (
        102099, IBAN_COMUNE, service.taxonomy_code, CF_COMUNE)


def test_legal_person_debtor_gets_kind_g(client, operator, service):
    assert client.post(URL, data=form(service, debtor_fiscal_code=CF_PROVINCIA,
                                      debtor_name="Provincia di Roma")).status_code == 303
    assert db.session.scalars(sa.select(Position)).one().debtor.kind == "G"


def test_installment_plan_is_created(client, operator, service):
    data = form(service, mode="installments", single_amount="", **installment_rows(
        ("100,01", days(30)), ("100,00", days(60)), ("1.000,00", days(90))))
    response = client.post(URL, data=data)
    assert response.status_code == 303, error_summary(response)
    position = db.session.scalars(sa.select(Position)).one()
    assert [o.kind for o in position.options] == ["installment"] * 3
    assert [o.amount_cents for o in position.options] == [10001, 10000, 100000]
    assert [o.installment_number for o in position.options] == [1, 2, 3]
    assert position.amount_cents == 120001
    assert position.due_date == date.today() + timedelta(days=30)
    assert [[t.amount_cents for t in o.transfers] for o in position.options] == [[10001], [10000], [100000]]


def test_single_payment_and_plan_are_created_together(client, operator, service):
    data = form(service, mode="both", single_amount="300,00", **installment_rows(
        ("150,00", days(30)), ("150,00", days(60))))
    assert client.post(URL, data=data).status_code == 303
    position = db.session.scalars(sa.select(Position)).one()
    assert [(o.kind, o.amount_cents) for o in position.options] == [
        ("single", 30000), ("installment", 15000), ("installment", 15000)]
    assert position.amount_cents == 30000
    assert len({o.notice_number for o in position.options}) == 3


def test_single_mode_ignores_installment_rows_and_vice_versa(client, operator, service):
    data = form(service, mode="single", **installment_rows(("abc", "ieri")))
    assert client.post(URL, data=data).status_code == 303
    assert [o.kind for o in db.session.scalars(sa.select(Position)).one().options] == ["single"]


def test_tefa_goes_to_the_province(client, operator, service):
    data = form(service, single_amount="105,00", **{"transfers-0-amount": "100,00"}, **province_row(amount="5,00"))
    response = client.post(URL, data=data)
    assert response.status_code == 303, error_summary(response)
    (option,) = db.session.scalars(sa.select(Position)).one().options
    comune, provincia = option.transfers
    assert (comune.index, comune.amount_cents, comune.beneficiary_fiscal_code, comune.iban) == (
        1, 10000, CF_COMUNE, IBAN_COMUNE)
    assert comune.beneficiary_name == "Comune di Prova"
    assert (provincia.index, provincia.amount_cents, provincia.beneficiary_fiscal_code, provincia.beneficiary_name,
            provincia.iban, provincia.taxonomy_code) == (
        2, 500, CF_PROVINCIA, "Provincia di Roma", IBAN_PROVINCIA, TAXONOMY_TEFA)


def test_blank_extra_beneficiary_rows_are_ignored(client, operator, service):
    blank = {f"transfers-1-{k}": "" for k in ("beneficiary_fiscal_code", "beneficiary_name", "iban",
                                              "taxonomy_code", "amount")}
    assert client.post(URL, data=form(service, **blank)).status_code == 303
    assert len(db.session.scalars(sa.select(Transfer)).all()) == 1


def test_installments_split_beneficiaries_in_the_same_ratio(client, operator, service):
    """Plan only: the beneficiary amounts split the plan's total and each installment in the same ratio."""
    data = form(service, mode="installments", single_amount="", **{"transfers-0-amount": "95,00"},
                **province_row(amount="5,00"),
                **installment_rows(("33,34", days(30)), ("33,33", days(60)), ("33,33", days(90))))
    response = client.post(URL, data=data)
    assert response.status_code == 303, error_summary(response)
    position = db.session.scalars(sa.select(Position)).one()
    shares = [[t.amount_cents for t in o.transfers] for o in position.options]
    assert shares == [[3167, 167], [3166, 167], [3166, 167]]
    assert all(sum(s) == o.amount_cents for s, o in zip(shares, position.options, strict=True))
    assert {t.beneficiary_fiscal_code for o in position.options for t in o.transfers} == {CF_COMUNE, CF_PROVINCIA}


def test_both_modes_use_the_single_payment_split_for_the_plan(client, operator, service):
    data = form(service, mode="both", single_amount="100,00", **{"transfers-0-amount": "90,00"},
                **province_row(amount="10,00"), **installment_rows(("60,00", days(30)), ("40,01", days(60))))
    assert client.post(URL, data=data).status_code == 303
    position = db.session.scalars(sa.select(Position)).one()
    assert [[t.amount_cents for t in o.transfers] for o in position.options] == [
        [9000, 1000], [5400, 600], [3601, 400]]


def test_summary_shows_computed_shares_before_saving(client, operator, service):
    data = form(service, mode="installments", single_amount="", action="preview", **{"transfers-0-amount": "95,00"},
                **province_row(amount="5,00"),
                **installment_rows(("33,34", days(30)), ("33,33", days(60)), ("33,33", days(90))))
    response = client.post(URL, data=data, headers=HTMX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<html" not in body
    table = lxml.html.fromstring(body).xpath('//table[@id="summary-table"]')[0]
    rows = [[c.text_content().strip() for c in tr.xpath("./th|./td")] for tr in table.xpath(".//tbody/tr")]
    assert [r[0] for r in rows] == ["Rata 1", "Rata 2", "Rata 3"]
    assert [r[2:] for r in rows] == [["33,34\xa0€", "31,67\xa0€", "1,67\xa0€"],
                                     ["33,33\xa0€", "31,66\xa0€", "1,67\xa0€"],
                                     ["33,33\xa0€", "31,66\xa0€", "1,67\xa0€"]]
    assert "Provincia di Roma" in body
    assert IBAN_PROVINCIA in body
    assert count_positions() == 0

    # Without htmx the same button re-renders the whole page with the summary.
    page = client.post(URL, data=data)
    assert page.status_code == 200
    assert doc(page).xpath('//table[@id="summary-table"]')
    assert count_positions() == 0


def test_repeated_external_id_returns_the_existing_position(client, operator, service):
    first = client.post(URL, data=form(service, external_id="ATTO-2027-1"))
    assert first.status_code == 303
    flashes(client)  # consumed below together with the second one
    second = client.post(URL, data=form(service, external_id="ATTO-2027-1"))
    assert second.status_code == 303
    assert second.headers["Location"] == first.headers["Location"]
    assert count_positions() == 1
    messages = flashes(client)
    assert any(category == "info" and "esisteva già" in message for category, message in messages)


def test_external_id_of_a_position_out_of_scope_is_not_revealed(client, make_service, make_user, login,
                                                                make_position, service):
    mensa = make_service(code="MENSA", name="Mensa scolastica")
    make_position(external_id="ATTO-1")  # TARI
    login(make_user(username="mensa", role="operator", services=[mensa]))
    response = client.post(URL, data=form(mensa, external_id="ATTO-1"))
    assert response.status_code == 422
    assert "già usato" in error_of(response, "external_id")
    assert count_positions() == 1


# --- Bad input: the message next to the field, nothing saved ---------------------------------------------------


def error_summary(response) -> str:
    boxes = doc(response).xpath('//*[@id="form-errors"]')
    return boxes[0].text_content() if boxes else ""


BAD_INPUT = {
    "invalid fiscal code": ({"debtor_fiscal_code": "RSSMRA80A01H501X"}, "debtor_fiscal_code",
                            "Codice fiscale RSSMRA80A01H501X non valido"),
    "fiscal code of wrong length": ({"debtor_fiscal_code": "RSSMRA80"}, "debtor_fiscal_code",
                                    "Il codice fiscale deve avere 16 caratteri"),
    "missing debtor name": ({"debtor_name": "  "}, "debtor_name", "Indicare il nome e cognome"),
    "bad postal code": ({"debtor_postal_code": "0010"}, "debtor_postal_code", "Il CAP deve essere di 5 cifre."),
    "bad email": ({"debtor_email": "mario.rossi"}, "debtor_email", "Indirizzo e-mail non valido."),
    "missing subject": ({"subject": ""}, "subject", "Indicare la causale."),
    "subject too long": ({"subject": "x" * 141}, "subject", "al massimo 140 caratteri"),
    "invalid IBAN": ({"transfers-0-iban": "IT60X0542811101000000123457"}, "transfers-0-iban", "IBAN non valido"),
    "malformed taxonomy code": ({"transfers-0-taxonomy_code": "TARI"}, "transfers-0-taxonomy_code",
                                "Codice tassonomico non valido"),
    "unknown taxonomy code": ({"transfers-0-taxonomy_code": "9/0101999IM/"}, "transfers-0-taxonomy_code",
                              "non esiste nella tassonomia pagoPA"),
    "zero amount": ({"single_amount": "0,00"}, "single_amount", "L'importo deve essere maggiore di zero."),
    "negative amount": ({"single_amount": "-10,00"}, "single_amount", "L'importo non può essere negativo."),
    "non-numeric amount": ({"single_amount": "dieci euro"}, "single_amount", "Importo non valido"),
    "three decimals": ({"single_amount": "10,123"}, "single_amount", "al massimo due decimali"),
    "missing amount": ({"single_amount": ""}, "single_amount", "Indicare un importo."),
    "invalid date": ({"single_due_date": "2027-02-30"}, "single_due_date", "Indicare una data di scadenza valida."),
    "missing date": ({"single_due_date": ""}, "single_due_date", "Indicare una data di scadenza valida."),
    "past date": ({"single_due_date": days(-1)}, "single_due_date", "La scadenza non può essere nel passato."),
    "transfers not adding up": ({"transfers-0-amount": "1.000,00", **province_row(amount="10,00")}, "transfers",
                                "La somma degli importi dei beneficiari deve essere uguale"),
    "more than 5 transfers": ({"transfers-0-amount": "1.000,99",
                               **{k: v for n in range(1, 6) for k, v in province_row(n, amount="4,00").items()}},
                              "transfers", "Al massimo 5 beneficiari"),
    "second beneficiary amount missing": (province_row(amount=""), "transfers-1-amount", "Indicare un importo."),
    "comune amount missing with a second beneficiary": (province_row(amount="10,00"), "transfers-0-amount",
                                                        "Indicare un importo."),
    "second beneficiary fiscal code": ({"transfers-0-amount": "1.010,99", **province_row(
        amount="10,00", beneficiary_fiscal_code="1234")}, "transfers-1-beneficiary_fiscal_code", "11 cifre"),
    "second beneficiary without IBAN": ({"transfers-0-amount": "1.010,99", **province_row(amount="10,00", iban="")},
                                        "transfers-1-iban", "Indicare l'IBAN dell'ente beneficiario."),
    "second beneficiary with invalid IBAN": ({"transfers-0-amount": "1.010,99", **province_row(
        amount="10,00", iban="IT00X0000000000000000000000")}, "transfers-1-iban", "IBAN non valido"),
    "second beneficiary without name": ({"transfers-0-amount": "1.010,99", **province_row(
        amount="10,00", beneficiary_name="")}, "transfers-1-beneficiary_name", "Indicare la denominazione"),
    "installments out of order": ({"mode": "installments", **installment_rows(
        ("50,00", days(60)), ("50,00", days(30)))}, "installments", "in ordine crescente"),
    "installments on the same day": ({"mode": "installments", **installment_rows(
        ("50,00", days(30)), ("50,00", days(30)))}, "installments", "in ordine crescente"),
    "one installment only": ({"mode": "installments", **installment_rows(("50,00", days(30)))}, "installments",
                             "almeno due rate"),
    "no installments": ({"mode": "installments"}, "installments", "Genera rate"),
    "too many installments": ({"mode": "installments", **installment_rows(
        *[("1,00", add_months(date.today() + timedelta(days=1), n).isoformat()) for n in range(37)])},
        "installments", "Al massimo 36 rate."),
    "installment amount": ({"mode": "installments", **installment_rows(
        ("50,001", days(30)), ("50,00", days(60)))}, "installments-0-amount", "al massimo due decimali"),
    "installment past date": ({"mode": "both", **installment_rows(
        ("50,00", days(-30)), ("50,00", days(60)))}, "installments-0-due_date", "nel passato"),
    "plan split not matching the plan total": ({"mode": "installments", "transfers-0-amount": "90,00",
                                                **province_row(amount="5,00"),
                                                **installment_rows(("50,00", days(30)), ("50,00", days(60)))},
                                               "transfers", "uguale al totale delle rate (100,00\u00a0€)"),
    "share of an installment rounding to zero": ({"mode": "installments", "transfers-0-amount": "99,99",
                                                  **province_row(amount="0,01"),
                                                  **installment_rows(("0,50", days(30)), ("99,50", days(60)))},
                                                 "installments-0-amount", "Quota del beneficiario 2"),
    "unknown payment mode": ({"mode": "rateale"}, "mode", "Scegliere la modalità di pagamento."),
}


@pytest.mark.parametrize(("overrides", "field_id", "message"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_shown_next_to_the_field_and_nothing_is_saved(client, operator, service, overrides, field_id,
                                                                    message):
    response = client.post(URL, data=form(service, **overrides))
    assert response.status_code == 422
    assert message in error_of(response, field_id)
    assert message in error_summary(response)
    field = doc(response).xpath(f'//*[@id="{field_id}"]')[0]
    if field.tag in ("input", "select"):
        assert field.get("aria-invalid") == "true"
        assert f"{field_id}-error" in field.get("aria-describedby")
    assert count_positions() == 0
    assert db.session.scalar(sa.select(sa.func.count(Transfer.id))) == 0


def test_rejected_form_keeps_what_was_typed(client, operator, service):
    response = client.post(URL, data=form(service, debtor_fiscal_code="RSSMRA80A01H501X",
                                          **{"transfers-0-amount": "1.000,00"}, **province_row(amount="20,99")))
    assert response.status_code == 422
    page = doc(response)
    assert page.xpath('//input[@id="debtor_name"]/@value') == ["Mario Rossi"]
    assert page.xpath('//input[@id="single_amount"]/@value') == ["1.020,99"]
    assert page.xpath('//input[@id="transfers-1-iban"]/@value') == [IBAN_PROVINCIA]
    assert page.xpath('//select[@id="service_id"]/option[@selected]/@value') == [str(service.id)]
    assert page.xpath('//*[@id="form-errors"]/@role') == ["alert"]


def test_all_problems_are_reported_at_once(client, operator, service):
    response = client.post(URL, data=form(service, debtor_fiscal_code="XX", single_amount="abc",
                                          **{"transfers-0-iban": "IT00"}))
    assert response.status_code == 422
    assert error_of(response, "debtor_fiscal_code")
    assert "Importo non valido" in error_of(response, "single_amount")
    assert "IBAN non valido" in error_of(response, "transfers-0-iban")


def test_unparsable_amount_is_not_also_reported_as_a_wrong_sum(client, operator, service):
    response = client.post(URL, data=form(service, **{"transfers-0-amount": "mille"}, **province_row(amount="10,00")))
    assert response.status_code == 422
    assert "Importo non valido" in error_of(response, "transfers-0-amount")
    assert error_of(response, "transfers") == ""
    assert error_of(response, "single_amount") == ""


# --- Helper buttons -------------------------------------------------------------------------------------------


def test_generate_installments_splits_evenly_with_monthly_dates(client, operator, service):
    first = date.today() + timedelta(days=10)
    data = form(service, mode="installments", action="generate", installment_count="3", plan_total="100,00",
                plan_first_due=first.isoformat())
    response = client.post(URL, data=data)
    assert response.status_code == 200
    page = doc(response)
    amounts = [page.xpath(f'//input[@id="installments-{n}-amount"]/@value')[0] for n in range(3)]
    dues = [page.xpath(f'//input[@id="installments-{n}-due_date"]/@value')[0] for n in range(3)]
    assert amounts == ["33,34", "33,33", "33,33"]
    assert dues == [d.isoformat() for d in monthly_due_dates(first, 3)]
    assert count_positions() == 0

    # The generated rows are ordinary fields: saving them creates the plan.
    saved = form(service, mode="installments", **installment_rows(*zip(amounts, dues, strict=True)))
    assert client.post(URL, data=saved).status_code == 303
    assert [o.amount_cents for o in db.session.scalars(sa.select(Position)).one().options] == [3334, 3333, 3333]


def test_generate_defaults_to_the_single_payment(client, operator, service):
    data = form(service, mode="both", action="generate", installment_count="2", single_amount="1.020,99",
                single_due_date=days(5))
    page = doc(client.post(URL, data=data, headers=HTMX))
    assert [page.xpath(f'//input[@id="installments-{n}-amount"]/@value')[0] for n in range(2)] == ["510,50", "510,49"]
    assert page.xpath('//input[@id="installments-0-due_date"]/@value') == [days(5)]


def test_generate_with_htmx_returns_the_form_only(client, operator, service):
    data = form(service, mode="installments", action="generate", installment_count="4", plan_total="1.000,00",
                plan_first_due=days(3))
    response = client.post(URL, data=data, headers=HTMX)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith("<form")
    assert "<html" not in body
    assert 'id="installments-3-amount"' in body
    assert count_positions() == 0


@pytest.mark.parametrize(("overrides", "field_id", "message"), [
    ({"installment_count": "1"}, "installment_count", "da 2 a 36"),
    ({"installment_count": "37"}, "installment_count", "da 2 a 36"),
    ({"installment_count": "tre"}, "installment_count", "da 2 a 36"),
    ({"plan_total": "1,234"}, "plan_total", "al massimo due decimali"),
    ({"plan_total": "0,03", "installment_count": "4"}, "plan_total", "troppo basso"),
    ({"plan_first_due": "", "single_due_date": ""}, "plan_first_due", "Indicare la scadenza della prima rata."),
])
def test_generate_reports_bad_parameters(client, operator, service, overrides, field_id, message):
    data = form(service, mode="installments", action="generate", installment_count="3", plan_total="100,00",
                plan_first_due=days(3))
    data.update(overrides)
    response = client.post(URL, data=data)
    assert response.status_code == 200
    assert message in error_of(response, field_id)
    assert not doc(response).xpath('//input[@id="installments-0-amount"]')


def test_beneficiary_rows_can_be_added_up_to_five_and_removed(client, operator, service):
    data = form(service, action="add_transfer")
    page = doc(client.post(URL, data=data))
    assert page.xpath('//input[@id="transfers-1-beneficiary_fiscal_code"]')
    data = form(service, action="add_transfer",
                **{k: v for n in range(1, 5) for k, v in province_row(n, amount=f"{n},00").items()})
    page = doc(client.post(URL, data=data, headers=HTMX))
    assert not page.xpath('//input[@id="transfers-5-iban"]')  # five rows at most
    assert not page.xpath('//button[@value="add_transfer"]')

    data = form(service, action="remove_transfer-1", **province_row(1, amount="1,00"),
                **province_row(2, amount="2,00", beneficiary_name="Secondo ente"))
    page = doc(client.post(URL, data=data))
    assert page.xpath('//input[@id="transfers-1-beneficiary_name"]/@value') == ["Secondo ente"]
    assert not page.xpath('//input[@id="transfers-2-iban"]')
    assert count_positions() == 0


# --- Live field validation ------------------------------------------------------------------------------------


def test_live_validation_returns_the_error_of_the_field(client, operator, service):
    headers = {**HTMX, "HX-Trigger-Name": "debtor_fiscal_code"}
    bad = client.post(VALIDATE_URL, data=form(service, debtor_fiscal_code="RSSMRA80A01H501X"), headers=headers)
    assert bad.status_code == 200
    assert "Codice fiscale RSSMRA80A01H501X non valido" in bad.get_data(as_text=True)

    good = client.post(VALIDATE_URL, data=form(service), headers=headers)
    assert good.status_code == 200
    assert good.get_data(as_text=True).strip() == ""
    assert count_positions() == 0


def test_live_validation_only_reports_the_triggering_field(client, operator, service):
    data = form(service, debtor_fiscal_code="XX", single_amount="abc")
    response = client.post(VALIDATE_URL, data=data, headers={**HTMX, "HX-Trigger-Name": "debtor_name"})
    assert response.get_data(as_text=True).strip() == ""


def test_live_validation_of_amounts_and_beneficiaries(client, operator, service):
    headers = {**HTMX, "HX-Trigger-Name": "single_amount"}
    response = client.post(VALIDATE_URL, data=form(service, single_amount="12,345"), headers=headers)
    assert "al massimo due decimali" in response.get_data(as_text=True)

    # A beneficiary amount refreshes the group message (sum) out of band.
    data = form(service, **{"transfers-0-amount": "1.000,00"}, **province_row(amount="10,00"))
    response = client.post(VALIDATE_URL, data=data, headers={**HTMX, "HX-Trigger-Name": "transfers-1-amount"})
    fragment = lxml.html.fragment_fromstring(response.get_data(as_text=True), create_parent="div")
    (group,) = fragment.xpath('//*[@id="transfers-error"]')
    assert group.get("hx-swap-oob") == "innerHTML"
    assert "La somma degli importi dei beneficiari" in group.text_content()

    response = client.post(VALIDATE_URL, data=form(service, **{"transfers-0-taxonomy_code": "9/0101999IM/"}),
                           headers={**HTMX, "HX-Trigger-Name": "transfers-0-taxonomy_code"})
    assert "non esiste nella tassonomia" in response.get_data(as_text=True)


@pytest.mark.parametrize(("typed", "read"), [("1.050", "1.050,00"), ("10.5", "10,50"), ("1.234,5", "1.234,50"),
                                             ("1050", "1.050,00")])
def test_live_validation_says_how_an_amount_was_read(client, operator, service, typed, read):
    headers = {**HTMX, "HX-Trigger-Name": "single_amount"}
    html = client.post(VALIDATE_URL, data=form(service, single_amount=typed), headers=headers).get_data(as_text=True)
    assert f"Letto come {read}\u00a0€" in html


def test_live_validation_says_nothing_of_an_amount_it_refused(client, operator, service):
    headers = {**HTMX, "HX-Trigger-Name": "single_amount"}
    html = client.post(VALIDATE_URL, data=form(service, single_amount="12,345"), headers=headers).get_data(as_text=True)
    assert "Letto come" not in html


def test_live_validation_needs_the_csrf_token(client, operator, service):
    headers = {**HTMX, "HX-Trigger-Name": "debtor_fiscal_code"}
    assert client.post(VALIDATE_URL, data=form(service), headers=headers, csrf=False).status_code == 400


# --- Arithmetic -----------------------------------------------------------------------------------------------


def test_split_evenly_puts_leftover_cents_on_the_first():
    assert split_evenly(10000, 3) == [3334, 3333, 3333]
    assert split_evenly(102099, 2) == [51050, 51049]
    assert split_evenly(3600, 36) == [100] * 36


@pytest.mark.parametrize(("total", "weights"), [
    (3334, [9500, 500]), (1, [1, 1]), (100, [1, 1, 1]), (99_999, [3, 3, 3, 1, 7]), (12345, [10000]),
])
def test_split_by_ratio_always_adds_up(total, weights):
    shares = split_by_ratio(total, weights)
    assert sum(shares) == total
    assert len(shares) == len(weights)
    whole = sum(weights)
    assert all(abs(s - total * w / whole) < 1 for s, w in zip(shares, weights, strict=True))


def test_split_by_ratio_breaks_ties_in_row_order():
    assert split_by_ratio(100, [1, 1, 1]) == [34, 33, 33]
    assert split_by_ratio(3334, [9500, 500]) == [3167, 167]


def test_monthly_due_dates_keep_the_day_or_use_the_month_end():
    assert monthly_due_dates(date(2027, 1, 31), 4) == [date(2027, 1, 31), date(2027, 2, 28), date(2027, 3, 31),
                                                       date(2027, 4, 30)]
    assert monthly_due_dates(date(2027, 11, 15), 3) == [date(2027, 11, 15), date(2027, 12, 15), date(2028, 1, 15)]


# --- In a real browser (htmx) ---------------------------------------------------------------------------------


def browser_login(page, user):
    from tests.conftest import PASSWORD

    page.goto("/officer/login")
    page.get_by_label("Nome utente").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Accedi").click()
    page.wait_for_url("**/officer/")


@pytest.mark.browser
def test_browser_checks_fields_as_typed_and_builds_a_plan(page, make_user, service):
    from playwright.sync_api import expect

    browser_login(page, make_user(username="operatore", role="operator"))
    page.goto(URL)
    fiscal_code = page.locator("#debtor_fiscal_code")
    fiscal_code.fill("RSSMRA80A01H501X")
    expect(page.locator("#debtor_fiscal_code-error")).to_contain_text("non valido")
    expect(fiscal_code).to_have_attribute("aria-invalid", "true")
    fiscal_code.fill(CF_PERSON)
    expect(page.locator("#debtor_fiscal_code-error")).to_have_text("")
    expect(fiscal_code).to_have_attribute("aria-invalid", "false")

    page.get_by_label("Nome e cognome o ragione sociale").fill("Mario Rossi")
    page.get_by_label("Causale").fill("TARI 2027")
    page.locator("label[for=mode-1]").click()  # Bootstrap Italia draws the radio on the label
    expect(page.locator("#mode-1")).to_be_checked()
    expect(page.locator("#single")).to_be_hidden()
    page.get_by_label("Numero di rate").fill("3")
    page.get_by_label("Totale da rateizzare (€)").fill("100,00")
    page.get_by_label("Scadenza della prima rata").fill(days(10))
    page.get_by_role("button", name="Genera rate").click()
    expect(page.locator("#installments-2-amount")).to_have_value("33,33")
    expect(page.locator("#installments-0-amount")).to_have_value("33,34")
    expect(page.locator("#summary-table tbody tr")).to_have_count(3)

    page.get_by_role("button", name="Crea posizione").click()
    page.wait_for_url("**/officer/positions/*")
    expect(page.get_by_text("Posizione creata.")).to_be_visible()


@pytest.mark.browser
def test_browser_adds_a_beneficiary_and_shows_the_split(page, make_user, service):
    from playwright.sync_api import expect

    browser_login(page, make_user(username="operatore", role="operator"))
    page.goto(URL)
    page.get_by_label("Importo (€)").first.fill("105,00")
    page.get_by_role("button", name="Aggiungi beneficiario").click()
    expect(page.locator("#transfers-1-iban")).to_be_visible()
    page.locator("#transfers-0-amount").fill("100,00")
    page.locator("#transfers-1-beneficiary_fiscal_code").fill(CF_PROVINCIA)
    page.locator("#transfers-1-beneficiary_name").fill("Provincia di Roma")
    page.locator("#transfers-1-iban").fill(IBAN_PROVINCIA)
    page.locator("#transfers-1-taxonomy_code").fill(TAXONOMY_TEFA)
    amount = page.locator("#transfers-1-amount")
    amount.fill("4,00")
    amount.blur()
    expect(page.locator("#transfers-error")).to_contain_text("La somma degli importi dei beneficiari")
    amount.fill("5,00")
    amount.blur()
    expect(page.locator("#transfers-error")).to_have_text("")
    expect(page.locator("#summary-table tbody tr").first).to_contain_text("5,00")
    page.get_by_role("button", name="Rimuovi il beneficiario 2").click()
    expect(page.locator("#transfers-1-iban")).to_have_count(0)
