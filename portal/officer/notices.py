"""The payment notice of one position: the PDF download, and sending it to the debtor by e-mail."""

from flask import Response, abort, flash, redirect, url_for
from flask_login import current_user

from portal.accounts.models import Role
from portal.extensions import db
from portal.ledger.models import Creditor
from portal.ledger.payability import not_payable_reason
from portal.notices import NoticeError, render_notice
from portal.notices.delivery import DeliveryError, request_email
from portal.notices.render import notice_filename
from portal.officer import bp
from portal.officer.access import get_position_or_404, roles_required
from portal.officer.forms import EmptyForm


@bp.route("/positions/<int:position_id>/notice.pdf")
@roles_required(Role.ADMIN, Role.OPERATOR, Role.VIEWER)
def position_notice(position_id: int):
    """The pagoPA notice of the position (any officer role; 404 outside the officer's scope).

    The file is named ``<debtor CF>_<IUV>.pdf`` after the single payment (or the first installment), as the
    bill-run envelopes are.
    """
    position = get_position_or_404(position_id)
    reason = not_payable_reason(position)
    if reason:
        # Offered only where pagoPA collects it; an old link or a stale page gets the reason, not an error page.
        flash(reason, "warning")
        return redirect(url_for("officer.position", position_id=position.id))
    creditor = db.session.get(Creditor, position.creditor_id)
    try:
        pdf = render_notice(position, creditor=creditor)
    except NoticeError as exc:
        abort(409, description=str(exc))
    filename = notice_filename(position)
    return Response(pdf, mimetype="application/pdf",
                    headers={"Content-Disposition": f"attachment; filename={filename}"})


@bp.route("/positions/<int:position_id>/notice/email", methods=["POST"])
@roles_required(Role.ADMIN, Role.OPERATOR)
def email_notice(position_id: int):
    """Queue the notice for the debtor's e-mail address; the delivery log on the position page shows the outcome."""
    position = get_position_or_404(position_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        delivery = request_email(db.session, position, requested_by_id=current_user.id)
    except DeliveryError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Avviso in invio a {delivery.recipient}.", "success")
    return redirect(url_for("officer.position", position_id=position.id), code=303)
