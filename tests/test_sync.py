"""Durable sync of positions with GPD: the decisions, the backoff, and the real GPD client against the sandbox.

No fake client: every pagoPA call goes over HTTP to ``portal.pagopa.sandbox`` served on a free port in a thread
(faults injected through its ``/sandbox/faults``). Jobs run through the manual backend (``run_pending``).
"""

import logging
from datetime import date, timedelta

import pytest
import requests
import sqlalchemy as sa

from portal import outbox
from portal.extensions import db
from portal.jobs.models import JobRecord
from portal.jobs.queue import ManualBackend
from portal.ledger import services as ledger
from portal.ledger import sync_state
from portal.ledger.models import Event, Position
from portal.ledger.status import OptionStatus, PositionStatus
from portal.ledger.types import utcnow
from portal.pagopa import sync
from portal.pagopa.errors import DebtPositionNotFound
from portal.pagopa.gpd import GPDClient
from portal.pagopa.mapping import position_payload
from tests.conftest import CF_COMUNE, position_input

API_KEY = "sync-test-key"


# --- The sandbox, and the app pointed at it ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_server(tmp_path_factory):
    """The pagoPA sandbox on a free local port (one per module; reset before each test)."""
    from portal.pagopa.sandbox import create_app as create_sandbox
    from tests.servers import serving

    path = tmp_path_factory.mktemp("sandbox") / "sandbox.sqlite3"
    app = create_sandbox({"TESTING": True, "SANDBOX_DATABASE": str(path), "SANDBOX_API_KEY": API_KEY,
                          "SANDBOX_DELIVERY_WORKER": False, "SECRET_KEY": "sandbox-test"})
    with serving(app) as base:
        yield base


@pytest.fixture
def sandbox(sandbox_server):
    """The sandbox's base URL, emptied and without faults."""
    requests.post(f"{sandbox_server}/sandbox/reset", timeout=5).raise_for_status()
    requests.delete(f"{sandbox_server}/sandbox/faults", timeout=5).raise_for_status()
    yield sandbox_server
    requests.delete(f"{sandbox_server}/sandbox/faults", timeout=5)


def gpd_url(sandbox: str) -> str:
    """``PAGOPA_GPD_URL`` for the sandbox."""
    return f"{sandbox}/gpd/debt-positions-service"


@pytest.fixture
def gpd(sandbox):
    """The real GPD client, talking to the sandbox."""
    return GPDClient(gpd_url(sandbox), API_KEY, timeout=5)


@pytest.fixture
def jobs(app, sandbox, monkeypatch):
    """The manual job backend of the test app, whose jobs talk to the sandbox."""
    monkeypatch.setitem(app.config, "PAGOPA_GPD_URL", gpd_url(sandbox))
    monkeypatch.setitem(app.config, "PAGOPA_API_KEY", API_KEY)
    monkeypatch.setitem(app.config, "PAGOPA_TIMEOUT_SECONDS", 5)
    backend = ManualBackend(app)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    return backend


def fault(sandbox: str, match: str, **spec) -> None:
    """Make the sandbox fail (or delay) the next requests matching ``match``."""
    requests.post(f"{sandbox}/sandbox/faults", json={"match": match, **spec}, timeout=5).raise_for_status()


def sandbox_state(sandbox: str) -> dict:
    """The sandbox's own summary (positions by status, ...)."""
    return requests.get(f"{sandbox}/sandbox/state", timeout=5).json()


def events(position_id: int, kind: str | None = None) -> list[Event]:
    """The timeline of a position (optionally one kind)."""
    query = sa.select(Event).where(Event.position_id == position_id).order_by(Event.id)
    if kind:
        query = query.where(Event.kind == kind)
    return list(db.session.scalars(query))


def fresh(position_id: int) -> Position:
    """The position as committed."""
    db.session.expire_all()
    return db.session.get(Position, position_id)


@pytest.fixture
def new_position(creditor, service):
    """Create (and commit) a position the way an officer does: intent set, sync job asked for."""

    def make(*, enqueue_sync=True, today=None, **kwargs):
        svc = kwargs.pop("service", service)
        position, _ = ledger.create_position(db.session, creditor, position_input(svc, **kwargs), actor="test",
                                             today=today, enqueue_sync=enqueue_sync)
        db.session.commit()
        return position

    return make


def past_due_position(new_position, **kwargs):
    """A position whose due date has passed (GPD refuses to create it: 400 Dates congruence error)."""
    due = date.today() - timedelta(days=3)
    return new_position(due=due, today=due - timedelta(days=30), **kwargs)


