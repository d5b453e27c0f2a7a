"""Changing a position from its page: edit it while nothing is paid (the new-position form, filled in) and abate
(sgravio) what is still owed. The rules and the pagoPA version are :mod:`portal.ledger.changes`'."""

from datetime import date

from flask import flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal.extensions import db
from portal.ledger import changes
from portal.ledger.errors import ValidationFailed
from portal.money import AmountError, format_euro, parse_euro
from portal.officer import bp
from portal.officer.access import get_position_or_404, roles_required
from portal.officer.entry import ENTRY_ROLES, _form, _render, handle_helpers
from portal.officer.entry_forms import ErrorBag, fill_form, place_errors
from portal.officer.forms import AbatePositionForm, flash_errors


def _back(position_id: int):
    return redirect(url_for("officer.position", position_id=position_id), code=303)


@bp.route("/positions/<int:position_id>/edit", methods=["GET", "POST"])
@roles_required(*ENTRY_ROLES)
def edit_position(position_id: int):
    """The position's content in the entry form: amounts, due dates, installments, beneficiaries, debtor."""
    position = get_position_or_404(position_id)
    refusal = changes.edit_refusal(position)
    if refusal:
        flash(refusal, "warning")
        return _back(position.id)
    services = [position.service]
    form = _form(services)
    if request.method == "GET":
        fill_form(form, changes.position_input(position))
        return _render(form, services, editing=position)
    today = date.today()
    draft, helper = handle_helpers(form, services, creditor=current_user.creditor, today=today, editing=position)
    if helper is not None:
        return helper
    if draft.errors:
        return _render(form, services, errors=draft.errors, draft=draft, status=422, editing=position)
    data = draft.data
    data.external_id, data.source = position.external_id, position.source
    try:
        outcome = changes.update_position(db.session, position, data, actor=current_user.actor,
                                          actor_user_id=current_user.id, reason=request.form.get("reason"),
                                          today=today, visible_service_ids=current_user.service_scope())
    except changes.ChangeRefused as exc:
        flash(str(exc), "error")
        return _back(position.id)
    except ValidationFailed as exc:
        draft.errors = ErrorBag()
        place_errors(draft, exc.errors)
        return _render(form, services, errors=draft.errors, draft=draft, status=422, editing=position)
    if not outcome.changed:
        flash(_("Nessuna modifica: la posizione era già così."), "info")
    else:
        flash(_("Posizione modificata.") + " " + (_("La nuova versione va a pagoPA a breve.") if outcome.pagopa_update
                                                  else ""), "success")
    if outcome.notice_superseded:
        flash(_("L'avviso già stampato non è più valido per importi e scadenze: ristamparlo o inviarlo di nuovo."),
              "warning")
    return _back(position.id)


@bp.route("/positions/<int:position_id>/abate", methods=["POST"])
@roles_required(*ENTRY_ROLES)
def abate_position(position_id: int):
    """Reduce what is still owed, with a reason; in full, the position is cancelled."""
    position = get_position_or_404(position_id)
    form = AbatePositionForm()
    if not form.validate_on_submit():
        flash_errors(form)
        return _back(position.id)
    try:
        amount = parse_euro(form.amount.data)
        outcome = changes.abate_position(db.session, position, amount, reason=form.reason.data,
                                         actor=current_user.actor, actor_user_id=current_user.id)
    except AmountError as exc:
        flash(_("Importo da sgravare: %(error)s", error=str(exc)), "error")
        return _back(position.id)
    except changes.ChangeRefused as exc:
        flash(str(exc), "error")
        return _back(position.id)
    except ValidationFailed as exc:
        for error in exc.errors:
            flash(error.message, "error")
        return _back(position.id)
    flash(_("Sgravio di %(amount)s registrato.", amount=format_euro(amount)), "success")
    if outcome.pagopa_not_updatable:
        flash(_("pagoPA non consente di modificare una posizione già pagata in parte: le rate restano pagabili su "
                "pagoPA per l'importo precedente; un pagamento in eccesso comparirà tra le anomalie, da rimborsare."),
              "warning")
    if outcome.notice_superseded:
        flash(_("L'avviso già stampato non è più valido: ristamparlo o inviarlo di nuovo."), "warning")
    return _back(position.id)
