"""Anomalies: receipts that could not simply pay an open option, and payments outside pagoPA of another amount than
due, listed until an officer resolves them.

Thin views over :mod:`portal.ledger.anomalies`: everyone sees them (scoped officers only their services'), operators
and admins resolve them with a note. The resolve form answers HTMX with the updated row, browsers with a redirect.
"""

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from jinja2_fragments.flask import render_block

from portal.accounts.models import Role
from portal.extensions import db, htmx
from portal.ledger import anomalies, offline_payments
from portal.ledger.payments import FLAG_AMOUNT_MISMATCH
from portal.officer import bp
from portal.officer.access import frozen_scope, roles_required
from portal.officer.forms import ResolveAnomalyForm

TEMPLATE = "officer/anomalies.html"
ANY_ROLE = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)


def open_counts(scope: frozenset[int] | None) -> dict[str, int]:
    """Open anomalies per kind: flagged receipts, and payments outside pagoPA of another amount among the
    ``amount_mismatch`` ones."""
    counts = anomalies.count_open(db.session, current_user.creditor_id, scope)
    outside = offline_payments.count_open_flagged(db.session, current_user.creditor_id, scope)
    if outside:
        counts[FLAG_AMOUNT_MISMATCH] = counts.get(FLAG_AMOUNT_MISMATCH, 0) + outside
    return counts


@bp.route("/anomalies")
@roles_required(*ANY_ROLE)
def anomalies_list():
    """Flagged receipts and payments outside pagoPA, open ones (resolved ones on request), by kind."""
    flt = anomalies.AnomalyFilter(kind=request.args.get("kind", "") if request.args.get("kind") in anomalies.KINDS
                                  else "", include_resolved=request.args.get("resolved") == "1", scope=frozen_scope())
    # Payments outside pagoPA whose amount differed: the same kind of check, listed below the receipts.
    outside = [] if flt.kind not in ("", FLAG_AMOUNT_MISMATCH) else offline_payments.list_flagged(
        db.session, current_user.creditor_id, scope=flt.scope, include_resolved=flt.include_resolved)
    return render_template(TEMPLATE, receipts=anomalies.list_anomalies(db.session, current_user.creditor_id, flt),
                           outside=outside, counts=open_counts(flt.scope), flt=flt, kinds=anomalies.KINDS,
                           form=ResolveAnomalyForm())


@bp.route("/anomalies/<int:receipt_id>/resolve", methods=["POST"])
@roles_required(Role.ADMIN, Role.OPERATOR)
def resolve_anomaly(receipt_id: int):
    """Record what was done about one flagged receipt."""
    receipt = anomalies.get_anomaly(db.session, current_user.creditor_id, receipt_id, frozen_scope())
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