# --- Decisions without I/O ---------------------------------------------------------------------------------------


def test_backoff_doubles_from_30_seconds_up_to_an_hour():
    assert [sync_state.backoff_seconds(n) for n in range(1, 10)] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert sync_state.backoff_seconds(0) == 30
    assert sync_state.backoff_seconds(500) == 3600


def test_backoff_honours_a_longer_retry_after_but_stays_capped():
    assert sync_state.backoff_seconds(1, retry_after=120) == 120
    assert sync_state.backoff_seconds(3, retry_after=5) == 120
    assert sync_state.backoff_seconds(1, retry_after=0.2) == 30
    assert sync_state.backoff_seconds(1, retry_after=99_999) == 3600


@pytest.mark.parametrize(("target", "version", "synced", "synced_version", "expected"), [
    ("published", 1, None, None, "create"),
    ("published", 1, "published", 1, None),
    ("published", 2, "published", 1, "update"),
    ("published", 2, "published", None, "update"),
    ("published", 1, "deleted", 1, "create"),
    ("invalid", 1, "published", 1, "invalidate"),
    ("invalid", 1, None, None, "invalidate"),
    ("invalid", 1, "invalid", 1, None),
    ("deleted", 1, "published", 1, "delete"),
    ("deleted", 1, "deleted", 1, None),
    ("absent", 1, None, None, None),
    ("absent", 1, "published", 1, "delete"),
    ("absent", 1, "invalid", 1, None),
])
def test_next_action_closes_the_gap_between_target_and_confirmed_state(target, version, synced, synced_version,
                                                                        expected):
    position = Position(pagopa_target=target, pagopa_version=version, pagopa_synced_target=synced,
                        pagopa_synced_version=synced_version)
    assert sync_state.next_action(position) == expected
    assert sync_state.is_converged(position) is (expected is None)


# --- Intent and enqueue at creation ------------------------------------------------------------------------------


def test_new_position_wants_to_be_published_and_enqueues_its_sync_after_commit(ctx, creditor, service):
    backend = ManualBackend(None)
    position, _ = ledger.create_position(db.session, creditor, position_input(service), actor="test")
    db.session.info["paybox.jobs.backend"] = backend
    try:
        assert position.pagopa_target == "published"
        assert position.sync_pending is True
        assert position.sync_next_at is not None
        assert [(p.task, p.ids, p.job_id) for p in outbox.pending(db.session)] == [
            ("sync_position", (position.id,), f"sync-position-{position.id}")]
        assert backend.pending == []  # not before the commit
        db.session.commit()
    finally:
        db.session.info.pop("paybox.jobs.backend", None)
    assert [(p.task, p.ids) for p in backend.pending] == [("sync_position", (position.id,))]
    record = db.session.scalar(sa.select(JobRecord))
    assert (record.kind, record.status, record.rq_id, record.args) == (
        "sync_position", "queued", f"sync-position-{position.id}", {"ids": [position.id]})
    assert record.creditor_id == creditor.id


def test_draft_first_service_keeps_new_positions_off_pagopa(ctx, creditor, make_service):
    service = make_service(code="IMU", name="IMU", draft_first=True)
    position, _ = ledger.create_position(db.session, creditor, position_input(service), actor="test")
    assert (position.pagopa_target, position.sync_pending) == ("absent", False)
    assert outbox.pending(db.session) == []
    db.session.rollback()


def test_request_sync_does_nothing_when_pagopa_already_agrees(ctx, new_position):
    position = new_position(enqueue_sync=False)
    position.pagopa_synced_target, position.pagopa_synced_version = "published", 1
    assert sync_state.request_sync(db.session, position) is False
    assert position.sync_pending is False
    assert outbox.pending(db.session) == []
    assert sync_state.request_sync(db.session, position, content_changed=True) is True
    assert (position.pagopa_version, position.sync_pending) == (2, True)
    assert [p.job_id for p in outbox.pending(db.session)] == [f"sync-position-{position.id}"]
    with pytest.raises(ValueError, match="unknown pagoPA target"):
        sync_state.request_sync(db.session, position, target="gone")
    db.session.rollback()


# --- One position against the sandbox ----------------------------------------------------------------------------


