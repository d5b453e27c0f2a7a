"""Role and scope checks for officer routes: every route states who may use it."""

import time
from functools import wraps

from flask import abort, current_app, flash, redirect, request, session, url_for
from flask_login import current_user, login_required, logout_user

from portal.extensions import db, login_manager
from portal.ledger.models import Position, Service
from portal.officer import bp


@login_manager.user_loader
def load_user(session_id: str):
    from portal.accounts.services import user_for_session

    return user_for_session(db.session, session_id)


login_manager.login_view = "officer.login"
login_manager.login_message = "Accedere per continuare."
login_manager.login_message_category = "warning"


#: Header the self-refreshing components send: their requests are not an officer's activity.
POLL_HEADER = "X-Paybox-Poll"


@bp.before_request
def end_idle_sessions():
    """Log out an officer idle for ``SESSION_IDLE_MINUTES``; any other request (not a poll) counts as activity."""
    if not current_user.is_authenticated:
        return None
    now = time.time()
    seen = session.get("seen")
    if seen is not None and now - seen > current_app.config["SESSION_IDLE_MINUTES"] * 60:
        logout_user()
        session.clear()
        flash("Sessione scaduta per inattività: accedere di nuovo.", "warning")
        login = url_for("officer.login", next=request.full_path if request.method == "GET" else None)
        if request.headers.get("HX-Request"):
            return "", 204, {"HX-Redirect": login}
        return redirect(login)
    if not request.headers.get(POLL_HEADER):
        session["seen"] = now
    return None


def roles_required(*roles):
    """Allow the view only to logged-in officers with one of ``roles`` (403 otherwise)."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def can_see_service(service_id: int | None) -> bool:
    """Whether the current officer's scope includes this service."""
    scope = current_user.service_scope()
    return scope is None or service_id in scope


def get_scoped_or_404(model, row_id: int):
    """Load a row (with ``creditor_id`` and ``service_id``) of the officer's creditor and scope; anything else is a
    404, never a leak. A row of no service is for unscoped officers only."""
    row = db.session.get(model, row_id)
    if row is None or row.creditor_id != current_user.creditor_id or not can_see_service(row.service_id):
        abort(404)
    return row


def get_position_or_404(position_id: int) -> Position:
    """Load a position of the officer's creditor and scope; anything else is a 404, never a leak."""
    return get_scoped_or_404(Position, position_id)


def frozen_scope() -> frozenset[int] | None:
    """The services the current officer sees, for the anomaly lists (``None``: every service)."""
    scope = current_user.service_scope()
    return None if scope is None else frozenset(scope)


def visible_services() -> list[Service]:
    """The services the current officer may see, by code."""
    scope = current_user.service_scope()
    return [s for s in current_user.creditor.services if scope is None or s.id in scope]
