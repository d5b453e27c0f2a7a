"""How delivery runs share the work: a run lingers for what commits meanwhile (``WEBHOOKS_LINGER_SECONDS``), a
backlog gets a second lane in parallel that keeps each position's order (``WEBHOOKS_LANES``), and a commit that lands
just as a run ends is never left for the periodic run (the bell of :mod:`portal.jobs.lingering`).

On PostgreSQL and on SQLite (whose claim path is the ``OFFSET 0`` probe on the partial indexes of migration
7c1e5d9a4b20 without ``SKIP LOCKED``). No timing asserts: the runs' clocks and the receiver's calls are driven.
"""

import os
import threading
import time
from dataclasses import dataclass, replace

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal import outbox
from portal.extensions import db
from portal.jobs import lingering
from portal.jobs.lingering import LocalBell, RedisBell
from portal.jobs.queue import RQBackend
from portal.jobs.registry import get_spec
from portal.ledger import services as ledger
from portal.ledger.types import utcnow
from portal.webhooks import events, services
from portal.webhooks.delivery import DeliverySettings, claim_query, deliver_due, lane_job_id
from portal.webhooks.events import DELIVER_JOB_ID, DELIVER_TASK
from portal.webhooks.models import WebhookDelivery
from tests.conftest import position_input
from tests.test_sqlite import make_comune, sqlite_app
from tests.webhook_support import receiving

SECRET = "whsec_test_secret_0123456789"
FAST = DeliverySettings(timeout=10.0, allow_private=True, lease_seconds=30, base_delay=0.05, max_delay=0.2, threads=2)
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


@dataclass
class Store:
    """A migrated database with a Comune and a service, on PostgreSQL or SQLite."""

    app: object
    creditor: object
    service: object

    def position(self):
        position, _ = ledger.create_position(db.session, self.creditor, position_input(self.service), actor="test")
        db.session.commit()
        return position

    def subscribe(self, url: str):
        services.add_subscriber(db.session, self.creditor, url=url, secret=SECRET, allow_private=True)
        db.session.commit()

    def event(self, position, n: int, session=None) -> None:
        """One ``position.paid`` of ``position`` (body ``{"n": n}``) and its delivery, committed."""
        session = session or db.session
        events.record(session, self.creditor.id, "position.paid", {"n": n}, position_id=position.id,
                      service_id=position.service_id)
        session.commit()

    def backend(self):
        return self.app.extensions["paybox_jobs"]


def _comune():
    comune = make_comune()
    return comune, comune.services[0]


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request, tmp_path):
    if request.param == "postgresql":
        app = request.getfixturevalue("app")
        request.getfixturevalue("ctx")
        yield Store(app, *_comune())
    else:
        # The embedded default: jobs in this process, whatever REDIS_URL the environment has (CI sets one).
        with sqlite_app(tmp_path / "paybox.db", REDIS_URL=None) as app:
            yield Store(app, *_comune())


def statuses() -> list[str]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(WebhookDelivery.status).order_by(WebhookDelivery.id)))


class Clock:
    """A run's monotonic clock that moves only when the run sleeps."""

    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# --- WEBHOOKS_LINGER_SECONDS -----------------------------------------------------------------------------------------


def test_a_lingering_run_delivers_what_commits_while_it_lingers_then_stops(store):
    with receiving() as (receiver, url):
        store.subscribe(url)
        position = store.position()
        clock = Clock()
        sleep = clock.sleep

        def pause(seconds):  # the run's second idle pause: a payment commits from another session meanwhile
            sleep(seconds)
            if len(clock.sleeps) == 2:
                with Session(db.engine) as other:
                    store.event(position, 1, session=other)

        counts = deliver_due(db.session, replace(FAST, linger=1.0, poll_interval=0.25), clock=clock, sleep=pause)
    assert counts["delivered"] == 1
    assert [c["body"].count('"n":1') for c in receiver.calls] == [1]
    assert statuses() == ["delivered"]
    # Idle from the start: two pauses, the delivery, then a whole second of idle looks (four pauses), and it ends.
    assert clock.sleeps == [0.25] * 6


def test_without_linger_a_run_ends_at_its_first_empty_look(store):
    clock = Clock()
    with receiving() as (receiver, url):
        store.subscribe(url)
        store.event(store.position(), 1)
        counts = deliver_due(db.session, replace(FAST, linger=0.0), clock=clock, sleep=clock.sleep)
    assert counts["delivered"] == 1
    assert clock.sleeps == []  # no pause: the look after the delivery found nothing and the run ended


# --- WEBHOOKS_LANES --------------------------------------------------------------------------------------------------


