"""Impostazioni → Interessi, sanzioni e solleciti (admins only): the legal-rate table, each service's collection
policy, and the history of their changes.

Thin views over :mod:`portal.collections.settings`, which checks the values, applies them and writes the history
(who, when, field, old and new value). The rate table's forms work as plain POSTs (redirect, or the page again with
the errors, 422) and, with htmx, swap the table in place with the history beside it (out of band).
"""

from datetime import timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from jinja2_fragments.flask import render_blocks

from portal.accounts.models import Role
from portal.collections import history
from portal.collections import settings as collection_settings
from portal.collections.models import NOTIFICATION_METHODS, LegalRate
from portal.extensions import db, htmx
from portal.formatting import parse_date_input
from portal.ledger.errors import ValidationFailed
from portal.ledger.models import Service
from portal.officer import bp
from portal.officer.access import roles_required
from portal.officer.forms import EmptyForm
from portal.officer.settings import INVALID, _put_errors, _service_or_404
from portal.officer.settings_forms import LegalRateForm, PolicyForm

TEMPLATE = "officer/settings/collections.html"


def _services() -> list[Service]:
    return sorted(current_user.creditor.services, key=lambda s: s.code)


def _history_rows() -> list[dict]:
    """The latest changes, ready to show (labels and values in Italian, the officer's name)."""
    from portal.accounts.models import User

    rows = history.changes(db.session, current_user.creditor_id)
    users = {u.id: u for u in db.session.scalars(db.select(User).where(
        User.id.in_({r.user_id for r in rows if r.user_id} or {-1})))}
    services = {s.id: s for s in current_user.creditor.services}
    shown = []
    for row in rows:
        user = users.get(row.user_id)
        shown.append({
            "at": row.changed_at, "service_id": row.service_id, "who": user.full_name if user else row.actor,
            "what": (_("Tasso legale dal %(day)s", day=row.rate_from.strftime("%d/%m/%Y"))
                     if row.subject == "legal_rate"
                     else services[row.service_id].code if row.service_id in services else "–"),
            "field": collection_settings.field_label(row.subject, row.field),
            "old": collection_settings.display_value(row.subject, row.field, row.old_value),
            "new": collection_settings.display_value(row.subject, row.field, row.new_value),
        })
    return shown


def _number(value) -> str:
    """A percentage or a spread the Italian way (``1,6``, ``-0,5``)."""
    return history.as_text(value).replace(".", ",")


def _render(*, form: LegalRateForm | None = None, editing: int | None = None, edit_form: LegalRateForm | None = None,
            message: str | None = None, message_kind: str = "success", status: int = 200):
    """The page, or (htmx) the rate table with the history out of band."""
    policies = collection_settings.policies_by_service(db.session, current_user.creditor_id)
    rates = collection_settings.legal_rates(db.session)
    # Newest first, each with the last day it was in force (the day before the next one starts).
    rate_rows = [(rate, rates[i + 1].effective_from - timedelta(days=1) if i + 1 < len(rates) else None)
                 for i, rate in enumerate(rates)][::-1]
    context = {
        "rate_rows": rate_rows, "number": _number, "form": form or LegalRateForm(formdata=None),
        "editing": editing, "edit_form": edit_form, "message": message,
        "message_kind": message_kind, "delete_form": EmptyForm(),
        "services": _services(), "policies": policies, "changes": _history_rows(),
        "penalty_kinds": dict(collection_settings.CHOICES["penalty_kind"]),
    }
    if htmx and not htmx.history_restore_request:
        return render_blocks(TEMPLATE, ["rates", "history"], oob=True, **context), status
    return render_template(TEMPLATE, **context), status


@bp.route("/settings/collections")
@roles_required(Role.ADMIN)
def settings_collections():
    """The legal-rate table, the services' policies and the history of changes."""
    return _render()


def _save_rate(form: LegalRateForm, rate_id: int | None):
    return collection_settings.save_legal_rate(
        db.session, effective_from=parse_date_input(form.effective_from.data), percent=form.percent.data,
        decree=form.decree.data, actor=current_user.actor, user_id=current_user.id, rate_id=rate_id)


def _saved(message: str):
    if htmx:
        return _render(message=message)
    flash(message, "success")
    return redirect(url_for("officer.settings_collections", _anchor="tassi-legali"), code=303)


