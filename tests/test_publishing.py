"""Publishing drafts: one from its page or a whole selection of the list, with the checks of creation, through the
sync, up to the sandbox (GPD) over HTTP."""

import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from portal import outbox
from portal.extensions import db
from portal.ledger import publishing, queries
from portal.ledger.models import Event, Position
from portal.ledger.status import PositionStatus
from tests.test_sync import jobs, sandbox, sandbox_server, sandbox_state  # noqa: F401

S = PositionStatus


@pytest.fixture
def imu(make_service):
    return make_service(code="IMU", name="IMU", taxonomy_code="9/0101100IM/", draft_first=True)


@pytest.fixture
def drafts(make_position, imu):
    return [make_position(service=imu, amount=10000 + n) for n in range(3)]


def events(kind):
    return db.session.scalars(sa.select(Event).where(Event.kind == kind)).all()


def test_a_kept_draft_is_published_through_its_sync_job(ctx, drafts):
    position = drafts[0]
    assert (position.status, position.pagopa_target, position.sync_pending) == (S.DRAFT, "absent", False)
    publishing.publish_position(db.session, position, actor="user:1")
    assert [(r.task, r.ids) for r in outbox.pending(db.session)] == [("sync_position", (position.id,))]
    db.session.commit()
    assert (position.pagopa_target, position.sync_pending) == ("published", True)
    assert [e.position_id for e in events("publish_requested")] == [position.id]
    with pytest.raises(publishing.PublishRefused, match="già stata richiesta"):
        publishing.publish_position(db.session, position, actor="user:1")


def test_the_checks_of_creation_apply_again(ctx, drafts, imu, make_position):
    late = drafts[0]
    db.session.execute(sa.update(Position).where(Position.id == late.id).values(due_date=date.today()))
    for option in late.options:
        option.due_date = date.today() - timedelta(days=1)
    db.session.commit()
    with pytest.raises(publishing.PublishRefused, match="scadenza è già passata"):
        publishing.publish_position(db.session, late, actor="user:1")
    imu.active = False
    db.session.commit()
    with pytest.raises(publishing.PublishRefused, match="servizio non è attivo"):
        publishing.publish_position(db.session, drafts[1], actor="user:1")
    on_its_way = make_position(amount=500)  # a service that publishes at once: not a kept draft
    with pytest.raises(publishing.PublishRefused):
        publishing.publish_position(db.session, on_its_way, actor="user:1")


def test_a_selection_is_published_set_based_and_leaves_what_fails_a_check(ctx, creditor, drafts):
    for option in drafts[2].options:
        option.due_date = date.today() - timedelta(days=1)
    db.session.commit()
    flt = queries.PositionFilter(status=S.DRAFT)
    assert publishing.count_selection(db.session, creditor.id, flt) == 3
    result = publishing.publish_selection(db.session, creditor.id, flt, actor="user:1")
    assert [r.task for r in outbox.pending(db.session)] == ["sync_sweep"]
    db.session.commit()
    assert result == publishing.SelectionResult(published=2, past_due=1, inactive_service=0)
    targets = {p.id: db.session.get(Position, p.id).pagopa_target for p in drafts}
    assert targets == {drafts[0].id: "published", drafts[1].id: "published", drafts[2].id: "absent"}
    assert len(events("publish_requested")) == 2
    assert publishing.count_selection(db.session, creditor.id, flt) == 1


def test_published_drafts_reach_the_sandbox(ctx, creditor, drafts, jobs, sandbox):  # noqa: F811
    publishing.publish_position(db.session, drafts[0], actor="user:1")
    publishing.publish_selection(db.session, creditor.id, queries.PositionFilter(status=S.DRAFT), actor="user:1")
    db.session.commit()
    jobs.run_pending()
    db.session.expire_all()
    assert {db.session.get(Position, p.id).status for p in drafts} == {S.PUBLISHED}
    assert sandbox_state(sandbox)["positions"] == 3


# --- The pages ---------------------------------------------------------------------------------------------------


def test_an_operator_publishes_a_draft_from_its_page(client, login, make_user, drafts):
    login(make_user("operatore", role="operator"))
    page = client.get(f"/officer/positions/{drafts[0].id}").get_data(as_text=True)
    assert 'data-testid="publish"' in page
    assert "è una bozza" in page  # no notice yet, and it says why
    assert client.post(f"/officer/positions/{drafts[0].id}/publish", csrf=False).status_code == 400
    response = client.post(f"/officer/positions/{drafts[0].id}/publish")
    assert response.status_code == 303
    assert db.session.get(Position, drafts[0].id).pagopa_target == "published"
    again = client.get(f"/officer/positions/{drafts[0].id}").get_data(as_text=True)
    assert 'data-testid="publish"' not in again
    assert "in corso di caricamento" in again


def test_viewers_cannot_publish(client, login, make_user, drafts):
    login(make_user("consulta", role="viewer"))
    assert 'data-testid="publish"' not in client.get(f"/officer/positions/{drafts[0].id}").get_data(as_text=True)
    assert client.post(f"/officer/positions/{drafts[0].id}/publish").status_code == 403
    assert client.get("/officer/positions/publish").status_code == 403


def test_the_list_publishes_its_selection_after_a_confirmation(client, login, make_user, drafts, imu):
    login(make_user("operatore", role="operator"))
    listing = client.get(f"/officer/positions?service_id={imu.id}").get_data(as_text=True)
    link = re.search(r'href="([^"]+)"\s+data-testid="publish-selection"', listing).group(1).replace("&amp;", "&")
    assert f"service_id={imu.id}" in link
    confirm = client.get(link).get_data(as_text=True)
    assert "seleziona 3 bozze" in confirm
    done = client.post(link)
    assert done.status_code == 303
    assert "Pubblicazione richiesta per 3 bozze." in client.get(done.headers["Location"]).get_data(as_text=True)
    assert {db.session.get(Position, p.id).pagopa_target for p in drafts} == {"published"}


def test_publishing_a_selection_filtered_on_drafts_lands_on_the_drafts_left(client, login, make_user, drafts, imu):
    login(make_user("operatore", role="operator"))
    done = client.post(f"/officer/positions/publish?service_id={imu.id}&status=draft")
    assert done.status_code == 303
    assert "status=draft" in done.headers["Location"]
