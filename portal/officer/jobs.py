"""Background activity (admins only): recent jobs with their state, progress and error, and positions pagoPA refused.

One URL, two renderings: the full page, or (HTMX) only the ``activity`` block, which re-requests itself every few
seconds while any listed job is queued or running, and stops polling once none is.
"""

from flask import current_app, render_template, request
from flask_login import current_user
from jinja2_fragments.flask import render_block

from portal.accounts.models import Role
from portal.extensions import db, htmx
from portal.jobs.records import RecordFilter, list_records
from portal.jobs.registry import KINDS, all_tasks
from portal.ledger.sync_state import failing_positions, sync_summary
from portal.officer import bp
from portal.officer.access import roles_required

TEMPLATE = "officer/jobs.html"
#: Rows a page shows.
LIMIT = 50
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
    flt = RecordFilter.from_args(request.args)
    page = list_records(db.session, current_user.creditor_id, flt, limit=LIMIT)
    records = page.records
    context = {
        "records": records,
        "flt": flt,
        "page": page,
        "kinds": KINDS,
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
