"""Spontaneous payments never paid: after CITIZEN_ABANDONED_DAYS their positions are cancelled by a periodic job,
through the ledger (event, options cancelled, pagoPA asked to invalidate), and nothing else is touched."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from portal.citizen_payments.abandoned import cancel_abandoned, candidates
from portal.extensions import db
from portal.jobs import tasks
from portal.jobs.periodic import PERIODIC_JOBS
from portal.ledger.models import Event, Position
from portal.ledger.status import OptionStatus, PositionStatus
from portal.ledger.types import utcnow


def aged(position, days: int) -> Position:
    db.session.execute(sa.update(Position).where(Position.id == position.id)
                       .values(created_at=utcnow() - timedelta(days=days)))
    db.session.commit()
    db.session.expire_all()
    return db.session.get(Position, position.id)


def test_an_abandoned_citizen_position_is_cancelled_through_the_ledger(ctx, make_position):
    old = aged(make_position(source="citizen", external_id="tok-old"), 31)
    cancelled = cancel_abandoned(db.session, days=30, now=utcnow())
    db.session.commit()
    assert cancelled == [old.id]
    position = db.session.get(Position, old.id)
    assert position.status == PositionStatus.CANCELLED
    assert all(o.status == OptionStatus.CANCELLED for o in position.options)
    assert position.pagopa_target == "invalid"  # pagoPA is asked to invalidate its copy
    event = db.session.scalars(sa.select(Event).where(Event.position_id == old.id, Event.kind == "cancelled")).one()
    assert event.actor == "system"
    assert "30 giorni" in event.details["reason"]
    # A second run finds nothing left to do.
    assert cancel_abandoned(db.session, days=30, now=utcnow()) == []


def test_recent_paid_and_other_positions_are_left_alone(ctx, make_position):
    recent = aged(make_position(source="citizen", external_id="tok-recent"), 29)
    manual = aged(make_position(source="manual"), 90)
    paid = aged(make_position(source="citizen", external_id="tok-paid"), 90)
    db.session.execute(sa.update(Position).where(Position.id == paid.id)
                       .values(status=PositionStatus.PAID, paid_cents=paid.amount_cents))
    partly = aged(make_position(source="citizen", external_id="tok-partly", amount=0, installments=(500, 500)), 90)
    db.session.execute(sa.update(Position).where(Position.id == partly.id)
                       .values(status=PositionStatus.PARTIALLY_PAID, paid_cents=500))
    db.session.commit()
    assert candidates(db.session, days=30, now=utcnow()) == []
    assert cancel_abandoned(db.session, days=30, now=utcnow()) == []
    for position in (recent, manual, paid, partly):
        assert db.session.get(Position, position.id).status != PositionStatus.CANCELLED


def test_the_periodic_job_follows_the_setting(app, ctx, make_position, monkeypatch):
    assert "cancel_abandoned_citizen_positions" in [job.task for job in PERIODIC_JOBS]
    old = aged(make_position(source="citizen", external_id="tok-job"), 12)
    run = tasks.cancel_abandoned_citizen_positions.spec.func
    monkeypatch.setitem(app.config, "CITIZEN_ABANDONED_DAYS", 0)
    outcome = run(db.session)
    assert outcome.idle
    assert "disattivato" in outcome
    monkeypatch.setitem(app.config, "CITIZEN_ABANDONED_DAYS", 30)
    assert run(db.session).idle
    monkeypatch.setitem(app.config, "CITIZEN_ABANDONED_DAYS", 10)
    outcome = run(db.session)
    db.session.commit()
    assert outcome == "1 posizioni annullate"
    assert db.session.get(Position, old.id).status == PositionStatus.CANCELLED


def test_days_must_be_positive(ctx):
    with pytest.raises(ValueError, match="at least 1"):
        cancel_abandoned(db.session, days=0, now=utcnow())
