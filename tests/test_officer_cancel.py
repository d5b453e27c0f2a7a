"""Cancelling a credit from the position page: who may, from which states, and what reaches pagoPA."""

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.jobs.queue import get_backend
from portal.ledger import services as ledger
from portal.ledger.models import Event, Position
from portal.ledger.status import OptionStatus, PositionStatus


def url(position):
    return f"/officer/positions/{position.id}/cancel"


def fresh(position_id):
    db.session.expire_all()
    return db.session.get(Position, position_id)


@pytest.fixture
def published(make_position):
    position = make_position(installments=(5000, 5000))
    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="pagopa")
    position.pagopa_synced_target, position.pagopa_synced_version = "published", position.pagopa_version
    position.sync_pending = False
    db.session.commit()
    return position


def test_operator_cancels_with_a_reason_and_pagopa_is_asked_to_invalidate(client, login, make_user, published):
    user = login(make_user())
    response = client.post(url(published), data={"reason": "Sgravio per errore di calcolo"})
    assert response.status_code == 303
    position = fresh(published.id)
    assert position.status == PositionStatus.CANCELLED
    assert position.cancelled_at is not None
    assert {o.status for o in position.options} == {OptionStatus.CANCELLED}
    assert (position.pagopa_target, position.sync_pending) == ("invalid", True)
    event = db.session.scalars(
        sa.select(Event).where(Event.position_id == position.id, Event.kind == "cancelled")).one()
    assert event.details["reason"] == "Sgravio per errore di calcolo"
    assert event.actor_user_id == user.id
    assert [job.task for job in get_backend(client.application).pending] == ["sync_position"]


def test_a_draft_never_sent_to_pagopa_is_cancelled_without_a_sync(client, login, make_user, make_position):
    login(make_user())
    draft = make_position()
    draft.pagopa_target, draft.sync_pending = "absent", False
    db.session.commit()
    client.post(url(draft), data={"reason": "Duplicato"})
    position = fresh(draft.id)
    assert position.status == PositionStatus.CANCELLED
    assert (position.pagopa_target, position.sync_pending) == ("absent", False)


def test_reason_is_required(client, login, make_user, published):
    login(make_user())
    response = client.post(url(published), data={"reason": "  "}, follow_redirects=True)
    assert "Indicare il motivo dell&#39;annullamento." in response.get_data(as_text=True)
    assert fresh(published.id).status == PositionStatus.PUBLISHED


def test_a_paid_position_cannot_be_cancelled(client, login, make_user, published):
    login(make_user())
    ledger.transition(db.session, published, PositionStatus.PAID, actor="pagopa")
    db.session.commit()
    response = client.post(url(published), data={"reason": "Errore"}, follow_redirects=True)
    assert "non può essere annullata" in response.get_data(as_text=True)
    assert fresh(published.id).status == PositionStatus.PAID


def test_viewer_and_out_of_scope_operator_are_refused(client, login, make_user, make_service, published):
    login(make_user("lettore", role="viewer"))
    assert client.post(url(published), data={"reason": "x"}).status_code == 403
    client.post("/officer/logout")
    login(make_user("mensa", services=[make_service(code="MENSA", name="Mensa", taxonomy_code="9/0107101TS/")]))
    assert client.post(url(published), data={"reason": "x"}).status_code == 404
    assert client.post(url(published), data={"reason": "x"}, csrf=False).status_code in (400, 404)
    assert fresh(published.id).status == PositionStatus.PUBLISHED


def test_position_page_offers_cancel_only_when_allowed(client, login, make_user, published):
    login(make_user())
    assert "Annulla la posizione" in client.get(f"/officer/positions/{published.id}").get_data(as_text=True)
    ledger.transition(db.session, published, PositionStatus.PAID, actor="pagopa")
    db.session.commit()
    assert "Annulla la posizione" not in client.get(f"/officer/positions/{published.id}").get_data(as_text=True)
