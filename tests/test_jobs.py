"""Jobs: enqueued only after the commit, visible as JobRecord rows, run in-process or by a real ``flask rq worker``.

The worker tests start ``.venv/bin/flask --app wsgi rq worker sync`` as a subprocess against this run's database,
Redis database 14 (flushed) and the pagoPA sandbox served in a thread, then break things: the sandbox answers
503 for a while, a worker is SIGKILLed in the middle of a job.
"""

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from portal import outbox
from portal.extensions import db
from portal.jobs import periodic
from portal.jobs.models import JobRecord
from portal.jobs.queue import ManualBackend, RQBackend, ThreadBackend, enqueue_after_commit, enqueue_now
from portal.jobs.registry import get_spec, task
from portal.ledger import services as ledger
from portal.ledger import sync_state
from portal.ledger.models import Event, Position
from portal.ledger.status import PositionStatus
from portal.ledger.types import utcnow
from tests.conftest import CF_COMUNE, position_input
from tests.test_sync import API_KEY, fault, gpd_url, sandbox, sandbox_server, sandbox_state  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


@task("default", label="Prova che fallisce", kind="test", retry_max=0)
def fail_on_purpose(session, number):
    """A job that always fails (tests only)."""
    raise RuntimeError(f"rotto {number}")


@task("default", label="Conteggio delle posizioni", kind="test", retry_max=2, retry_intervals=(0,))
def count_positions(session):
    """A job that reads the database (tests only)."""
    return f"{session.scalar(sa.select(sa.func.count()).select_from(Position))} posizioni"


_FLAKY_CALLS: dict[str, int] = {}


@task("default", label="Prova che riesce al secondo tentativo", kind="test", retry_max=1,
      retry_intervals=(0,))
def flaky_once(session, key):
    """A job that fails the first time it runs for ``key`` (tests only)."""
    _FLAKY_CALLS[key] = _FLAKY_CALLS.get(key, 0) + 1
    if _FLAKY_CALLS[key] == 1:
        raise ConnectionError("passeggero")
    return f"riuscito al tentativo {_FLAKY_CALLS[key]}"


@pytest.fixture
def manual(app, monkeypatch):
    """The test app's manual backend, empty."""
    backend = ManualBackend(app)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    return backend


def records() -> list[JobRecord]:
    """Every JobRecord, oldest first, as committed."""
    db.session.expire_all()
    return list(db.session.scalars(sa.select(JobRecord).order_by(JobRecord.id)))


# --- Enqueue after commit ------------------------------------------------------------------------------------------


def test_rolled_back_transaction_enqueues_nothing(ctx, manual, make_position):
    position = make_position()
    manual.clear()
    enqueue_after_commit("sync_position", position.id, job_id=f"sync-position-{position.id}")
    assert len(outbox.pending(db.session)) == 1

    db.session.rollback()

    assert outbox.pending(db.session) == []
    db.session.commit()  # a later commit does not resurrect it
    assert manual.pending == []
    assert [r.kind for r in records()] == ["sync_position"]  # only the one create_position's commit released


def test_job_reaches_the_backend_only_when_the_transaction_commits(ctx, manual, make_position):
    position = make_position()
    manual.clear()
    enqueue_after_commit("sync_position", position.id, job_id="sync-x")
    savepoint = db.session.begin_nested()
    savepoint.commit()  # a savepoint is not the commit
    assert manual.pending == []

    db.session.commit()

    assert [(p.task, p.ids, p.job_id) for p in manual.pending] == [("sync_position", (position.id,), "sync-x")]
    assert manual.pending[0].record_id == records()[-1].id


def test_same_job_id_is_asked_once_per_transaction_and_reuses_a_live_record(ctx, manual, make_position):
    position = make_position()
    manual.clear()
    for _ in range(3):
        enqueue_after_commit("sync_position", position.id, job_id=f"sync-position-{position.id}")
    assert len(outbox.pending(db.session)) == 1
    db.session.commit()
    # The record of create_position's request is still "queued": the double click shares it.
    assert [(r.rq_id, r.status) for r in records()] == [(f"sync-position-{position.id}", "queued")]
    assert [p.record_id for p in manual.pending] == [records()[0].id]


