"""Impostazioni → Webhook: the Comune's systems that receive signed events, and the delivery log with "send again".

Thin views over :mod:`portal.webhooks.services`; admins only. A new (or rotated) secret is shown once, on a page
that is never cached.
"""

from flask import abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal.accounts.models import Role
from portal.extensions import db
from portal.ledger.models import Creditor, Service
from portal.officer import bp
from portal.officer.access import roles_required
from portal.officer.forms import EmptyForm
from portal.officer.settings_forms import WebhookForm
from portal.webhooks import services
from portal.webhooks.models import EVENTS, FAILED

STATUS_LABELS = {"pending": "In corso", "delivered": "Consegnato", "failed": "Fallito"}


def _form(formdata=...) -> WebhookForm:
    form = WebhookForm() if formdata is ... else WebhookForm(formdata=formdata)
    form.events.choices = list(EVENTS.items())
    creditor = db.session.get(Creditor, current_user.creditor_id)
    form.service_ids.choices = [(s.id, f"{s.code} – {s.name}") for s in creditor.services]
    return form


def _render(form, *, secret=None, subscriber=None, status=200):
    response = make_response(render_template(
        "officer/settings/webhooks.html", form=form, secret=secret, created=subscriber, action_form=EmptyForm(),
        subscribers=services.list_subscribers(db.session, current_user.creditor_id), event_labels=EVENTS), status)
    if secret:
        response.headers["Cache-Control"] = "no-store"
    return response


def _subscriber_or_404(subscriber_id: int):
    subscriber = services.get_subscriber(db.session, current_user.creditor_id, subscriber_id)
    if subscriber is None:
        abort(404)
    return subscriber


@bp.route("/settings/webhooks", methods=["GET", "POST"])
@roles_required(Role.ADMIN)
def settings_webhooks():
    """The subscribers; a new one's secret is shown once, right after it is added."""
    form = _form()
    if not form.validate_on_submit():
        return _render(form, status=422 if request.method == "POST" else 200)
    codes = [db.session.get(Service, i).code for i in form.service_ids.data or []]
    try:
        subscriber, secret = services.add_subscriber(
            db.session, db.session.get(Creditor, current_user.creditor_id), url=form.url.data,
            events=form.events.data or [], service_codes=codes, created_by_id=current_user.id,
            allow_private=bool(current_app.config.get("WEBHOOKS_ALLOW_PRIVATE")))
    except services.SubscriberError as exc:
        getattr(form, {"services": "service_ids"}.get(exc.field, exc.field), form.url).errors = [str(exc)]
        return _render(form, status=422)
    db.session.commit()
    return _render(_form(formdata=None), secret=secret, subscriber=subscriber)


@bp.route("/settings/webhooks/<int:subscriber_id>/rotate", methods=["POST"])
@roles_required(Role.ADMIN)
def settings_webhook_rotate(subscriber_id: int):
    """A new secret, used from the next attempt on; shown once."""
    subscriber = _subscriber_or_404(subscriber_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    secret = services.rotate_secret(db.session, subscriber)
    db.session.commit()
    return _render(_form(formdata=None), secret=secret, subscriber=subscriber)


@bp.route("/settings/webhooks/<int:subscriber_id>/active", methods=["POST"])
@roles_required(Role.ADMIN)
def settings_webhook_active(subscriber_id: int):
    """Switch a subscriber off (no new deliveries) or on again."""
    subscriber = _subscriber_or_404(subscriber_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    services.set_active(db.session, subscriber, not subscriber.active)
    db.session.commit()
    flash(_("Destinatario attivato.") if subscriber.active else _("Destinatario disattivato."), "success")
    return redirect(url_for("officer.settings_webhooks"), code=303)


@bp.route("/settings/webhooks/deliveries")
@roles_required(Role.ADMIN)
def webhook_deliveries():
    """The delivery log: of one subscriber (``?subscriber=``), of one position (``?position=``), by status."""
    subscriber_id = request.args.get("subscriber", type=int)
    position_id = request.args.get("position", type=int)
    status = request.args.get("status") if request.args.get("status") in STATUS_LABELS else None
    subscriber = _subscriber_or_404(subscriber_id) if subscriber_id else None
    return render_template(
        "officer/settings/webhook_deliveries.html", subscriber=subscriber, position_id=position_id, status=status,
        deliveries=services.list_deliveries(db.session, current_user.creditor_id, subscriber_id=subscriber_id,
                                            position_id=position_id, status=status),
        status_labels=STATUS_LABELS, action_form=EmptyForm())


@bp.route("/settings/webhooks/deliveries/<int:delivery_id>/resend", methods=["POST"])
@roles_required(Role.ADMIN)
def webhook_resend(delivery_id: int):
    """Send one delivery again now."""
    delivery = services.get_delivery(db.session, current_user.creditor_id, delivery_id)
    if delivery is None:
        abort(404)
    if not EmptyForm().validate_on_submit():
        abort(400)
    services.send_again(db.session, delivery)
    db.session.commit()
    flash(_("Invio ripetuto: l'esito compare qui tra pochi secondi."), "success")
    return redirect(url_for("officer.webhook_deliveries", subscriber=delivery.subscriber_id), code=303)


@bp.route("/settings/webhooks/<int:subscriber_id>/resend-failed", methods=["POST"])
@roles_required(Role.ADMIN)
def webhook_resend_failed(subscriber_id: int):
    """Send every failed delivery of a subscriber again."""
    subscriber = _subscriber_or_404(subscriber_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    count = services.send_failed_again(db.session, subscriber)
    db.session.commit()
    flash(_("%(n)d invii falliti ripetuti.", n=count), "success")
    return redirect(url_for("officer.webhook_deliveries", subscriber=subscriber.id, status=FAILED), code=303)
