"""Publishing drafts on pagoPA: one position from its page, or every draft a list filter selects (with a
confirmation that says how many). Thin views over :mod:`portal.ledger.publishing`; operators and admins only."""

from datetime import date

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal.accounts.models import Role
from portal.extensions import db
from portal.ledger import publishing
from portal.officer import bp
from portal.officer.access import get_position_or_404, roles_required
from portal.officer.forms import EmptyForm
from portal.officer.positions import parse_filter


@bp.route("/positions/<int:position_id>/publish", methods=["POST"])
@roles_required(Role.ADMIN, Role.OPERATOR)
def publish_position(position_id: int):
    """Hand one draft to pagoPA; its page follows the publication by itself."""
    position = get_position_or_404(position_id)
    back = redirect(url_for("officer.position", position_id=position.id), code=303)
    if not EmptyForm().validate_on_submit():
        flash("Richiesta non valida: ricaricare la pagina e riprovare.", "error")
        return back
    try:
        publishing.publish_position(db.session, position, actor=current_user.actor, actor_user_id=current_user.id,
                                    today=date.today())
    except publishing.PublishRefused as exc:
        flash(str(exc), "error")
        return back
    flash("Pubblicazione richiesta: la posizione sarà caricata su pagoPA a breve.", "success")
    return back


@bp.route("/positions/publish", methods=["GET", "POST"])
@roles_required(Role.ADMIN, Role.OPERATOR)
def publish_selection():
    """Confirm (GET) and publish (POST) every draft the list's filter selects."""
    form = parse_filter(request.values, scope=current_user.service_scope())
    confirm = EmptyForm()
    if request.method == "POST" and confirm.validate_on_submit():
        result = publishing.publish_selection(db.session, current_user.creditor_id, form.flt,
                                              actor=current_user.actor, actor_user_id=current_user.id,
                                              today=date.today())
        message = f"Pubblicazione richiesta per {result.published} bozze."
        if result.past_due:
            message += f" {result.past_due} con una scadenza già passata non sono state pubblicate."
        if result.inactive_service:
            message += f" {result.inactive_service} di servizi non attivi non sono state pubblicate."
        flash(message, "success" if result.published else "warning")
        # Back to the drafts the filter still selects (a filter on status was "draft" already, or is replaced).
        return redirect(url_for("officer.positions", **{**form.query_args(), "status": "draft"}), code=303)
    count = publishing.count_selection(db.session, current_user.creditor_id, form.flt, today=date.today())
    return render_template("officer/publish_selection.html", form=form, confirm=confirm, count=count)