def test_discard_pending_drops_the_requests_of_this_transaction(ctx, manual, creditor, service):
    ledger.create_position(db.session, creditor, position_input(service), actor="test")
    assert outbox.discard(db.session, task="sync_position") == 1
    db.session.commit()
    assert manual.pending == []
    assert records() == []


def test_unknown_task_is_refused(ctx):
    with pytest.raises(KeyError):
        enqueue_after_commit("no_such_task", 1)


# --- Running: the wrapper and the in-process backends --------------------------------------------------------------


def test_job_record_goes_queued_running_done_with_its_summary(ctx, manual, make_position):
    make_position()
    manual.clear()
    enqueue_now("count_positions")
    assert records()[-1].status == "queued"

    manual.run_pending()

    record = records()[-1]
    assert (record.kind, record.queue, record.status, record.attempts, record.message) == (
        "count_positions", "default", "done", 1, "1 posizioni")
    assert record.started_at <= record.finished_at


def test_failed_job_rolls_back_records_the_error_and_raises(ctx, manual):
    enqueue_now("fail_on_purpose", 7)

    with pytest.raises(RuntimeError, match="rotto 7"):
        manual.run_pending()

    record = records()[-1]
    assert (record.status, record.attempts) == ("failed", 1)
    assert record.message == "RuntimeError: rotto 7"
    assert record.finished_at is not None


def test_in_process_thread_backend_publishes_a_new_position(app, ctx, creditor, service, sandbox, monkeypatch):
    monkeypatch.setitem(app.config, "PAGOPA_GPD_URL", gpd_url(sandbox))
    monkeypatch.setitem(app.config, "PAGOPA_API_KEY", API_KEY)
    backend = ThreadBackend(app, workers=2)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    try:
        position, _ = ledger.create_position(db.session, creditor, position_input(service), actor="test")
        db.session.commit()
        position_id = position.id
        wait_for(lambda: position_status(position_id) == PositionStatus.PUBLISHED, 10)
    finally:
        backend.close()
    assert sandbox_state(sandbox)["positions"] == 1
    assert records()[-1].status == "done"


def test_thread_backend_retries_a_failing_job(app, ctx, monkeypatch):
    backend = ThreadBackend(app, workers=1)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    try:
        enqueue_now("flaky_once", "thread")
        wait_for(lambda: records()[-1].status == "done", 5)
        enqueue_now("fail_on_purpose", 1)
        wait_for(lambda: records()[-1].status == "failed", 5)
    finally:
        backend.close()
    flaky, failed = records()
    assert (flaky.attempts, flaky.message) == (2, "riuscito al tentativo 2")
    assert failed.attempts == 1  # no retries declared


# --- RQ: deterministic ids, and real workers -----------------------------------------------------------------------


@pytest.fixture
def redis_backend(app, monkeypatch):
    """The test app enqueues on RQ in Redis database 14 (flushed before and after)."""
    backend = RQBackend(REDIS_TEST_URL, app=app)
    backend.redis.flushdb()
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    yield backend
    backend.redis.flushdb()
    backend.close()


def test_deterministic_job_id_is_enqueued_once_while_queued(ctx, redis_backend, make_position):
    position = make_position()  # create_position asks for sync-position-<id>
    sync_state.request_sync(db.session, position, content_changed=True)  # a double click
    db.session.commit()
    sync_state.sweep(db.session, now=utcnow() + timedelta(seconds=1))  # the sweep too
    db.session.commit()

    queue = redis_backend.queue("sync")
    assert queue.job_ids == [f"sync-position-{position.id}"]
    job = queue.fetch_job(f"sync-position-{position.id}")
    assert job.func_name == "portal.jobs.tasks.sync_position"
    assert job.args == (position.id,)
    assert (job.timeout, job.ttl, job.failure_ttl) == (120, 6 * 3600, 7 * 24 * 3600)
    assert job.retries_left == 3
    assert job.kwargs["_record_id"] == records()[0].id
    assert len(records()) == 1


