"""Editing and abating a position from its page: the entry form filled in, the same rules, one event, pagoPA told."""

from datetime import date, timedelta

import sqlalchemy as sa

from portal.extensions import db
from portal.ledger.models import Event, Position
from portal.ledger.status import PositionStatus
from tests.test_ledger_payments import receipt_for, record


def fresh(position_id):
    db.session.expire_all()
    return db.session.get(Position, position_id)


def form_of(page: str) -> dict:
    """The entry form's fields as the browser would post them (text inputs and the checked mode)."""
    import re

    data = {}
    for name, value in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page):
        if name not in ("mode", "csrf_token"):
            data[name] = value.replace("&#39;", "'").replace("&amp;", "&")
    data["mode"] = re.search(r'name="mode"[^>]*value="([^"]+)"[^>]*checked|checked[^>]*name="mode"[^>]*value="([^"]+)"',
                             page).group(1) or "single"
    data["subject"] = re.search(r'name="subject"[^>]*value="([^"]*)"', page).group(1)
    return data


def test_an_operator_edits_amount_and_due_date(client, login, make_user, published):
    position = published(amount=10000)
    login(make_user("operatore", role="operator"))
    page = client.get(f"/officer/positions/{position.id}").get_data(as_text=True)
    assert 'data-testid="edit"' in page
    form = client.get(f"/officer/positions/{position.id}/edit")
    assert form.status_code == 200
    text = form.get_data(as_text=True)
    assert "Modifica della posizione" in text
    data = form_of(text)
    assert data["single_amount"] == "100,00"
    new_due = date.today() + timedelta(days=75)
    data.update(single_amount="85,50", single_due_date=new_due.isoformat(), action="save", reason="Rettifica")
    saved = client.post(f"/officer/positions/{position.id}/edit", data=data)
    assert saved.status_code == 303, saved.get_data(as_text=True)[:2000]
    position = fresh(position.id)
    assert (position.amount_cents, position.due_date, position.pagopa_version) == (8550, new_due, 2)
    [event] = db.session.scalars(sa.select(Event).where(Event.kind == "updated")).all()
    assert event.actor_user_id is not None
    assert event.details["reason"] == "Rettifica"
    timeline = client.get(f"/officer/positions/{position.id}").get_data(as_text=True)
    assert "La posizione è stata modificata." in timeline
    assert "100,00\u00a0€ → 85,50\u00a0€" in timeline


def test_bad_input_stays_on_the_form_with_its_error(client, login, make_user, published):
    position = published(amount=10000)
    login(make_user("operatore", role="operator"))
    data = form_of(client.get(f"/officer/positions/{position.id}/edit").get_data(as_text=True))
    data.update(single_amount="-5", action="save")
    refused = client.post(f"/officer/positions/{position.id}/edit", data=data)
    assert refused.status_code == 422
    assert fresh(position.id).amount_cents == 10000


def test_paid_positions_offer_abatement_not_edit(client, login, make_user, published, creditor):
    position = published(amount=20000, installments=(10000, 10000))
    first = next(o for o in position.options if o.installment_number == 1)
    record(creditor, receipt_for(first))
    login(make_user("operatore", role="operator"))
    page = client.get(f"/officer/positions/{position.id}").get_data(as_text=True)
    assert 'data-testid="edit"' not in page
    assert 'data-testid="abate"' in page
    edit = client.get(f"/officer/positions/{position.id}/edit")
    assert edit.status_code == 303
    done = client.post(f"/officer/positions/{position.id}/abate", data={"amount": "40,00", "reason": "Riduzione"})
    assert done.status_code == 303
    assert fresh(position.id).amount_cents == 16000
    shown = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Sgravio di 40,00" in shown
    assert "già pagata in parte" in shown
    too_much = client.post(f"/officer/positions/{position.id}/abate", data={"amount": "1.000,00", "reason": "x"})
    assert "non può superare" in client.get(too_much.headers["Location"]).get_data(as_text=True)


def test_viewers_neither_edit_nor_abate(client, login, make_user, published):
    position = published()
    login(make_user("consulta", role="viewer"))
    page = client.get(f"/officer/positions/{position.id}").get_data(as_text=True)
    assert 'data-testid="edit"' not in page
    assert 'data-testid="abate"' not in page
    assert client.get(f"/officer/positions/{position.id}/edit").status_code == 403
    abate = client.post(f"/officer/positions/{position.id}/abate", data={"amount": "1", "reason": "x"})
    assert abate.status_code == 403


def test_abating_in_full_cancels(client, login, make_user, published):
    position = published(amount=5000)
    login(make_user("operatore", role="operator"))
    client.post(f"/officer/positions/{position.id}/abate", data={"amount": "50", "reason": "Non dovuto"})
    assert fresh(position.id).status == PositionStatus.CANCELLED
