"""The outbox: requests live with the transaction (a rollback drops them, a commit turns them into job rows and
queued jobs); progress reports reach the running job only; jobs run in the app the worker command hands over."""

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal import outbox
from portal.extensions import db
from portal.jobs import queue
from portal.jobs.models import JobRecord


def test_requests_wait_in_the_session_and_keep_the_first_of_one_job_id():
    session = Session()
    first = outbox.schedule(session, "sync_position", 1, job_id="sync-position-1")
    again = outbox.schedule(session, "sync_position", 1, job_id="sync-position-1", created_by_id=7)
    outbox.schedule(session, "send_notice_email", 3)
    assert again is first
    assert first.created_by_id is None
    assert [(r.task, r.ids) for r in outbox.pending(session)] == [("sync_position", (1,)), ("send_notice_email", (3,))]
    assert outbox.discard(session, task="send_notice_email") == 1
    assert [r.task for r in outbox.take(session)] == ["sync_position"]
    assert outbox.pending(session) == []


def test_progress_goes_to_the_reporter_of_the_block_only():
    heard = []
    outbox.report_progress(1, 2)  # outside a job: nobody listens, nothing breaks
    with outbox.reporting_to(lambda done, total: heard.append((done, total))):
        outbox.report_progress(3, 10)
    outbox.report_progress(4, 10)
    assert heard == [(3, 10)]


def test_a_commit_writes_the_job_row_and_releases_the_job(app, ctx, monkeypatch):
    backend = queue.ManualBackend(app)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    request = outbox.schedule(db.session, "sync_sweep", job_id="periodic-sync_sweep", total=5)
    db.session.commit()
    record = db.session.get(JobRecord, request.record_id)
    assert (record.kind, record.queue, record.status, record.total) == ("sync_sweep", "sync", "queued", 5)
    assert [r.task for r in backend.pending] == ["sync_sweep"]


def test_a_rollback_drops_the_requests(app, ctx, monkeypatch):
    backend = queue.ManualBackend(app)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    outbox.schedule(db.session, "sync_sweep")
    db.session.rollback()
    db.session.commit()
    assert backend.pending == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(JobRecord)) == 0


def test_an_unknown_task_fails_the_commit_and_writes_nothing(app, ctx, monkeypatch):
    import pytest

    monkeypatch.setitem(app.extensions, "paybox_jobs", queue.ManualBackend(app))
    outbox.schedule(db.session, "no_such_task", 1)
    with pytest.raises(KeyError):
        db.session.commit()
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(JobRecord)) == 0


def test_jobs_outside_an_app_need_the_worker_command(app, monkeypatch):
    import pytest

    monkeypatch.setattr(queue, "_worker_app", None)
    with pytest.raises(RuntimeError, match="flask --app wsgi rq worker"):
        queue._app()
    queue.use_worker_app(app)
    assert queue._app() is app
