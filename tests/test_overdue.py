"""Overdue detection: the daily scan, the aging buckets, the officers' alert and digest (PostgreSQL)."""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from portal.collections import digest, overdue
from portal.collections.models import CollectionPolicy
from portal.extensions import db
from portal.ledger import totals
from portal.ledger.models import Event, Position
from portal.ledger.status import PositionStatus

S = PositionStatus


def test_scan_marks_expired_what_is_past_due_with_an_event(overdue_position, make_position):
    late = overdue_position(days=3)
    future = make_position(due=date.today() + timedelta(days=5))
    result = overdue.scan(db.session, today=date.today())
    db.session.commit()
    assert result.count == 1
    assert db.session.get(Position, late.id).status == S.EXPIRED
    assert db.session.get(Position, future.id).status == S.DRAFT
    event = db.session.scalar(sa.select(Event).where(Event.position_id == late.id, Event.kind == "expired"))
    assert event.actor == "system"
    assert event.details == {"previous": "published", "due_date": (date.today() - timedelta(days=3)).isoformat(),
                             "grace_days": 0}
    assert totals.matches_positions(db.session)


def test_scan_twice_changes_nothing(overdue_position):
    overdue_position(days=3)
    overdue.scan(db.session, today=date.today())
    db.session.commit()
    assert overdue.scan(db.session, today=date.today()).count == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.kind == "expired")) == 1


def test_scan_waits_for_the_service_grace_days(overdue_position, service):
    position = overdue_position(days=3)
    db.session.add(CollectionPolicy(service_id=service.id, grace_days=5))
    db.session.commit()
    assert overdue.scan(db.session, today=date.today()).count == 0
    assert overdue.scan(db.session, today=date.today() + timedelta(days=3)).count == 1
    db.session.commit()
    assert db.session.get(Position, position.id).status == S.EXPIRED


def test_scan_leaves_reminded_and_paid_positions(overdue_position):
    reminded = overdue_position(days=50, status=S.REMINDED)
    overdue.scan(db.session, today=date.today())
    db.session.commit()
    assert db.session.get(Position, reminded.id).status == S.REMINDED


def test_aging_buckets_per_service(overdue_position, make_service):
    other = make_service(code="MENSA", name="Mensa", taxonomy_code="9/0107101TS/")
    for days, amount in ((10, 1000), (30, 2000), (31, 4000), (75, 8000), (200, 16000)):
        overdue_position(days=days, amount=amount)
    overdue_position(days=95, amount=500, svc=other)
    rows = overdue.aging(db.session, other.creditor_id, today=date.today())
    first = next(r for r in rows if r.service_id != other.id)
    assert [(b.key, b.count, b.owed_cents) for b in first.buckets] == [
        ("0-30", 2, 3000), ("31-60", 1, 4000), ("61-90", 1, 8000), ("90+", 1, 16000)]
    second = next(r for r in rows if r.service_id == other.id)
    assert (second.count, second.owed_cents) == (1, 500)
    scoped = overdue.aging(db.session, other.creditor_id, today=date.today(), scope={other.id})
    assert [r.service_id for r in scoped] == [other.id]


def test_bucket_dates_link_to_the_positions_list():
    today = date(2027, 3, 31)
    ranges = overdue.bucket_dates(today)
    assert ranges["0-30"] == (date(2027, 3, 1), date(2027, 3, 30))
    assert ranges["90+"] == (None, date(2026, 12, 30))


def test_alerts_count_expired_and_reminded(overdue_position, service):
    overdue_position(days=10, amount=1000)
    overdue_position(days=60, amount=2000, status=S.REMINDED)
    overdue.scan(db.session, today=date.today())
    db.session.commit()
    [alert] = overdue.alerts(db.session, service.creditor_id)
    assert (alert.expired_count, alert.expired_cents, alert.reminded_count) == (1, 1000, 1)
    assert overdue.alerts(db.session, service.creditor_id, scope=set()) == []


def test_digest_goes_only_to_officers_who_asked_and_names_their_services(overdue_position, make_user, make_service):
    other = make_service(code="MENSA", name="Mensa scolastica", taxonomy_code="9/0107101TS/")
    overdue_position(days=40, amount=1234, svc=other)
    asked = make_user("mensa", role="operator", services=[other])
    asked.email, asked.overdue_digest = "mensa@comune.example", True
    make_user("altro", role="operator").email = "altro@comune.example"
    db.session.commit()

    class Outbox:
        sent = []

        def send(self, message):
            self.sent.append(message)

    box = Outbox()
    summary = digest.send_digests(db.session, box, today=date.today(), dashboard_url="http://x/officer/")
    assert summary.startswith("1 riepiloghi")
    [message] = box.sent
    assert message["To"].endswith("<mensa@comune.example>")
    body = message.get_content()
    assert "Mensa scolastica: 1 posizioni" in body
    assert "12,34" in body
    assert "31–60 giorni" in body


@pytest.mark.parametrize("task", ["overdue_scan", "overdue_digest"])
def test_the_daily_jobs_are_scheduled(task):
    from portal.jobs.periodic import PERIODIC_JOBS

    assert {j.task: j.every for j in PERIODIC_JOBS}[task] == 24 * 3600
