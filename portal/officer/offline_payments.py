"""Payments outside pagoPA from the position page: record one (cash at the counter, bank transfer, F24) on an option,
reverse one recorded by mistake while pagoPA has not been told, resolve one whose amount differed.

Thin views over :mod:`portal.ledger.offline_payments`: operators and admins only, in their services' scope.
"""

from datetime import date

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal.accounts.models import Role
from portal.extensions import db
from portal.formatting import parse_date_input
from portal.ledger import offline_payments as offline
from portal.ledger.errors import ValidationFailed
from portal.ledger.notice_numbers import format_nav
from portal.money import AmountError, format_euro, parse_euro
from portal.officer import bp
from portal.officer.access import frozen_scope, get_position_or_404, roles_required
from portal.officer.anomalies import TEMPLATE as ANOMALIES_TEMPLATE
from portal.officer.anomalies import resolve_from_form
from portal.officer.forms import OfflinePaymentForm, ReversePaymentForm, flash_errors
from portal.routing import parse_id

WRITE_ROLES = (Role.ADMIN, Role.OPERATOR)


def _back(position_id: int):
    return redirect(url_for("officer.position", position_id=position_id), code=303)


def option_label(option) -> str:
    """"Rata 2 · 3010 0000 … · 40,00 €" as the option choice reads."""
    kind = _("Unica soluzione") if option.kind == "single" else _("Rata %(n)s", n=option.installment_number)
    return f"{kind} · {format_nav(option.notice_number)} · {format_euro(option.amount_cents)}"


def _form(options) -> OfflinePaymentForm:
    form = OfflinePaymentForm()
    form.option.choices = [(str(o.id), option_label(o)) for o in options]
    form.channel.choices = [("", _("Scegliere…"))] + [(code, _(label)) for code, label in offline.CHANNELS.items()]
    if not form.is_submitted():
        form.paid_on.data = date.today().isoformat()
        if len(options) == 1:
            form.amount.data = format_euro(options[0].amount_cents, symbol=False)
    return form


@bp.route("/positions/<int:position_id>/offline-payments/new", methods=["GET", "POST"])
@roles_required(*WRITE_ROLES)
def record_offline_payment(position_id: int):
    """The form of a payment made outside pagoPA; each mistake is shown on its field (422)."""
    position = get_position_or_404(position_id)
    refusal = offline.recording_refusal(position)
    options = offline.payable_options(position)
    if refusal or not options:
        flash(refusal or _("Nessuna rata da pagare: non si possono registrare pagamenti."), "warning")
        return _back(position.id)
    form = _form(options)
    if not form.validate_on_submit():
        return _render(form, position, status=422 if form.is_submitted() else 200)
    errors: dict[str, str] = {}
    try:
        amount = parse_euro(form.amount.data or "")
    except AmountError as exc:
        amount, errors["amount"] = None, str(exc)
    paid_on = parse_date_input(form.paid_on.data)
    if form.paid_on.data and paid_on is None:
        errors["paid_on"] = _("Data non valida: usare il formato gg/mm/aaaa.")
    data = offline.OfflinePaymentInput(option_id=parse_id(form.option.data), paid_on=paid_on,
                                       channel=form.channel.data or "", reference=form.reference.data or "",
                                       amount_cents=amount, accept_amount_mismatch=form.accept_amount_mismatch.data)
    try:
        payment = offline.record(db.session, position.id, data, actor=current_user.actor,
                                 actor_user_id=current_user.id)
    except ValidationFailed as exc:
        for name, messages in exc.by_field().items():
            getattr(form, name).errors = [errors.pop(name, None) or " ".join(messages)]
        return _render(form, position, status=422)
    except offline.OfflinePaymentRefused as exc:
        flash(str(exc), "error")
        return _back(position.id)
    flash(_("Pagamento di %(amount)s registrato (%(channel)s). pagoPA ne sarà informato a breve: fino ad allora "
            "si può annullare.", amount=format_euro(payment.amount_cents),
            channel=_(offline.CHANNELS[payment.channel]).lower()), "success")
    if payment.flag:
        flash(_("L'importo è diverso dal dovuto: il pagamento è tra le anomalie da verificare."), "warning")
    return _back(position.id)


def _render(form, position, *, status: int):
    return render_template("officer/offline_payment.html", form=form, position=position,
                           today_iso=date.today().isoformat()), status


@bp.route("/positions/<int:position_id>/offline-payments/<int:payment_id>/reverse", methods=["POST"])
@roles_required(*WRITE_ROLES)
def reverse_offline_payment(position_id: int, payment_id: int):
    """Cancel a payment recorded by mistake, with a reason; refused once pagoPA has been told."""
    position = get_position_or_404(position_id)
    payment = offline.get(db.session, current_user.creditor_id, payment_id)
    if payment is None or payment.position_id != position.id:
        abort(404)
    form = ReversePaymentForm()
    if not form.validate_on_submit():
        flash_errors(form)
        return _back(position.id)
    try:
        offline.reverse(db.session, payment.id, reason=form.reason.data, actor=current_user.actor,
                        actor_user_id=current_user.id)
    except offline.OfflinePaymentRefused as exc:
        flash(str(exc), "error")
        return _back(position.id)
    except ValueError as exc:  # a reason of blanks only
        flash(str(exc), "error")
        return _back(position.id)
    flash(_("Pagamento annullato: la rata è di nuovo da pagare."), "success")
    return _back(position.id)


@bp.route("/anomalies/offline/<int:payment_id>/resolve", methods=["POST"])
@roles_required(*WRITE_ROLES)
def resolve_offline_anomaly(payment_id: int):
    """Record what was done about a payment outside pagoPA whose amount differed from the option's."""
    payment = offline.get_flagged(db.session, current_user.creditor_id, payment_id, frozen_scope())
    if payment is None:
        abort(404)
    return resolve_from_form(offline.resolve, payment, template=ANOMALIES_TEMPLATE, block="offline_row", name="p",
                             kinds=offline.KINDS, back="officer.anomalies_list")