def test_two_lanes_deliver_at_once_and_keep_each_positions_order(store, monkeypatch):
    """Lane 0 claims a full batch (1), so it asks for lane 1; its first call is held at the receiver until a second
    call arrives, which only lane 1 can make: parallel. No two calls of one position are ever in flight together,
    and each position's events arrive in the order they were committed."""
    for key, value in {"WEBHOOKS_BATCH": 1, "WEBHOOKS_LANES": 2, "WEBHOOKS_THREADS": 1, "WEBHOOKS_LINGER_SECONDS": 0,
                       "WEBHOOKS_ALLOW_PRIVATE": True, "WEBHOOKS_TIMEOUT_SECONDS": 20}.items():
        monkeypatch.setitem(store.app.config, key, value)
    lock = threading.Lock()
    in_flight: set[int] = set()
    seen: dict[int, list[int]] = {}
    overlapping: list[str] = []
    second_call = threading.Event()
    calls = [0]

    def hook(headers, body):
        import json

        data = json.loads(body)["data"]
        position, n = data["position_id"], data["n"]
        with lock:
            calls[0] += 1
            number = calls[0]
            if position in in_flight:
                overlapping.append(f"two calls of position {position} at once")
            in_flight.add(position)
            seen.setdefault(position, []).append(n)
        if number == 1:
            if not second_call.wait(15):  # a deadlock breaker, not a timing assert: lanes in series never get here
                overlapping.append("the first call was never joined by a second one: the lanes ran in series")
        elif number == 2:
            second_call.set()
        with lock:
            in_flight.discard(position)

    with receiving(hook=hook) as (receiver, url):
        store.subscribe(url)
        positions = [store.position() for _ in range(3)]
        store.backend().clear()  # the positions' sync jobs
        for position in positions:
            for n in (1, 2):
                events.record(db.session, store.creditor.id, "position.paid",
                              {"position_id": position.id, "n": n}, position_id=position.id,
                              service_id=position.service_id)
                db.session.commit()
        backend = store.backend()
        assert [r.job_id for r in backend.pending] == [DELIVER_JOB_ID]
        lane0 = threading.Thread(target=backend.run_pending, kwargs={"limit": 1})
        lane0.start()
        deadline = time.monotonic() + 30
        while lane_job_id(1) not in [r.job_id for r in backend.pending] and time.monotonic() < deadline:
            time.sleep(0.01)
        [lane1_request] = [r for r in backend.pending if r.job_id == lane_job_id(1)]
        assert lane1_request.ids == (1,)
        backend.pending.remove(lane1_request)
        backend.pending.insert(0, lane1_request)
        lane1 = threading.Thread(target=backend.run_pending, kwargs={"limit": 1})
        lane1.start()
        lane0.join(60)
        lane1.join(60)
    assert overlapping == []
    assert statuses() == ["delivered"] * 6
    assert {p: ns for p, ns in seen.items()} == {p.id: [1, 2] for p in positions}
    assert len(receiver.calls) == 6


def test_a_single_lane_never_asks_for_a_second_one(store):
    with receiving() as (_, url):
        store.subscribe(url)
        for n in range(3):
            store.event(store.position(), n)
        store.backend().clear()
        deliver_due(db.session, replace(FAST, batch=1, lanes=1))
        db.session.commit()
    assert lane_job_id(1) not in [r.job_id for r in store.backend().pending]
    assert statuses() == ["delivered"] * 3


def test_the_claim_reads_the_partial_indexes_on_sqlite(tmp_path):
    with sqlite_app(tmp_path / "plan.db"):
        compiled = claim_query(FAST.batch).compile(db.engine, column_keys=[])
        values = tuple(str(utcnow()) if n == "now" else compiled.params[n] for n in compiled.positiontup)
        with db.engine.connect() as conn:
            plan = " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), values))
    assert "ix_webhook_deliveries_due" in plan, plan
    assert "ix_webhook_deliveries_order" in plan, plan
    assert "SCAN webhook_deliveries " not in plan + " ", plan


# --- The end of a lingering run --------------------------------------------------------------------------------------


def bells(redis):
    spec = get_spec(DELIVER_TASK)
    return [LocalBell("webhooks-deliver"),
            RedisBell(redis, "webhooks-deliver", queued_seconds=spec.ttl)]


