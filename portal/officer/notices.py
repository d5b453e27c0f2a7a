"""The payment notice PDF of one position, downloaded from the position page."""

from flask import Response, abort

from portal.accounts.models import Role
from portal.extensions import db
from portal.ledger.models import Creditor
from portal.notices import NoticeError, render_notice
from portal.officer import bp
from portal.officer.access import get_position_or_404, roles_required


@bp.route("/positions/<int:position_id>/notice.pdf")
@roles_required(Role.ADMIN, Role.OPERATOR, Role.VIEWER)
def position_notice(position_id: int):
    """The pagoPA notice of the position (any officer role; 404 outside the officer's scope).

    The file is named ``<debtor CF>_<IUV>.pdf`` after the single payment (or the first installment), as the
    bill-run files will be.
    """
    position = get_position_or_404(position_id)
    creditor = db.session.get(Creditor, position.creditor_id)
    try:
        pdf = render_notice(position, creditor=creditor)
    except NoticeError as exc:
        abort(409, description=str(exc))
    first = position.single_option or position.options[0]
    filename = f"{position.debtor.fiscal_code}_{first.iuv}.pdf"
    return Response(pdf, mimetype="application/pdf",
                    headers={"Content-Disposition": f"attachment; filename={filename}"})
