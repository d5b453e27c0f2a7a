"""Role and scope checks for officer routes: every route states who may use it."""

from functools import wraps

from flask import abort
from flask_login import current_user, login_required

from portal.extensions import db, login_manager
from portal.ledger.models import Position, Service


@login_manager.user_loader
def load_user(user_id: str):
    from portal.accounts.models import User

    return db.session.get(User, int(user_id))


login_manager.login_view = "officer.login"
login_manager.login_message = "Accedere per continuare."
login_manager.login_message_category = "warning"


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


def visible_services() -> list[Service]:
    """The services the current officer may see, by code."""
    scope = current_user.service_scope()
    return [s for s in current_user.creditor.services if scope is None or s.id in scope]