def test_new_position_is_published_on_pagopa_within_its_job(ctx, jobs, gpd, new_position):
    position = new_position(installments=(5000, 5000))

    assert jobs.run_pending() == 1

    position = fresh(position.id)
    assert position.status == PositionStatus.PUBLISHED
    assert position.published_at is not None
    assert (position.pagopa_synced_target, position.pagopa_synced_version) == ("published", 1)
    assert (position.sync_pending, position.sync_attempts, position.sync_error, position.sync_next_at) == (
        False, 0, None, None)
    published = events(position.id, "published")
    assert len(published) == 1
    assert published[0].actor == "system"
    assert published[0].details["channel"] == "gpd"
    remote = gpd.get(CF_COMUNE, position.iupd)
    assert remote.status == "VALID"
    assert sorted(o.iuv for o in remote.options) == sorted(o.iuv for o in position.options)
    record = db.session.scalar(sa.select(JobRecord))
    assert (record.status, record.attempts) == ("done", 1)
    assert "allineata con pagoPA (caricamento)" in record.message
    assert record.started_at is not None
    assert record.finished_at is not None


def test_duplicate_create_answered_409_counts_as_published_after_a_get(ctx, gpd, new_position, sandbox):
    position = new_position(enqueue_sync=False)
    # An earlier attempt reached GPD but its answer was lost.
    gpd.create(CF_COMUNE, position_payload(position))

    outcome = sync.sync_position(db.session, position.id, gpd)
    db.session.commit()

    assert (outcome.result, outcome.actions) == ("synced", ("create",))
    position = fresh(position.id)
    assert position.status == PositionStatus.PUBLISHED
    assert position.sync_error is None
    assert events(position.id, "sync_failed") == []
    assert sandbox_state(sandbox)["positions"] == 1


def test_duplicate_of_an_edited_position_is_updated_after_the_get(ctx, gpd, new_position):
    position = new_position(enqueue_sync=False)
    gpd.create(CF_COMUNE, position_payload(position))  # version 1 reached GPD, answer lost
    position.options[0].description = "Descrizione corretta"
    sync_state.request_sync(db.session, position, content_changed=True, enqueue=False)
    db.session.commit()

    outcome = sync.sync_position(db.session, position.id, gpd)
    db.session.commit()

    assert outcome.actions == ("create", "update")
    assert gpd.get(CF_COMUNE, position.iupd).raw["paymentOption"][0]["description"] == "Descrizione corretta"
    assert fresh(position.id).pagopa_synced_version == 2


def test_iuv_taken_by_another_position_is_a_rejection_the_officer_sees(ctx, gpd, new_position):
    position = new_position(enqueue_sync=False)
    payload = position_payload(position)
    payload["iupd"] = f"{CF_COMUNE}-someone-else"
    gpd.create(CF_COMUNE, payload)

    before = utcnow()
    outcome = sync.sync_position(db.session, position.id, gpd)
    db.session.commit()

    assert outcome.result == "rejected"
    position = fresh(position.id)
    assert position.status == PositionStatus.DRAFT
    assert position.sync_pending is True
    assert position.sync_error.startswith("HTTP 409")
    assert "unique" in position.sync_error.lower()
    assert position.sync_next_at >= before + timedelta(seconds=sync_state.REJECTED_RETRY_SECONDS - 5)
    (failed,) = events(position.id, "sync_failed")
    assert (failed.actor, failed.details["status"], failed.details["action"]) == ("pagopa", 409, "create")
    assert "unique" in failed.details["title"].lower()


def test_data_error_is_stored_once_and_retried_slowly(ctx, gpd, new_position):
    position = past_due_position(new_position, enqueue_sync=False)

    first = sync.sync_position(db.session, position.id, gpd)
    db.session.commit()
    # GPD's detail quotes the current time: the next answer's text differs, the failure is the same.
    fresh(position.id).sync_error += " (one second earlier)"
    db.session.commit()
    second = sync.sync_position(db.session, position.id, gpd)
    db.session.commit()

    assert (first.result, second.result) == ("rejected", "rejected")
    position = fresh(position.id)
    assert "HTTP 400" in position.sync_error
    assert "Dates congruence error" in position.sync_error
    assert position.sync_attempts == 2
    assert len(events(position.id, "sync_failed")) == 1  # the same failure again does not fill the timeline


