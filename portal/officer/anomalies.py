"""Anomalies: receipts that could not simply pay an open option, listed until an officer resolves them.

Thin views over :mod:`portal.ledger.anomalies`: everyone sees them (scoped officers only their services'), operators
and admins resolve them with a note. The resolve form answers HTMX with the updated row, browsers with a redirect.
"""

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from jinja2_fragments.flask import render_block

from portal.accounts.models import Role
from portal.extensions import db, htmx
from portal.ledger import anomalies
from portal.officer import bp
from portal.officer.access import roles_required
from portal.officer.forms import ResolveAnomalyForm

TEMPLATE = "officer/anomalies.html"
ANY_ROLE = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)


def _scope() -> frozenset[int] | None:
    scope = current_user.service_scope()
    return None if scope is None else frozenset(scope)


@bp.route("/anomalies")
@roles_required(*ANY_ROLE)
def anomalies_list():
    """Flagged receipts, open ones first (resolved ones on request), by kind."""
    flt = anomalies.AnomalyFilter(kind=request.args.get("kind", "") if request.args.get("kind") in anomalies.KINDS
                                  else "", include_resolved=request.args.get("resolved") == "1", scope=_scope())
    return render_template(TEMPLATE, receipts=anomalies.list_anomalies(db.session, current_user.creditor_id, flt),
                           counts=anomalies.count_open(db.session, current_user.creditor_id, flt.scope), flt=flt,
                           kinds=anomalies.KINDS, form=ResolveAnomalyForm())


@bp.route("/anomalies/<int:receipt_id>/resolve", methods=["POST"])
@roles_required(Role.ADMIN, Role.OPERATOR)
def resolve_anomaly(receipt_id: int):
    """Record what was done about one flagged receipt."""
    receipt = anomalies.get_anomaly(db.session, current_user.creditor_id, receipt_id, _scope())
    if receipt is None:
        abort(404)
    return resolve_from_form(anomalies.resolve, receipt, template=TEMPLATE, block="row", name="r",
                             kinds=anomalies.KINDS, back="officer.anomalies_list")


def resolve_from_form(resolve, record, *, template: str, block: str, name: str, kinds: dict, back: str):
    """The "resolved, note" form of an anomaly page, for any kind of anomaly: ``resolve(session, record, ...)``
    records it; htmx gets the row again (with the error, 422), a plain post a message and the list."""
    form = ResolveAnomalyForm()
    error = None
    if form.validate_on_submit():
        try:
            resolve(db.session, record, note=form.note.data, actor=current_user.actor, actor_user_id=current_user.id)
        except anomalies.AnomalyError as exc:
            error = str(exc)
    else:
        error = " ".join(e for errors in form.errors.values() for e in errors)
    if htmx:
        return render_block(template, block, **{name: record}, form=ResolveAnomalyForm(formdata=None), error=error,
                            kinds=kinds), 422 if error else 200
    flash(error or "Anomalia risolta.", "danger" if error else "success")
    return redirect(url_for(back))
