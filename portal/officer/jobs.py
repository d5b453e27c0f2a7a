"""Background activity (admins only): recent jobs with their state, progress and error, and positions pagoPA refused.

One URL, two renderings: the full page, or (HTMX) only the ``activity`` block, which re-requests itself every few
seconds while any listed job is queued or running, and stops polling once none is.
"""

import sqlalchemy as sa
from flask import current_app, render_template, request
from flask_login import current_user
from jinja2_fragments.flask import render_block

from portal.accounts.models import Role
from portal.extensions import db, htmx
from portal.jobs.models import JobRecord
from portal.jobs.registry import all_tasks
from portal.ledger.sync_state import failing_positions, sync_summary
from portal.officer import bp
from portal.officer.access import roles_required

TEMPLATE = "officer/jobs.html"
#: Rows shown.
LIMIT = 100
#: Filter values of the ``status`` query parameter.
STATUS_FILTERS = {
    "": None,
    "active": ("queued", "running"),
    "failed": ("failed",),
    "done": ("done",),
}
#: Italian labels and badge colours of job states.
JOB_STATUS = {
    "queued": ("In coda", "secondary"),
    "running": ("In corso", "primary"),
    "done": ("Completata", "success"),
    "failed": ("Non riuscita", "danger"),
    "cancelled": ("Annullata", "dark"),
}
@bp.route("/jobs")
@roles_required(Role.ADMIN)
def jobs():
    """Recent background jobs of the admin's Ente (and the system's own), newest first."""
    status_filter = request.args.get("status", "")
    if status_filter not in STATUS_FILTERS:
        status_filter = ""
    query = (
        sa.select(JobRecord)
        .where(sa.or_(JobRecord.creditor_id == current_user.creditor_id, JobRecord.creditor_id.is_(None)))
        .order_by(JobRecord.id.desc())
        .limit(LIMIT)
    )
    if STATUS_FILTERS[status_filter]:
        query = query.where(JobRecord.status.in_(STATUS_FILTERS[status_filter]))
    records = db.session.scalars(query).all()
    context = {
        "records": records,
        "status_filter": status_filter,
        "active": any(r.status in ("queued", "running") for r in records),
        "summary": sync_summary(db.session, current_user.creditor_id),
        "failing": failing_positions(db.session, current_user.creditor_id, limit=20),
        "job_status": JOB_STATUS,
        "tasks": {spec.name: spec for spec in all_tasks()},
        "poll_seconds": current_app.config.get("JOBS_PAGE_POLL_SECONDS") or 3,
    }
    if htmx and not htmx.history_restore_request:
        return render_block(TEMPLATE, "activity", **context)
    return render_template(TEMPLATE, **context)
