"""Recording a payment outside pagoPA from the position page, reversing it, and its anomaly: who may, the form's
field errors (Italian, each on its field), CSRF, and what the page, the timeline and the anomalies list show."""

import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.jobs.queue import get_backend
from portal.ledger import offline_payments as offline
from portal.ledger import services as ledger
from portal.ledger.models import Event, OfflinePayment, Position
from portal.ledger.status import OptionStatus, PositionStatus

TODAY = date.today()


def url(position):
    return f"/officer/positions/{position.id}/offline-payments/new"


def fresh(position_id):
    db.session.expire_all()
    return db.session.get(Position, position_id)


def form(option, **overrides):
    data = {"option": str(option.id), "channel": "cash", "paid_on": TODAY.isoformat(), "reference": "Quietanza 12",
            "amount": f"{option.amount_cents // 100},{option.amount_cents % 100:02d}"}
    data.update(overrides)
    return data


@pytest.fixture
def on_pagopa(make_position):
    """A position pagoPA confirmed published (nothing pending), with a plan of two installments."""
    position = make_position(installments=(4000, 6000))
    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="pagopa")
    position.pagopa_synced_target, position.pagopa_synced_version = "published", position.pagopa_version
    position.sync_pending = False
    db.session.commit()
    return position


def test_an_operator_records_a_counter_payment_and_pagopa_is_asked_to_hear_of_it(client, login, make_user,
                                                                                  on_pagopa):
    user = login(make_user())
    page = client.get(url(on_pagopa))
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'name="csrf_token"' in text
    assert "Contanti allo sportello" in text
    assert "Modello F24" in text
    option = on_pagopa.single_option
    response = client.post(url(on_pagopa), data=form(option, reference="Quietanza 12/2027"))
    assert response.status_code == 303
    position = fresh(on_pagopa.id)
    assert position.status == PositionStatus.PAID
    assert [o.status for o in position.installments] == [OptionStatus.CANCELLED] * 2
    event = db.session.scalars(sa.select(Event).where(Event.position_id == position.id, Event.kind == "paid")).one()
    assert event.actor_user_id == user.id
    assert event.details["payment_channel"] == "cash"
    assert [job.task for job in get_backend(client.application).pending] == ["sync_position"]
    page = client.get(f"/officer/positions/{position.id}").get_data(as_text=True)
    assert "Pagamento di 100,00" in page  # the flash message
    assert 'data-testid="offline-payments"' in page
    assert "Quietanza 12/2027" in page
    assert "in attesa di invio" in page
    assert "Canale di pagamento: contanti allo sportello" in page  # the timeline
    assert 'data-testid="reverse-offline"' in page  # still reversible


def test_each_mistake_is_shown_on_its_field_and_nothing_is_recorded(client, login, make_user, on_pagopa):
    login(make_user())
    response = client.post(url(on_pagopa), data=form(on_pagopa.single_option, channel="", reference=" ",
                                                     paid_on=(TODAY + timedelta(days=2)).isoformat(),
                                                     amount="12,345"))
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    for field_id in ("channel", "reference", "paid_on", "amount"):
        assert re.search(rf'id="{field_id}"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*id="{field_id}"', text), \
            field_id
    assert "non può essere futura" in text
    assert "al massimo due decimali" in text
    assert "Indicare il riferimento del pagamento" in text
    assert 'id="form-errors"' in text  # the summary above the form
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OfflinePayment)) == 0
    bad_date = client.post(url(on_pagopa), data=form(on_pagopa.single_option, paid_on="31/02/2027"))
    assert "Data non valida" in bad_date.get_data(as_text=True)


