"""Paying notices by number and fiscal code: a cart of two paid through Checkout, plain explanations for a paid
and a cancelled notice, and the same answer for a wrong fiscal code as for an unknown number."""

import re

import requests
import sqlalchemy as sa

from portal.citizen_payments.models import CitizenPayment
from portal.citizen_payments.notice_lookup import NOT_FOUND
from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.models import Position
from portal.ledger.status import OptionStatus, PositionStatus
from portal.ledger.types import utcnow
from tests.citizen_support import deliver_receipts
from tests.conftest import CF_PERSON

OTHER_CF = "VRDLGU85M01F205Z"


def published_positions(pagopa, make_position, amounts):
    positions = [make_position(amount=a) for a in amounts]
    pagopa.run_pending()
    db.session.expire_all()
    assert all(db.session.get(Position, p.id).status == PositionStatus.PUBLISHED for p in positions)
    return [db.session.get(Position, p.id) for p in positions]


def lookup(client, nav, cf, **extra):
    return client.post("/avviso", data={"codice_avviso": nav, "codice_fiscale": cf, **extra})


def test_two_notices_in_one_cart_paid_through_checkout(client, ctx, pagopa, make_position):
    first, second = published_positions(pagopa, make_position, [4200, 1800])
    spaced = " ".join(re.findall(".{1,4}", first.options[0].notice_number))
    found = lookup(client, spaced, CF_PERSON.lower())
    assert found.status_code == 200
    body = found.get_data(as_text=True)
    assert "42,00" in body
    assert "Aggiungi al carrello" in body
    assert lookup(client, spaced, CF_PERSON, azione="aggiungi").status_code == 303
    assert lookup(client, second.options[0].notice_number, CF_PERSON, azione="aggiungi").status_code == 303
    page = client.get("/avviso").get_data(as_text=True)
    assert re.search(r'data-element="cart-total">60,00', page)
    # The same notice twice is refused.
    again = lookup(client, spaced, CF_PERSON, azione="aggiungi").get_data(as_text=True)
    assert "già nel carrello" in again

    paid = client.post("/avviso/carrello/paga", data={"email": "", "indietro": "/avviso"})
    assert paid.status_code == 303, paid.get_data(as_text=True)
    checkout = paid.headers["Location"]
    assert checkout.startswith(pagopa.sandbox_url)
    cart = requests.get(checkout, timeout=5).text
    assert first.options[0].notice_number in cart
    assert second.options[0].notice_number in cart
    back = requests.post(checkout, data={"action": "pay"}, allow_redirects=False, timeout=10).headers["Location"]
    client.get(back.split("localhost", 1)[1])
    deliver_receipts(pagopa.sandbox_url)
    payment = db.session.scalars(sa.select(CitizenPayment)).one()
    db.session.expire_all()
    receipt_page = client.get(f"/pagamento/{payment.token}").get_data(as_text=True)
    assert "Pagamento completato" in receipt_page
    assert receipt_page.count('data-element="receipt"') == 2
    assert client.get(f"/pagamento/{payment.token}/ricevuta.pdf").data.startswith(b"%PDF")
    assert client.get("/avviso").get_data(as_text=True).count("Il carrello è vuoto.") == 1


def test_paid_and_cancelled_notices_are_explained(client, ctx, pagopa, make_position):
    paid, cancelled = published_positions(pagopa, make_position, [1000, 2000])
    option = paid.options[0]
    option.status, option.paid_at = OptionStatus.PAID, utcnow()
    ledger.transition(db.session, paid, PositionStatus.PAID, actor="test")
    ledger.cancel_position(db.session, cancelled, reason="Sgravio", actor="test")
    db.session.commit()

    body = lookup(client, option.notice_number, CF_PERSON).get_data(as_text=True)
    assert "risulta già pagato" in body
    assert "Aggiungi al carrello" not in body
    body = lookup(client, cancelled.options[0].notice_number, CF_PERSON).get_data(as_text=True)
    assert "annullato dal Comune" in body
    assert "Aggiungi al carrello" not in body
    refused = lookup(client, cancelled.options[0].notice_number, CF_PERSON, azione="aggiungi")
    assert "annullato dal Comune" in refused.get_data(as_text=True)


def _answer(response) -> str:
    html = response.get_data(as_text=True)
    return re.search(r'data-element="lookup-error"[^>]*>([^<]*)<', html).group(1)


def test_a_wrong_fiscal_code_and_an_unknown_number_get_the_same_answer(client, ctx, pagopa, make_position):
    (position,) = published_positions(pagopa, make_position, [1000])
    nav = position.options[0].notice_number
    wrong_cf = lookup(client, nav, OTHER_CF)
    unknown = lookup(client, "3" + "0" * 15 + "00", CF_PERSON)
    assert wrong_cf.status_code == unknown.status_code == 200
    assert _answer(wrong_cf) == _answer(unknown)
    assert NOT_FOUND.split(":")[0] in _answer(unknown)
    assert "10,00" not in wrong_cf.get_data(as_text=True)


def test_without_an_ente_there_is_no_notice_page(client, ctx):
    assert client.get("/avviso").status_code == 404


def test_lookups_are_rate_limited_per_fiscal_code(app, client, ctx, creditor, monkeypatch):
    monkeypatch.setitem(app.config, "CITIZEN_RATE_PER_FISCAL_CODE_PER_HOUR", 3)
    statuses = [lookup(client, "3" + "0" * 17, CF_PERSON).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert lookup(client, "3" + "0" * 17, OTHER_CF).status_code == 200


def test_the_honeypot_refuses_bots(client, ctx, creditor):
    assert lookup(client, "3" + "0" * 17, CF_PERSON, sito_web="http://spam.example").status_code == 400


def test_field_errors_for_a_short_number(client, ctx, creditor):
    response = lookup(client, "1234", "x")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert re.search(r'id="f-codice_avviso-error"[^>]*>Il codice avviso è di 18 cifre', body)
    assert re.search(r'id="f-codice_fiscale-error"[^>]*>Indicare il codice fiscale', body)