@bp.route("/settings/collections/rates", methods=["POST"])
@roles_required(Role.ADMIN)
def settings_legal_rate_new():
    """Add the rate in force from a date (the same date again corrects that row)."""
    form = LegalRateForm()
    if form.validate_on_submit():
        try:
            row = _save_rate(form, None)
        except ValidationFailed as exc:
            _put_errors(form, exc, "percent")
        else:
            return _saved(_("Tasso legale dal %(day)s salvato.", day=row.effective_from.strftime("%d/%m/%Y")))
    return _render(form=form, status=INVALID)


def _rate_or_404(rate_id: int) -> LegalRate:
    row = db.session.get(LegalRate, rate_id)
    if row is None:
        abort(404)
    return row


@bp.route("/settings/collections/rates/<id32:rate_id>", methods=["GET", "POST"])
@roles_required(Role.ADMIN)
def settings_legal_rate_edit(rate_id: int):
    """Correct a row of the table (its date, rate or decree)."""
    row = _rate_or_404(rate_id)
    form = LegalRateForm(prefix="edit", data={"effective_from": f"{row.effective_from:%d/%m/%Y}",
                                              "percent": _number(row.percent), "decree": row.decree})
    if form.validate_on_submit():
        try:
            row = _save_rate(form, row.id)
        except ValidationFailed as exc:
            _put_errors(form, exc, "percent")
        else:
            return _saved(_("Tasso legale dal %(day)s corretto.", day=row.effective_from.strftime("%d/%m/%Y")))
    return _render(editing=rate_id, edit_form=form, status=INVALID if form.errors else 200)


@bp.route("/settings/collections/rates/<id32:rate_id>/delete", methods=["POST"])
@roles_required(Role.ADMIN)
def settings_legal_rate_delete(rate_id: int):
    """Remove a row entered by mistake (the history keeps what it said)."""
    row = _rate_or_404(rate_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    day = f"{row.effective_from:%d/%m/%Y}"
    try:
        collection_settings.delete_legal_rate(db.session, row.id, actor=current_user.actor, user_id=current_user.id)
    except ValidationFailed as exc:
        refused = " ".join(e.message for e in exc.errors)
        if htmx:
            return _render(message=refused, message_kind="danger", status=INVALID)
        flash(refused, "danger")
        return redirect(url_for("officer.settings_collections", _anchor="tassi-legali"), code=303)
    return _saved(_("Tasso legale dal %(day)s eliminato.", day=day))


@bp.route("/settings/collections/services/<id32:service_id>/check", methods=["POST"])
@roles_required(Role.ADMIN)
def settings_collection_policy_check(service_id: int):
    """The errors of one field of the policy form as it is typed (named by ``HX-Trigger-Name``), by the rules of
    saving, the rules between two fields included; nothing is stored."""
    _service_or_404(service_id)
    form = PolicyForm()
    form.validate()
    name = htmx.trigger_name or request.form.get("field", "")
    if name not in collection_settings.FIELD_KINDS:
        abort(400)
    values = {n: form[n].data for n in collection_settings.FIELD_KINDS if not form[n].errors}
    messages = list(form[name].errors) + [e.message for e in collection_settings.check_policy(values)
                                          if e.field == name]
    return " ".join(dict.fromkeys(str(m) for m in messages))


@bp.route("/settings/collections/services/<id32:service_id>", methods=["GET", "POST"])
@roles_required(Role.ADMIN)
def settings_collection_policy(service_id: int):
    """A service's collection policy: grace, reminder, interest, penalty, notification, c.802–803 figures."""
    service = _service_or_404(service_id)
    policy = collection_settings.policy_for(db.session, service)
    form = PolicyForm(obj=policy)
    if form.validate_on_submit():
        values = {name: form[name].data for name in collection_settings.FIELD_KINDS}
        try:
            changed = collection_settings.save_policy(db.session, service, values, actor=current_user.actor,
                                                      user_id=current_user.id)
        except ValidationFailed as exc:
            _put_errors(form, exc, "grace_days")
        else:
            flash(_("Impostazioni di %(code)s salvate.", code=service.code) if changed else _("Nessuna modifica."),
                  "success")
            return redirect(url_for("officer.settings_collection_policy", service_id=service.id), code=303)
    changes = [row for row in _history_rows() if row["service_id"] == service.id]
    return render_template("officer/settings/collection_policy.html", form=form, service=service,
                           groups=collection_settings.POLICY_GROUPS, changes=changes,
                           notification_methods=NOTIFICATION_METHODS), INVALID if form.errors else 200
