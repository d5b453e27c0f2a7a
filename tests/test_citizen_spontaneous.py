"""A spontaneous payment from a service's form, over real HTTP with the pagoPA sandbox: the form (with errors),
the summary, "Paga con pagoPA" (position created with source ``citizen``, published at once, Checkout cart), the
return from Checkout waiting for the receipt, the receipt page and PDF, and the e-mail's signed link."""

import email
import email.policy
import re

import requests
import sqlalchemy as sa

from portal.citizen_payments.models import CitizenPayment
from portal.extensions import db
from portal.ledger.models import Event, Position
from portal.ledger.status import PositionStatus
from tests.citizen_support import deliver_receipts
from tests.conftest import CF_PERSON

ANSWERS = {"codice_fiscale": CF_PERSON.lower(), "nome": "Mario Rossi", "email": "mario@example.it",
           "tipo_certificato": "Residenza", "_voce": "1"}


def start(client, **changes):
    response = client.post("/servizi/CERT", data={**ANSWERS, **changes})
    assert response.status_code == 303, response.get_data(as_text=True)
    return response.headers["Location"]


def test_the_form_shows_every_error_on_its_field(client, ctx, form_service):
    form_service()
    page = client.get("/servizi/CERT")
    assert page.status_code == 200
    assert 'name="codice_fiscale"' in page.get_data(as_text=True)
    response = client.post("/servizi/CERT", data={"codice_fiscale": "RSSMRA80A01H501X", "nome": "", "_voce": "9"})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert re.search(r'id="f-codice_fiscale-error"[^>]*>[^<]*non valido', body)
    assert re.search(r'id="f-nome-error"[^>]*>Campo obbligatorio.', body)
    assert re.search(r'id="f-tipo_certificato-error"[^>]*>Campo obbligatorio.', body)
    assert re.search(r'id="f-_voce-error"[^>]*>Scegliere una delle voci.', body)
    assert 'aria-invalid="true"' in body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CitizenPayment)) == 0


def test_htmx_gets_the_form_fragment_or_a_redirect(client, ctx, form_service):
    form_service()
    invalid = client.post("/servizi/CERT", data={"nome": "x"}, headers={"HX-Request": "true"})
    assert invalid.status_code == 422
    assert "<html" not in invalid.get_data(as_text=True)
    assert 'id="payment-form"' in invalid.get_data(as_text=True)
    ok = client.post("/servizi/CERT", data=ANSWERS, headers={"HX-Request": "true"})
    assert ok.status_code == 204
    assert ok.headers["HX-Redirect"].startswith("/pagamento/")


def test_answers_are_escaped_and_editable(client, ctx, form_service):
    form_service()
    summary = client.get(start(client, nome="<script>alert(1)</script>"))
    body = summary.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;" in body
    token = summary.request.path.rsplit("/", 1)[-1]
    edit = client.get(f"/servizi/CERT?modifica={token}").get_data(as_text=True)
    assert 'value="Mario Rossi"' not in edit
    assert "&lt;script&gt;" in edit
    assert 'value="1" checked' in edit


def test_a_citizen_pays_a_certificate_and_gets_the_receipt(app, client, ctx, pagopa, form_service):
    form_service()
    summary_url = start(client)
    summary = client.get(summary_url)
    assert "0,52" in summary.get_data(as_text=True)
    token = summary_url.rsplit("/", 1)[-1]

    paid = client.post(f"{summary_url}/paga")
    assert paid.status_code == 303, paid.get_data(as_text=True)
    checkout_url = paid.headers["Location"]
    assert checkout_url.startswith(pagopa.sandbox_url + "/checkout/pay/")

    position = db.session.scalars(sa.select(Position)).one()
    assert (position.source, position.external_id) == ("citizen", token)
    assert position.status == PositionStatus.PUBLISHED
    assert not position.sync_pending
    assert position.amount_cents == 52
    assert position.subject == "Diritti di segreteria – certificato di Residenza (In bollo)"
    form_event = db.session.scalars(sa.select(Event).where(Event.kind == "citizen_form")).one()
    assert form_event.details == {"form": "Certificato anagrafico", "form_version": 1}

    # Twice "Paga" (back button): no second position, a new cart for the same notice.
    again = client.post(f"{summary_url}/paga")
    assert again.status_code == 303
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Position)) == 1

    page = requests.post(checkout_url, data={"action": "pay"}, allow_redirects=False, timeout=10)
    assert page.status_code == 302
    back = page.headers["Location"]
    assert back.endswith(f"/pagamento/{token}/esito/ok")
    returned = client.get(back.split("localhost", 1)[1])
    assert returned.status_code == 303
    waiting = client.get(summary_url).get_data(as_text=True)
    assert "attendiamo la ricevuta" in waiting
    assert 'hx-trigger="every 2s"' in waiting

    deliver_receipts(pagopa.sandbox_url)
    db.session.expire_all()
    poll = client.get(summary_url, headers={"HX-Request": "true", "HX-Target": "payment-status"})
    body = poll.get_data(as_text=True)
    assert "<html" not in body
    assert "Pagamento eseguito" in body
    assert "hx-trigger" not in body
    assert "Identificativo della ricevuta (IUR)" in body

    pdf = client.get(f"{summary_url}/ricevuta.pdf")
    assert pdf.status_code == 200
    assert pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")

    # The receipt link goes by e-mail, once.
    pagopa.run_pending()
    mails = list(pagopa.mail_dir.glob("*.eml"))
    assert len(mails) == 1
    text = email.message_from_bytes(mails[0].read_bytes(), policy=email.policy.default).get_content()
    link = re.search(r"/ricevuta/(\S+)", text).group(1)
    assert token not in text
    assert client.get(f"/ricevuta/{link}").status_code == 200
    assert client.get(f"/ricevuta/{link}/pdf").data.startswith(b"%PDF")
    assert client.get(f"/ricevuta/{link[:-2]}xx").status_code == 410
    payment = db.session.scalars(sa.select(CitizenPayment)).one()
    assert payment.status == "paid"
    assert payment.receipt_mailed_at is not None