@pytest.fixture
def redis():
    from redis import Redis

    connection = Redis.from_url(REDIS_TEST_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


@pytest.mark.parametrize("kind", ["local", "redis"])
def test_a_bell_enqueues_once_answers_a_ring_before_leaving_and_enqueues_again_once_left(redis, kind):
    bell = bells(redis)[kind == "redis"]
    first = bell.ring()
    assert first == "webhooks-deliver.1"
    assert bell.ring() is None  # queued, not inside yet: it will look after entering
    token = bell.enter()
    assert bell.ring() is None  # inside: rung
    assert bell.leave(token) is False  # the ring is answered by one more look
    assert bell.leave(token) is True  # nothing rang since: gone
    assert bell.ring() == "webhooks-deliver.2"  # nobody inside or queued: a new run, under a new id
    token = bell.enter()
    bell.ring()
    assert bell.leave(token, final=True) is True  # a run at its time limit leaves whatever rang


@pytest.fixture
def rq_backend(app, ctx, monkeypatch, redis):
    backend = RQBackend(REDIS_TEST_URL, app=app)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    monkeypatch.setitem(app.config, "WEBHOOKS_LINGER_SECONDS", 0)
    monkeypatch.setitem(app.config, "WEBHOOKS_ALLOW_PRIVATE", True)
    yield backend
    backend.close()


def run_lingering_job(backend, job_id: str) -> None:
    """What the RQ worker does with the job enqueued under ``job_id``: run it (here, in this process)."""
    job = backend.queue("default").fetch_job(job_id)
    backend.queue("default").remove(job)
    job.perform()


def test_a_commit_just_before_a_lingering_run_leaves_is_delivered_by_that_run(app, rq_backend, creditor, service,
                                                                             monkeypatch):
    store = Store(app, creditor, service)
    with receiving() as (receiver, url):
        store.subscribe(url)
        position = store.position()
        store.event(position, 1)  # enqueues run 1
        queue = rq_backend.queue("default")
        assert queue.job_ids == ["webhooks-deliver.1"]
        may_stop = lingering.Presence.may_stop
        late = []

        def commit_then_may_stop(presence):
            # The run's last look found nothing; before it can leave, a payment commits (another web process).
            if not late:
                late.append(1)
                with Session(db.engine) as other:
                    store.event(position, 2, session=other)
                assert queue.job_ids == []  # the run is inside: rung, nothing enqueued
            return may_stop(presence)

        monkeypatch.setattr(lingering.Presence, "may_stop", commit_then_may_stop)
        run_lingering_job(rq_backend, "webhooks-deliver.1")
    assert late == [1]
    assert statuses() == ["delivered", "delivered"]  # the second by the same run: it looked once more
    assert len(receiver.calls) == 2
    assert queue.job_ids == []


def test_a_commit_just_after_a_lingering_run_left_gets_a_new_run_though_the_old_one_still_looks_started(
        app, rq_backend, creditor, service, monkeypatch):
    from rq.job import Job, JobStatus

    store = Store(app, creditor, service)
    with receiving() as (receiver, url):
        store.subscribe(url)
        position = store.position()
        store.event(position, 1)
        queue = rq_backend.queue("default")
        may_stop = lingering.Presence.may_stop
        late = []

        def may_stop_then_commit(presence):
            stopped = may_stop(presence)
            if stopped and not late:
                late.append(1)
                # The run has left but its RQ job still says "started", as it does until the horse reports back
                # (the job under the deterministic id, which a dedup on "started" used to trust).
                started = Job.create("portal.jobs.tasks.deliver_webhooks", id=DELIVER_JOB_ID,
                                     connection=rq_backend.redis)
                started.save()
                started.set_status(JobStatus.STARTED)
                with Session(db.engine) as other:
                    store.event(position, 2, session=other)
            return stopped

        monkeypatch.setattr(lingering.Presence, "may_stop", may_stop_then_commit)
        run_lingering_job(rq_backend, "webhooks-deliver.1")
        assert statuses() == ["delivered", "pending"]
        assert queue.job_ids == ["webhooks-deliver.2"]  # a new run at once, not the periodic one a minute later
        job = queue.fetch_job("webhooks-deliver.2")
        assert job.kwargs["_bell"] == DELIVER_JOB_ID
        run_lingering_job(rq_backend, "webhooks-deliver.2")
    assert statuses() == ["delivered", "delivered"]
    assert len(receiver.calls) == 2


def test_a_run_stopped_by_its_time_limit_with_work_left_asks_for_a_successor(ctx, creditor, service):
    store = Store(None, creditor, service)
    with receiving() as (_, url):
        store.subscribe(url)
        store.event(store.position(), 1)
        clock = Clock()

        def busy_clock():
            clock.now += 10.0  # every look costs ten seconds of the run's time
            return clock.now

        deliver_due(db.session, FAST, max_seconds=15.0, clock=busy_clock, sleep=clock.sleep)
    assert [r.job_id for r in outbox.pending(db.session)] == [DELIVER_JOB_ID]
    db.session.rollback()
    clock = Clock()
    deliver_due(db.session, FAST, max_seconds=15.0, clock=clock, sleep=clock.sleep)  # nothing found: no successor
    assert outbox.pending(db.session) == []


def test_a_run_killed_inside_stops_counting_when_its_entry_expires_and_a_live_one_renews_it(redis):
    now = [1000.0]
    bell = RedisBell(redis, "webhooks-deliver", queued_seconds=600, clock=lambda: now[0])
    bell.ring()
    dead = bell.enter()  # then killed: it never leaves
    now[0] += lingering.PRESENCE_SECONDS - 1
    assert bell.ring() is None  # still counts as inside
    now[0] += 2
    assert bell.ring() == "webhooks-deliver.2"  # expired: the commit gets a new run at once
    live = lingering.Presence(bell, clock=lambda: now[0])
    assert live.token != dead
    now[0] += lingering.PRESENCE_SECONDS / 3
    live.stay()  # renewed while it looks
    now[0] += lingering.PRESENCE_SECONDS - 1
    assert bell.ring() is None  # inside, thanks to the renewal
    assert live.may_stop() is False  # that ring is answered by one more look
    assert live.may_stop() is True