def test_a_finished_job_id_can_run_again(ctx, redis_backend):
    from rq.job import JobStatus

    enqueue_now("count_positions", job_id="count")
    queue = redis_backend.queue("default")
    job = queue.fetch_job("count")
    job.set_status(JobStatus.FINISHED)  # as a worker leaves it
    queue.remove(job)
    records()[0].status = "done"
    db.session.commit()

    enqueue_now("count_positions", job_id="count")

    assert queue.job_ids == ["count"]
    assert len(records()) == 2


def test_redis_down_marks_the_record_failed_and_keeps_the_data(app, ctx, make_position, monkeypatch):
    backend = RQBackend("redis://127.0.0.1:1/0", app=app)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    position = make_position()  # the commit succeeds even though Redis cannot be reached
    assert db.session.get(Position, position.id) is not None
    (record,) = records()
    assert record.status == "failed"
    assert "Redis" in record.message


class Worker:
    """A real ``flask rq worker`` subprocess (its own process group; the job runs in a forked child)."""

    def __init__(self, app, sandbox_url: str, log_path: Path, queues=("sync",)):
        env = dict(os.environ)
        env.update({
            "PAYBOX_ENV": "development",
            "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "REDIS_URL": REDIS_TEST_URL,
            "PAGOPA_GPD_URL": gpd_url(sandbox_url),
            "PAGOPA_API_KEY": API_KEY,
            "PAGOPA_TIMEOUT_SECONDS": "10",
            "SECRET_KEY": "worker-test",
        })
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(  # noqa: S603 - our own venv's flask, fixed arguments
            [str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi", "rq", "worker", *queues,
             "--name", f"test-{uuid.uuid4().hex[:8]}", "--without-scheduler"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def children(self) -> list[int]:
        """Pids of the worker's children (the work horse while a job runs)."""
        try:
            text = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def kill(self) -> None:
        """SIGKILL the worker and its horse at once, like a machine that dies."""
        for pid in self.children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.log.close()

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), or kill after a few seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self.log.close()

    def output(self) -> str:
        """What the worker printed (for failure messages)."""
        return self.log_path.read_text(errors="replace")[-6000:]


@pytest.fixture
def workers(app, sandbox, tmp_path):
    """Start workers with ``workers.start()``; all are stopped at the end."""
    started: list[Worker] = []

    class Starter:
        def start(self) -> Worker:
            worker = Worker(app, sandbox, tmp_path / f"worker-{len(started)}.log")
            started.append(worker)
            return worker

        def logs(self) -> str:
            return "\n".join(w.output() for w in started)

    starter = Starter()
    yield starter
    for worker in started:
        if worker.process.poll() is None:
            worker.stop()
        elif not worker.log.closed:
            worker.log.close()


def wait_for(condition, timeout: float, message: str = "", interval: float = 0.1):
    """Poll ``condition`` until it is true, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        if condition():
            return
        time.sleep(interval)
    db.session.rollback()
    assert condition(), message or "timed out"


def position_status(position_id: int):
    """The committed status of a position."""
    db.session.expire_all()
    return db.session.scalar(sa.select(Position.status).where(Position.id == position_id))


def positions_where(*conditions) -> int:
    """How many positions match."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(Position).where(*conditions))


@pytest.mark.slow
def test_worker_keeps_positions_pending_while_pagopa_is_down_then_publishes_each_once(
        ctx, redis_backend, sandbox, workers, creditor, service):
    fault(sandbox, "POST /gpd/", status=503, count=10_000)
    ids = []
    for n in range(5):
        position, _ = ledger.create_position(db.session, creditor, position_input(service, external_id=f"p{n}"),
                                             actor="test")
        ids.append(position.id)
    db.session.commit()
    worker = workers.start()

    wait_for(lambda: [r.status for r in records()] == ["done"] * 5, 20, workers.logs())
    assert positions_where(Position.sync_error.like("HTTP 503%")) == 5
    assert positions_where(Position.status == PositionStatus.DRAFT, Position.sync_pending.is_(True),
                           Position.sync_attempts == 1) == 5
    # The jobs succeeded: pagoPA's unavailability is recorded on the positions (backoff), not raised.
    assert sandbox_state(sandbox)["positions"] == 0
    # A sweep while pagoPA is still down: nothing is due yet (backoff), nothing doubles.
    assert sync_state.sweep(db.session).count == 0
    db.session.commit()

    requests.delete(f"{sandbox}/sandbox/faults", timeout=5).raise_for_status()
    swept = sync_state.sweep(db.session, now=utcnow() + timedelta(seconds=sync_state.BACKOFF_BASE_SECONDS + 1))
    db.session.commit()
    assert sorted(swept.singles) == sorted(ids)

    wait_for(lambda: positions_where(Position.status == PositionStatus.PUBLISHED) == 5, 20, workers.logs())
    assert positions_where(Position.sync_pending.is_(True)) == 0
    assert positions_where(Position.sync_error.is_not(None)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.kind == "sync_failed")) == 0
    state = sandbox_state(sandbox)
    assert (state["positions"], state["positions_by_status"]) == (5, {"VALID": 5})
    worker.stop()