def test_pagopa_unavailable_backs_off_then_publishes_and_clears_the_error(ctx, gpd, new_position, sandbox):
    position = new_position(enqueue_sync=False)
    fault(sandbox, "POST /gpd/", status=503, count=2)

    start = utcnow()
    first = sync.sync_position(db.session, position.id, gpd, now=start)
    db.session.commit()
    second = sync.sync_position(db.session, position.id, gpd, now=start)
    db.session.commit()
    position = fresh(position.id)

    assert (first.result, second.result) == ("retry", "retry")
    assert position.sync_attempts == 2
    assert position.sync_next_at == start + timedelta(seconds=60)
    assert position.sync_error.startswith("HTTP 503")
    assert not sync_state.is_due(position, start + timedelta(seconds=59))
    assert sync_state.is_due(position, start + timedelta(seconds=60))
    assert events(position.id, "sync_failed") == []  # passing trouble: no timeline noise

    third = sync.sync_position(db.session, position.id, gpd)
    db.session.commit()
    position = fresh(position.id)
    assert third.result == "synced"
    assert (position.sync_attempts, position.sync_error, position.sync_error_at) == (0, None, None)
    assert position.status == PositionStatus.PUBLISHED


def test_rate_limit_honours_retry_after(ctx, gpd, new_position, sandbox):
    position = new_position(enqueue_sync=False)
    fault(sandbox, "POST /gpd/", status=429, count=1, retry_after=300)

    now = utcnow()
    outcome = sync.sync_position(db.session, position.id, gpd, now=now)
    db.session.commit()

    assert outcome.result == "retry"
    assert fresh(position.id).sync_next_at == now + timedelta(seconds=300)


def test_paid_options_are_marked_paid_on_gpd(ctx, gpd, new_position):
    position = new_position(installments=(4000, 6000), enqueue_sync=False)
    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test")
    first = position.installments[0]
    first.status, first.paid_at = OptionStatus.PAID, utcnow() - timedelta(days=2)
    ledger.transition(db.session, position, PositionStatus.PARTIALLY_PAID, actor="pagopa")
    db.session.commit()

    outcome = sync.sync_position(db.session, position.id, gpd)
    db.session.commit()

    assert outcome.result == "synced"
    remote = gpd.get(CF_COMUNE, position.iupd)
    assert remote.status == "PARTIALLY_PAID"
    assert remote.option(first.iuv).status == "PO_PAID"
    assert remote.option(position.installments[1].iuv).status == "PO_UNPAID"
    assert fresh(position.id).status == PositionStatus.PARTIALLY_PAID  # no "published" step backwards
    assert events(position.id, "published") == [e for e in events(position.id) if e.kind == "published"]


def test_cancelled_position_is_invalidated_on_gpd(ctx, gpd, new_position):
    position = new_position(enqueue_sync=False)
    sync.sync_position(db.session, position.id, gpd)
    db.session.commit()
    position = fresh(position.id)
    ledger.transition(db.session, position, PositionStatus.CANCELLED, actor="test")
    sync_state.request_sync(db.session, position, target="invalid", enqueue=False)
    db.session.commit()

    outcome = sync.sync_position(db.session, position.id, gpd)
    db.session.commit()

    assert outcome.actions == ("invalidate",)
    assert gpd.get(CF_COMUNE, position.iupd).status == "INVALID"
    assert fresh(position.id).pagopa_synced_target == "invalid"
    assert len(events(position.id, "pagopa_invalidated")) == 1
    # Asking again changes nothing.
    assert sync.sync_position(db.session, position.id, gpd).result == "noop"


def test_invalidating_what_never_reached_pagopa_converges_quietly(ctx, gpd, new_position, caplog):
    position = new_position(enqueue_sync=False)
    sync_state.request_sync(db.session, position, target="invalid", enqueue=False)
    db.session.commit()

    caplog.set_level(logging.INFO)
    outcome = sync.sync_position(db.session, position.id, gpd)
    db.session.commit()

    # An expected outcome: an info line, never a warning (the demo's first sweep logged 63 of them).
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert outcome.result == "synced"
    assert fresh(position.id).sync_pending is False
    assert events(position.id, "pagopa_invalidated") == []


def test_a_draft_on_gpd_is_deleted_instead_of_invalidated(ctx, gpd, new_position):
    position = new_position(enqueue_sync=False)
    gpd.create(CF_COMUNE, position_payload(position), to_publish=False)  # DRAFT: GPD cannot invalidate it
    position.pagopa_synced_target, position.pagopa_synced_version = "published", 1
    sync_state.request_sync(db.session, position, target="invalid", enqueue=False)
    db.session.commit()

    outcome = sync.sync_position(db.session, position.id, gpd)
    db.session.commit()

    assert outcome.result == "synced"
    with pytest.raises(DebtPositionNotFound):
        gpd.get(CF_COMUNE, position.iupd)
    (event,) = events(position.id, "pagopa_invalidated")
    assert event.details["how"] == "deleted"


