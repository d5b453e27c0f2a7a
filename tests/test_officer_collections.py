"""The collections pages: dashboard aging and alert, batch selection, preview, start, progress, roles and CSRF."""

from datetime import date, timedelta

import sqlalchemy as sa

from portal.collections import batches
from portal.collections.models import CollectionBatch, Reminder
from portal.extensions import db
from portal.ledger.models import Position
from portal.ledger.status import PositionStatus


def test_dashboard_shows_aging_buckets_linked_to_the_list_and_the_alert(client, login, make_user, overdue_position,
                                                                          service):
    from portal.collections import overdue

    overdue_position(days=45, amount=12345)
    overdue.scan(db.session, today=date.today())
    db.session.commit()
    login(make_user(role="operator"))
    page = client.get("/officer/").get_data(as_text=True)
    assert 'data-testid="aging-table"' in page
    assert "123,45" in page
    due_from = (date.today() - timedelta(days=60)).isoformat()
    assert f"due_from={due_from}" in page
    assert "1 posizione scaduta da sollecitare" in page
    assert "/officer/collections/new?kind=reminder" in page


def test_dashboard_alert_respects_the_officer_scope(client, login, make_user, make_service, overdue_position):
    from portal.collections import overdue

    other = make_service(code="MENSA", name="Mensa", taxonomy_code="9/0107101TS/")
    overdue_position(days=45)
    overdue.scan(db.session, today=date.today())
    db.session.commit()
    login(make_user("mensa", role="operator", services=[other]))
    page = client.get("/officer/").get_data(as_text=True)
    assert 'data-testid="overdue-alert"' not in page
    assert "Nessuna posizione scaduta da incassare." in page


def test_digest_setting_is_the_officers_own_and_needs_an_email(client, login, make_user):
    user = login(make_user(role="viewer"))
    client.post("/officer/me/overdue-digest", data={"enabled": "1"})
    assert db.session.get(type(user), user.id).overdue_digest is False
    user.email = "v@comune.example"
    db.session.commit()
    client.post("/officer/me/overdue-digest", data={"enabled": "1"})
    db.session.expire_all()
    assert db.session.get(type(user), user.id).overdue_digest is True
    assert client.post("/officer/me/overdue-digest", data={"enabled": "0"}, csrf=False).status_code in (302, 400)


def test_preview_then_start_a_reminder_batch(client, login, make_user, overdue_position, app):
    overdue_position(days=40, amount=25000)
    login(make_user(role="operator"))
    page = client.get("/officer/collections/new?kind=reminder").get_data(as_text=True)
    assert "1 posizione" in page
    assert "250,00" in page
    pdf = client.get("/officer/collections/preview.pdf?kind=reminder")
    assert pdf.mimetype == "application/pdf"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Reminder)) == 0
    response = client.post("/officer/collections/new", data={"kind": "reminder", "title": "Solleciti TARI"})
    assert response.status_code == 302
    batch = db.session.scalar(sa.select(CollectionBatch))
    assert (batch.total, batch.title) == (1, "Solleciti TARI")
    app.extensions["paybox_jobs"].run_pending()
    db.session.expire_all()
    assert db.session.scalar(sa.select(Position.status)) == PositionStatus.REMINDED
    status = client.get(f"/officer/collections/{batch.id}").get_data(as_text=True)
    assert "Concluso" in status
    assert "sollecitata" in status


def test_viewers_look_but_do_not_start_batches(client, login, make_user, overdue_position):
    overdue_position(days=40)
    login(make_user(role="viewer"))
    assert client.get("/officer/collections").status_code == 200
    assert client.get("/officer/collections/new").status_code == 403
    assert client.post("/officer/collections/new", data={"kind": "reminder"}).status_code == 403


def test_starting_a_batch_needs_csrf(client, login, make_user, overdue_position):
    overdue_position(days=40)
    login(make_user(role="operator"))
    client.post("/officer/collections/new", data={"kind": "reminder"}, csrf=False)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CollectionBatch)) == 0


def test_scoped_officers_select_only_their_services(client, login, make_user, make_service, overdue_position):
    other = make_service(code="MENSA", name="Mensa", taxonomy_code="9/0107101TS/")
    overdue_position(days=40)
    login(make_user("mensa", role="operator", services=[other]))
    assert "0 posizioni" in client.get("/officer/collections/new?kind=reminder").get_data(as_text=True)
    client.post("/officer/collections/new", data={"kind": "reminder"})
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CollectionBatch)) == 0


def test_litigation_preview_shows_the_breakdown_and_the_act(client, login, make_user, overdue_position, creditor,
                                                            service):
    from portal.collections.models import CollectionPolicy

    overdue_position(days=400, status=PositionStatus.EXPIRED)
    db.session.add(CollectionPolicy(service_id=service.id, requires_reminder=False))
    db.session.commit()
    login(make_user(role="admin"))
    page = client.get("/officer/collections/new?kind=litigation").get_data(as_text=True)
    assert 'data-testid="breakdown"' in page
    assert "Sanzione" in page
    assert "Spese di notifica: 7,83" in page
    client.post("/officer/collections/new", data={"kind": "litigation"})
    batch = db.session.scalar(sa.select(CollectionBatch))
    batches.run_chunk(db.session, batch.id, today=date.today())
    db.session.commit()
    new = db.session.scalar(sa.select(Position).where(Position.replaces_id.is_not(None)))
    act = client.get(f"/officer/positions/{new.id}/act.pdf")
    assert act.mimetype == "application/pdf"
    assert client.get(f"/officer/positions/{new.replaces_id}/act.pdf").status_code == 404