@pytest.mark.slow
def test_work_of_a_worker_killed_mid_job_completes_after_a_new_worker_and_a_sweep(
        ctx, redis_backend, sandbox, workers, creditor, service):
    # The create reaches the sandbox but its answer takes 3 s: the worker dies while waiting for it.
    fault(sandbox, "POST /gpd/", delay_seconds=3, count=1)
    position, _ = ledger.create_position(db.session, creditor, position_input(service), actor="test")
    db.session.commit()
    position_id = position.id
    first = workers.start()
    wait_for(lambda: records()[0].status == "running", 15, workers.logs())
    time.sleep(0.5)  # the request is on its way

    first.kill()

    assert position_status(position_id) == PositionStatus.DRAFT  # its transaction died with it
    # The sandbox still finishes the delayed create: pagoPA has it, we do not know.
    wait_for(lambda: sandbox_state(sandbox)["positions"] == 1, 10)
    workers.start()
    # Its own job had a minute's lease: within it, the sweep leaves the position to that job.
    assert sync_state.sweep(db.session).count == 0
    db.session.rollback()
    # Then the sweep takes it over (a first publication: in a bulk call).
    swept = sync_state.sweep(db.session, now=utcnow() + timedelta(seconds=sync_state.OWN_JOB_LEASE_SECONDS + 1))
    db.session.commit()
    assert swept.batches == [[position_id]]

    # create → 409 → GET finds it → published, no error.
    wait_for(lambda: position_status(position_id) == PositionStatus.PUBLISHED, 20, workers.logs())
    position = db.session.get(Position, position_id)
    assert (position.sync_pending, position.sync_error) == (False, None)
    assert sandbox_state(sandbox)["positions"] == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event)
                             .where(Event.position_id == position_id, Event.kind == "published")) == 1


# --- Periodic jobs ---------------------------------------------------------------------------------------------------


def test_periodic_list_is_declared_once_with_known_tasks():
    tasks = [job.task for job in periodic.PERIODIC_JOBS]
    assert tasks[:2] == ["sync_sweep", "poll_receipts"]
    assert len(set(tasks)) == len(tasks)
    for job in periodic.PERIODIC_JOBS:
        assert get_spec(job.task)
    sweep = periodic.PERIODIC_JOBS[0]
    assert (sweep.every, sweep.job_id) == (30, "periodic-sync_sweep")


def test_due_jobs_follow_their_period():
    jobs = (periodic.PeriodicJob("a", 30, ""), periodic.PeriodicJob("b", 300, ""))
    assert [j.task for j in periodic.due({}, 1000.0, jobs)] == ["a", "b"]
    assert [j.task for j in periodic.due({"a": 990.0, "b": 990.0}, 1000.0, jobs)] == []
    assert [j.task for j in periodic.due({"a": 970.0, "b": 990.0}, 1000.0, jobs)] == ["a"]