def test_delete_of_an_absent_position_is_a_success(ctx, gpd, new_position):
    position = new_position(enqueue_sync=False)
    position.pagopa_synced_target, position.pagopa_synced_version = "published", 1
    sync_state.request_sync(db.session, position, target="deleted", enqueue=False)
    db.session.commit()

    outcome = sync.sync_position(db.session, position.id, gpd)
    db.session.commit()

    assert (outcome.result, outcome.actions) == ("synced", ("delete",))
    assert fresh(position.id).pagopa_synced_target == "deleted"
    assert events(position.id, "pagopa_deleted") == []


def test_a_position_locked_by_another_worker_is_left_alone(app, ctx, new_position):
    position = new_position(enqueue_sync=False)
    other = db.engine.connect()
    try:
        other.begin()
        other.execute(sa.text("SELECT id FROM positions WHERE id = :id FOR UPDATE"), {"id": position.id})
        outcome = sync.sync_position(db.session, position.id, client=None)
        assert outcome.result == "busy"
        assert sync.sync_position(db.session, 10**9, client=None).result == "missing"
    finally:
        other.rollback()
        other.close()
    db.session.rollback()


# --- Many positions: sweep and bulk publication ------------------------------------------------------------------


def scheduled() -> list[tuple]:
    """What the current transaction asked the outbox for: (task, ids, job id)."""
    return [(r.task, r.ids, r.job_id) for r in outbox.pending(db.session)]


def test_sweep_hands_due_positions_out_once_and_leases_them(ctx, new_position, creditor):
    fresh_ones = [new_position(enqueue_sync=False) for _ in range(3)]
    failed = new_position(enqueue_sync=False)
    failed.sync_attempts = 1  # failed once: retried on its own, not in a bulk batch
    later = new_position(enqueue_sync=False)
    later.sync_next_at = utcnow() + timedelta(minutes=5)
    db.session.commit()

    now = utcnow()
    result = sync_state.sweep(db.session, now=now, batch_size=2)
    calls = scheduled()
    db.session.commit()

    ids = [p.id for p in fresh_ones]
    assert result.batches == [ids[:2], ids[2:]]
    assert result.singles == [failed.id]
    assert calls == [
        ("publish_batch", tuple(ids[:2]), f"publish-batch-{ids[0]}-{ids[1]}"),
        ("publish_batch", tuple(ids[2:]), f"publish-batch-{ids[2]}-{ids[2]}"),
        ("sync_position", (failed.id,), f"sync-position-{failed.id}"),
    ]
    for position_id in [*ids, failed.id]:
        assert fresh(position_id).sync_next_at == now + timedelta(seconds=sync_state.LEASE_SECONDS)
    # Leased: the next sweep hands nothing out again until the lease runs out.
    assert sync_state.sweep(db.session, now=now + timedelta(seconds=30)).count == 0
    db.session.rollback()
    assert sync_state.sweep(db.session, now=now + timedelta(seconds=sync_state.LEASE_SECONDS + 1)).count == 5
    db.session.rollback()


def test_sweep_skips_rows_another_worker_holds(app, ctx, new_position):
    held, free = new_position(enqueue_sync=False), new_position(enqueue_sync=False)
    other = db.engine.connect()
    try:
        other.begin()
        other.execute(sa.text("SELECT id FROM positions WHERE id = :id FOR UPDATE"), {"id": held.id})
        result = sync_state.sweep(db.session)
    finally:
        other.rollback()
        other.close()
    assert result.batches == [[free.id]]
    db.session.rollback()


def test_sweep_job_enqueues_after_its_commit(ctx, jobs, new_position):
    positions = [new_position(enqueue_sync=False) for _ in range(2)]
    jobs.clear()
    from portal.jobs.queue import enqueue_now

    enqueue_now("sync_sweep", job_id="periodic-sync_sweep")
    assert [p.task for p in jobs.pending] == ["sync_sweep"]
    jobs.run_pending(limit=1)
    assert [(p.task, p.ids) for p in jobs.pending] == [("publish_batch", tuple(p.id for p in positions))]