def test_a_different_amount_must_be_confirmed_then_it_is_an_anomaly_to_resolve(client, login, make_user, on_pagopa):
    login(make_user())
    option = on_pagopa.single_option
    refused = client.post(url(on_pagopa), data=form(option, amount="90,00"))
    assert refused.status_code == 422
    assert "diverso dal dovuto (100,00" in refused.get_data(as_text=True)
    accepted = client.post(url(on_pagopa), data=form(option, amount="90,00", accept_amount_mismatch="y"),
                           follow_redirects=True)
    assert "tra le anomalie da verificare" in accepted.get_data(as_text=True)
    assert fresh(on_pagopa.id).status == PositionStatus.PARTIALLY_PAID
    listing = client.get("/officer/anomalies").get_data(as_text=True)
    assert 'data-testid="offline-anomalies-table"' in listing
    assert "Importo diverso dal dovuto (1)" in listing
    payment = db.session.scalar(sa.select(OfflinePayment))
    resolve = f"/officer/anomalies/offline/{payment.id}/resolve"
    empty = client.post(resolve, data={"note": " "}, headers={"HX-Request": "true"})
    assert empty.status_code == 422
    done = client.post(resolve, data={"note": "Differenza di 10 euro incassata"}, headers={"HX-Request": "true"})
    assert done.status_code == 200
    assert "Risolta" in done.get_data(as_text=True)
    assert client.get("/officer/").status_code == 200


def test_a_payment_recorded_by_mistake_is_reversed_with_a_reason(client, login, make_user, on_pagopa):
    login(make_user())
    first = on_pagopa.installments[0]
    client.post(url(on_pagopa), data=form(first, channel="bank_transfer", reference="TRN 1"))
    payment = db.session.scalar(sa.select(OfflinePayment))
    reverse = f"/officer/positions/{on_pagopa.id}/offline-payments/{payment.id}/reverse"
    blank = client.post(reverse, data={"reason": ""}, follow_redirects=True)
    assert "Indicare il motivo dell'annullamento del pagamento." in blank.get_data(as_text=True)
    assert client.post(reverse, data={"reason": "Bonifico di un altro contribuente"}).status_code == 303
    position = fresh(on_pagopa.id)
    assert position.status == PositionStatus.PUBLISHED
    assert {o.status for o in position.options} == {OptionStatus.UNPAID}
    page = client.get(f"/officer/positions/{position.id}").get_data(as_text=True)
    assert "Bonifico di un altro contribuente" in page
    assert "Un pagamento fuori pagoPA registrato per errore è stato annullato." in page


def test_once_pagopa_is_told_the_reversal_is_refused_with_a_clear_message(client, login, make_user, on_pagopa):
    login(make_user())
    client.post(url(on_pagopa), data=form(on_pagopa.single_option))
    payment = db.session.scalar(sa.select(OfflinePayment))
    offline.confirm_told(db.session, fresh(on_pagopa.id), {payment.option_id})
    db.session.commit()
    page = client.get(f"/officer/positions/{on_pagopa.id}").get_data(as_text=True)
    assert 'data-testid="reverse-offline"' not in page
    assert "non si può più annullare" in page
    response = client.post(f"/officer/positions/{on_pagopa.id}/offline-payments/{payment.id}/reverse",
                           data={"reason": "Errore"}, follow_redirects=True)
    assert "pagoPA è stato informato del pagamento il" in response.get_data(as_text=True)
    assert fresh(on_pagopa.id).status == PositionStatus.PAID


def test_without_csrf_nothing_is_recorded(client, login, make_user, on_pagopa):
    login(make_user())
    response = client.post(url(on_pagopa), data=form(on_pagopa.single_option), csrf=False)
    assert response.status_code in (400, 422)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OfflinePayment)) == 0


def test_viewers_and_out_of_scope_operators_are_refused(client, login, make_user, make_service, on_pagopa):
    login(make_user("lettore", role="viewer"))
    assert client.get(url(on_pagopa)).status_code == 403
    assert client.post(url(on_pagopa), data=form(on_pagopa.single_option)).status_code == 403
    page = client.get(f"/officer/positions/{on_pagopa.id}").get_data(as_text=True)
    assert 'data-testid="record-offline"' not in page
    client.post("/officer/logout")
    login(make_user("mensa", services=[make_service(code="MENSA", name="Mensa", taxonomy_code="9/0107101TS/")]))
    assert client.get(url(on_pagopa)).status_code == 404
    assert client.post(f"/officer/positions/{on_pagopa.id}/offline-payments/1/reverse",
                       data={"reason": "x"}).status_code == 404


def test_a_draft_takes_no_payment_and_says_why(client, login, make_user, make_position):
    login(make_user())
    draft = make_position()
    response = client.get(url(draft), follow_redirects=True)
    assert "bozza" in response.get_data(as_text=True)
    assert 'data-testid="record-offline"' not in client.get(f"/officer/positions/{draft.id}").get_data(as_text=True)