def test_only_the_scheduler_holding_the_redis_lock_enqueues(ctx, redis_backend):
    one = periodic.RedisScheduler(redis_backend.redis, lock_seconds=5)
    two = periodic.RedisScheduler(redis_backend.redis, lock_seconds=5)

    assert one.tick(now=1000.0) == [job.task for job in periodic.PERIODIC_JOBS]
    assert two.tick(now=1000.0) == []
    assert one.tick(now=1010.0) == []  # nothing due yet
    assert one.tick(now=1031.0) == ["sync_sweep"]
    one.release()
    # Fail-over keeps the cadence stored in Redis: the sweep again, and what a minute made due.
    assert two.tick(now=1062.0) == [j.task for j in periodic.PERIODIC_JOBS if j.task == "sync_sweep" or j.every <= 62]

    assert redis_backend.queue("sync").job_ids == ["periodic-sync_sweep"]  # still queued: not doubled
    # A lingering task's run goes under its bell's run id (portal.jobs.lingering): still once.
    assert sorted(redis_backend.queue("default").job_ids) == sorted(
        f"{job.job_id}.1" if get_spec(job.task).lingers else job.job_id
        for job in periodic.PERIODIC_JOBS if job.task != "sync_sweep")


def test_in_process_scheduler_runs_the_same_list(app, ctx, manual):
    scheduler = periodic.InProcessScheduler(app)
    assert scheduler.tick(now=1000.0) == [job.task for job in periodic.PERIODIC_JOBS]
    assert scheduler.tick(now=1001.0) == []
    ran = manual.run_pending(raise_errors=True)
    assert ran == len(periodic.PERIODIC_JOBS)
    messages = {r.kind: (r.status, r.message) for r in records()}
    assert messages["sync_sweep"] == ("done", "0 posizioni da sincronizzare: 0 blocchi di pubblicazione, 0 singole")
    assert messages["poll_receipts"][0] == "done"
    assert messages["purge_job_records"] == ("done", "0 righe eliminate")


def test_purge_removes_old_finished_rows_only(ctx):
    now = utcnow()
    old, recent = now - timedelta(days=10), now - timedelta(hours=2)
    db.session.add_all([
        JobRecord(kind="sync_position", queue="sync", status="done", finished_at=old),
        JobRecord(kind="sync_position", queue="sync", status="failed", finished_at=old),
        JobRecord(kind="sync_sweep", queue="sync", status="done", finished_at=now - timedelta(days=2)),
        JobRecord(kind="sync_position", queue="sync", status="done", finished_at=recent),
        JobRecord(kind="sync_position", queue="sync", status="queued"),
    ])
    db.session.commit()
    from portal.jobs.queue import purge_records

    assert purge_records(db.session, periodic_kinds=["sync_sweep"]) == 2
    db.session.commit()
    assert sorted(r.status for r in records()) == ["done", "failed", "queued"]


# --- CLI ---------------------------------------------------------------------------------------------------------


def test_flask_sync_sweep_inline_publishes_now(app, ctx, manual, creditor, service, sandbox, monkeypatch):
    monkeypatch.setitem(app.config, "PAGOPA_GPD_URL", gpd_url(sandbox))
    monkeypatch.setitem(app.config, "PAGOPA_API_KEY", API_KEY)
    position, _ = ledger.create_position(db.session, creditor, position_input(service), actor="test",
                                         enqueue_sync=False)
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["sync", "sweep", "--inline"])
    assert result.exit_code == 0, result.output
    # The position of a bulk feeder (no job of its own) is published at once, in a bulk call.
    assert "Blocco di 1: 1 pubblicate in blocco" in result.output
    assert position_status(position.id) == PositionStatus.PUBLISHED
    status = app.test_cli_runner().invoke(args=["sync", "status"])
    assert "In attesa di pagoPA: 0" in status.output


def test_flask_rq_commands_need_redis(app, manual):
    result = app.test_cli_runner().invoke(args=["rq", "worker"])
    assert result.exit_code != 0
    assert "REDIS_URL" in result.output


def test_flask_rq_worker_refuses_an_unknown_queue(app, redis_backend):
    result = app.test_cli_runner().invoke(args=["rq", "worker", "nope", "--burst"])
    assert result.exit_code != 0
    assert "code sconosciute: nope" in result.output