def test_publish_batch_publishes_150_positions_in_two_bulk_calls(ctx, gpd, new_position, sandbox):
    positions = [new_position(enqueue_sync=False) for _ in range(150)]
    result = sync_state.sweep(db.session)
    db.session.commit()

    outcomes = [sync.publish_batch(db.session, batch, gpd) for batch in result.batches]
    db.session.commit()

    assert [len(o.published) for o in outcomes] == [100, 50]
    assert sum(o.calls for o in outcomes) == 2
    state = sandbox_state(sandbox)
    assert state["positions"] == 150
    assert state["positions_by_status"] == {"VALID": 150}
    db.session.expire_all()
    statuses = db.session.execute(sa.select(Position.status, Position.sync_pending, sa.func.count())
                                  .group_by(Position.status, Position.sync_pending)).all()
    assert statuses == [(PositionStatus.PUBLISHED, False, 150)]
    assert {p.id for p in positions} == set(sum((o.published for o in outcomes), []))


def test_publish_batch_falls_back_one_by_one_when_gpd_refuses_the_bulk(ctx, gpd, new_position, sandbox):
    good = [new_position(enqueue_sync=False) for _ in range(2)]
    bad = past_due_position(new_position, enqueue_sync=False)
    already = new_position(enqueue_sync=False)
    gpd.create(CF_COMUNE, position_payload(already))

    outcome = sync.publish_batch(db.session, [p.id for p in [*good, bad, already]], gpd)
    db.session.commit()

    assert outcome.published == []
    assert {o.position_id: o.result for o in outcome.fallback} == {
        good[0].id: "synced", good[1].id: "synced", bad.id: "rejected", already.id: "synced"}
    assert outcome.rejected == [bad.id]
    assert sandbox_state(sandbox)["positions"] == 3
    assert "Dates congruence error" in fresh(bad.id).sync_error


def test_publish_batch_backs_off_everything_when_gpd_is_down(ctx, gpd, new_position, sandbox):
    positions = [new_position(enqueue_sync=False) for _ in range(3)]
    fault(sandbox, "POST /gpd/debt-positions-service/v2/", status=503, count=1)

    outcome = sync.publish_batch(db.session, [p.id for p in positions], gpd)
    db.session.commit()

    assert sorted(outcome.retry) == sorted(p.id for p in positions)
    assert all(fresh(p.id).sync_attempts == 1 for p in positions)
    assert sandbox_state(sandbox)["positions"] == 0


def test_publish_batch_marks_paid_options_of_demo_history(ctx, gpd, new_position):
    position = new_position(enqueue_sync=False)
    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test")
    option = position.single_option
    option.status, option.paid_at = OptionStatus.PAID, utcnow()
    position.paid_cents = option.amount_cents
    ledger.transition(db.session, position, PositionStatus.PAID, actor="pagopa")
    db.session.commit()

    outcome = sync.publish_batch(db.session, [position.id], gpd)
    db.session.commit()

    assert outcome.published == [position.id]
    assert gpd.get(CF_COMUNE, position.iupd).status == "PAID"
    assert fresh(position.id).status == PositionStatus.PAID


# --- What the officers see ---------------------------------------------------------------------------------------


def test_sync_summary_counts_pending_and_failing(ctx, new_position, creditor):
    ok, failing = new_position(enqueue_sync=False), new_position(enqueue_sync=False)
    failing.sync_error, failing.sync_error_at = "HTTP 400: dati non validi", utcnow()
    db.session.commit()

    summary = sync_state.sync_summary(db.session, creditor.id)
    assert (summary.pending, summary.failing) == (2, 1)
    assert [p.id for p in sync_state.failing_positions(db.session, creditor.id)] == [failing.id]
    assert ok.id not in [p.id for p in sync_state.failing_positions(db.session, creditor.id)]


# --- Demo ----------------------------------------------------------------------------------------------------------


def test_demo_load_marks_what_is_on_pagopa_without_calling_it(ctx):
    from portal import demo

    result = demo.load(db.session, positions=60)
    assert outbox.pending(db.session) == []  # no HTTP, no job during the load
    db.session.commit()

    rows = db.session.execute(
        sa.select(Position.status, Position.pagopa_target, Position.sync_pending, Position.published_at.is_not(None))
    ).all()
    assert len(rows) == result.position_count
    for status, target, pending, was_published in rows:
        if status in demo.ON_PAGOPA:
            assert (target, pending) == ("published", True), status
        elif status in (PositionStatus.CANCELLED, PositionStatus.IN_LITIGATION) and was_published:
            assert (target, pending) == ("invalid", True), status
        else:
            assert (target, pending) == ("absent", False), status
    assert db.session.scalar(sa.select(sa.func.count()).select_from(JobRecord)) == 0