def test_no_receipt_without_the_token(client, ctx, form_service):
    form_service()
    start(client)
    assert client.get("/pagamento/1/ricevuta.pdf").status_code == 404
    assert client.get("/pagamento/1").status_code == 404


def test_a_slow_pagopa_leaves_a_pending_position_and_a_retry(app, client, ctx, pagopa, form_service, monkeypatch):
    form_service()
    monkeypatch.setitem(app.config, "CITIZEN_PAGOPA_TIMEOUT_SECONDS", 0.3)
    requests.post(f"{pagopa.sandbox_url}/sandbox/faults",
                  json={"match": "POST /gpd/", "delay_seconds": 1.5, "status": 503}, timeout=5).raise_for_status()
    summary_url = start(client)
    slow = client.post(f"{summary_url}/paga")
    assert slow.status_code == 200
    assert "più lentamente del solito" in slow.get_data(as_text=True)
    db.session.expire_all()
    position = db.session.scalars(sa.select(Position)).one()
    assert position.sync_pending
    assert position.sync_error
    assert position.pagopa_target == "published"

    retry = client.post(f"{summary_url}/paga")
    assert retry.status_code == 303
    assert retry.headers["Location"].startswith(pagopa.sandbox_url)
    db.session.expire_all()
    assert db.session.get(Position, position.id).status == PositionStatus.PUBLISHED


def test_a_cancelled_checkout_offers_to_pay_again(client, ctx, pagopa, form_service):
    form_service()
    summary_url = start(client)
    checkout_url = client.post(f"{summary_url}/paga").headers["Location"]
    back = requests.post(checkout_url, data={"action": "cancel"}, allow_redirects=False, timeout=10)
    client.get(back.headers["Location"].split("localhost", 1)[1])
    body = client.get(summary_url).get_data(as_text=True)
    assert "annullato" in body
    assert "Paga di nuovo con pagoPA" in body


def test_checkout_down_after_the_publication_keeps_it_and_the_retry_opens_the_cart(client, ctx, pagopa, form_service):
    """The publication is committed with the cart's outcome: a Checkout that fails still leaves it recorded, and
    the retry goes straight to the cart (GPD is not called again)."""
    form_service()
    requests.post(f"{pagopa.sandbox_url}/sandbox/faults",
                  json={"match": "POST /checkout/", "status": 503, "count": 1}, timeout=5).raise_for_status()
    summary_url = start(client)
    failed = client.post(f"{summary_url}/paga")
    assert failed.status_code == 200
    assert "più lentamente del solito" in failed.get_data(as_text=True)
    db.session.expire_all()
    position = db.session.scalars(sa.select(Position)).one()
    assert position.status == PositionStatus.PUBLISHED
    assert position.pagopa_synced_target == "published"
    assert not position.sync_pending
    payment = db.session.scalars(sa.select(CitizenPayment)).one()
    assert payment.status == "publishing"

    requests.post(f"{pagopa.sandbox_url}/sandbox/faults",
                  json={"match": "POST /gpd/", "status": 500, "count": 1}, timeout=5).raise_for_status()
    retry = client.post(f"{summary_url}/paga")
    assert retry.status_code == 303
    assert retry.headers["Location"].startswith(pagopa.sandbox_url)
    db.session.expire_all()
    assert db.session.get(CitizenPayment, payment.id).status == "checkout"
    requests.delete(f"{pagopa.sandbox_url}/sandbox/faults", timeout=5).raise_for_status()