# --- The admin page ------------------------------------------------------------------------------------------------


def test_admin_sees_jobs_and_the_list_polls_while_one_is_active(ctx, client, login, make_user, manual, make_position):
    position = make_position()
    position.sync_error, position.sync_error_at = "HTTP 400: dati non validi", utcnow()
    db.session.commit()
    login(make_user("capo", role="admin"))

    page = client.get("/officer/jobs")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Sincronizzazione di una posizione con pagoPA" in html
    assert f"sync-position-{position.id}" in html
    assert "In coda" in html
    assert 'hx-trigger="every 3s"' in html
    assert "HTTP 400: dati non validi" in html

    fragment = client.get("/officer/jobs", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="jobs-activity"')
    assert "<html" not in fragment

    manual.run_pending(raise_errors=False)  # the sync fails (no sandbox here) but is recorded as done/retry
    fragment = client.get("/officer/jobs", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "hx-trigger" not in fragment  # nothing active: the component stops polling
    assert client.get("/officer/jobs?status=failed").status_code == 200


def test_jobs_page_is_for_admins_only(ctx, client, login, make_user):
    login(make_user("operatore", role="operator"))
    assert client.get("/officer/jobs").status_code == 403


def test_jobs_of_another_creditor_are_not_listed(ctx, client, login, make_user):
    from stdnum import luhn

    from portal.settings.services import create_creditor

    other = create_creditor(db.session, fiscal_code="1234567890" + luhn.calc_check_digit("1234567890"),
                            name="Altro", segregation_code="02")
    db.session.add(JobRecord(kind="sync_position", queue="sync", status="failed", rq_id="sync-position-999",
                             creditor_id=other.id, message="segreto"))
    db.session.commit()
    login(make_user("capo", role="admin"))
    assert "segreto" not in client.get("/officer/jobs").get_data(as_text=True)


def test_periodic_runs_that_found_nothing_are_hidden_until_asked_for(ctx, client, login, make_user, manual):
    enqueue_now("sync_sweep", job_id="periodic-sync_sweep")
    manual.run_pending()  # nothing due: an idle run
    enqueue_now("count_positions")
    manual.run_pending()
    idle = db.session.scalars(sa.select(JobRecord).where(JobRecord.kind == "sync_sweep")).one()
    assert (idle.status, idle.idle) == ("done", True)
    login(make_user("capo", role="admin"))

    html = client.get("/officer/jobs").get_data(as_text=True)
    assert 'data-job-kind="sync_sweep"' not in html
    assert 'data-job-kind="count_positions"' in html
    assert "1 controllo periodico senza esito non mostrato." in html
    shown = client.get("/officer/jobs?idle=1").get_data(as_text=True)
    assert 'data-job-kind="sync_sweep"' in shown


def test_jobs_filter_by_kind_and_page_with_the_filters_kept(ctx, client, login, make_user):
    for n in range(55):
        db.session.add(JobRecord(kind="sync_position", queue="sync", status="done", rq_id=f"sync-position-{n}"))
    db.session.add(JobRecord(kind="billrun_chunk", queue="notices", status="failed", rq_id="billrun-1-chunk-1"))
    db.session.commit()
    login(make_user("capo", role="admin"))

    notices = client.get("/officer/jobs?kind=notices").get_data(as_text=True)
    assert notices.count("<tr data-job-id=") == 1
    first = client.get("/officer/jobs?kind=pagopa&status=done").get_data(as_text=True)
    assert first.count("<tr data-job-id=") == 50
    older = re.search(r'href="([^"]+)" data-testid="jobs-older"', first).group(1).replace("&amp;", "&")
    assert "kind=pagopa" in older
    assert "status=done" in older
    second = client.get(older).get_data(as_text=True)
    assert second.count("<tr data-job-id=") == 5
    assert 'data-testid="jobs-older"' not in second
    # Nonsense in the query string falls back to the defaults, never an error.
    assert client.get(f"/officer/jobs?before={2**70}&kind=x&status=y").status_code == 200


__all__ = ["CF_COMUNE", "sandbox", "sandbox_server"]
