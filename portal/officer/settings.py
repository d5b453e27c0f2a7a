"""Settings of the creditor (admins only): the Ente, its pagoPA accounts, its services and its users.

Thin views: the forms read the input, :mod:`portal.settings.services` and :mod:`portal.accounts.services`
validate and apply it (and log who changed what), the request commits once after a successful response.
Everything is scoped to the admin's creditor: another creditor's ids are a 404.
"""

import hashlib
from dataclasses import fields

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal.accounts import api_tokens
from portal.accounts.models import ROLE_LABELS, Role, User
from portal.accounts.services import MIN_PASSWORD_LENGTH, UserFieldError, add_user, set_password, update_user
from portal.extensions import db
from portal.ledger import taxonomy
from portal.ledger.errors import ValidationFailed
from portal.ledger.models import Creditor, Service
from portal.notices.logo import MAX_BYTES as LOGO_MAX_BYTES
from portal.officer import bp
from portal.officer.access import roles_required
from portal.officer.forms import EmptyForm
from portal.officer.settings_forms import (
    AccountEditForm,
    AccountForm,
    ApiTokenForm,
    CreditorForm,
    LogoForm,
    PasswordResetForm,
    ServiceForm,
    UserCreateForm,
    UserEditForm,
)
from portal.settings import services as settings_svc

ADMIN = Role.ADMIN
#: Status of a page re-rendered because its form was refused (htmx swaps it like a 200).
INVALID = 422


def _creditor() -> Creditor:
    return db.session.get(Creditor, current_user.creditor_id)


def _status(form) -> int:
    return INVALID if form.errors else 200


def _put_errors(form, exc: ValidationFailed, fallback: str) -> None:
    """Place the domain's field errors on the form's fields (unknown fields go on ``fallback``)."""
    for name, messages in exc.by_field().items():
        field = form[name] if name in form else form[fallback]
        field.errors = list(field.errors) + messages


# --- Overview ---------------------------------------------------------------------------------------------------


@bp.route("/settings")
@roles_required(ADMIN)
def settings():
    """The settings areas, with a summary of each."""
    creditor = _creditor()
    users = db.session.scalars(db.select(User).where(User.creditor_id == creditor.id)).all()
    active_tokens = sum(1 for t in api_tokens.tokens_of(db.session, creditor.id) if t.state() == "active")
    return render_template("officer/settings/index.html", creditor=creditor, users=users, active_tokens=active_tokens)


# --- Creditor ---------------------------------------------------------------------------------------------------

CREDITOR_FIELDS = [f.name for f in fields(settings_svc.CreditorInput)]


def _render_creditor(creditor: Creditor, form: CreditorForm, logo_form: LogoForm):
    """The Ente's page: its data and, in a form of its own, the logo printed on the notices."""
    status = INVALID if form.errors or logo_form.errors else 200
    return render_template("officer/settings/creditor.html", form=form, creditor=creditor, logo_form=logo_form,
                           logo_delete_form=EmptyForm(), has_logo=settings_svc.has_logo(db.session, creditor.id),
                           logo_max_mb=LOGO_MAX_BYTES // (1024 * 1024)), status


@bp.route("/settings/creditor", methods=["GET", "POST"])
@roles_required(ADMIN)
def settings_creditor():
    """Edit the Ente's data."""
    creditor = _creditor()
    form = CreditorForm(obj=creditor)
    if form.validate_on_submit():
        data = settings_svc.CreditorInput(**{name: form[name].data for name in CREDITOR_FIELDS})
        previous_segregation = creditor.segregation_code
        try:
            changed = settings_svc.update_creditor(db.session, creditor, data, actor=current_user.actor)
        except ValidationFailed as exc:
            _put_errors(form, exc, "name")
        else:
            if "segregation_code" in changed:
                flash(_("Codice di segregazione cambiato da %(old)s a %(new)s: vale solo per i nuovi numeri "
                        "avviso, quelli già emessi restano validi.", old=previous_segregation,
                        new=creditor.segregation_code), "warning")
            flash(_("Dati dell'ente salvati.") if changed else _("Nessuna modifica."), "success")
            return redirect(url_for("officer.settings_creditor"))
    return _render_creditor(creditor, form, LogoForm(formdata=None))


@bp.route("/settings/logo", methods=["POST"])
@roles_required(ADMIN)
def settings_logo():
    """Upload the logo printed on the notices (it replaces the current one)."""
    creditor = _creditor()
    logo_form = LogoForm()
    if logo_form.validate_on_submit():
        # Never more than one byte past the limit in memory: set_logo refuses anything longer.
        data = logo_form.logo.data.read(LOGO_MAX_BYTES + 1)
        try:
            settings_svc.set_logo(db.session, creditor, data, actor=current_user.actor)
        except ValidationFailed as exc:
            _put_errors(logo_form, exc, "logo")
        else:
            flash(_("Logo salvato: sarà stampato sui prossimi avvisi."), "success")
            return redirect(url_for("officer.settings_creditor", _anchor="ente-logo"))
    return _render_creditor(creditor, CreditorForm(formdata=None, obj=creditor), logo_form)


@bp.route("/settings/logo/delete", methods=["POST"])
@roles_required(ADMIN)
def settings_logo_delete():
    """Remove the logo: the next notices are printed without one."""
    form = EmptyForm()
    if not form.validate_on_submit():
        abort(400)
    if settings_svc.remove_logo(db.session, _creditor(), actor=current_user.actor):
        flash(_("Logo eliminato: i prossimi avvisi saranno stampati senza logo."), "success")
    else:
        flash(_("Nessun logo da eliminare."), "info")
    return redirect(url_for("officer.settings_creditor", _anchor="ente-logo"))


@bp.route("/settings/logo.png")
@roles_required(ADMIN)
def settings_logo_image():
    """The current logo, as stored (a PNG re-encoded on upload), for the settings page."""
    png = settings_svc.get_logo(db.session, current_user.creditor_id)
    if png is None:
        abort(404)
    response = make_response(png)
    response.mimetype = "image/png"
    response.headers["Content-Disposition"] = 'inline; filename="logo.png"'
    # Private (only admins see it) and revalidated every time (it changes under the same URL): a 304 is cheap.
    response.cache_control.private = True
    response.cache_control.no_cache = True
    response.set_etag(hashlib.sha256(png).hexdigest()[:32])
    return response.make_conditional(request)


# --- Accounts ---------------------------------------------------------------------------------------------------


def _account_or_404(account_id: int):
    account = settings_svc.get_account(db.session, current_user.creditor_id, account_id)
    if account is None:
        abort(404)
    return account


@bp.route("/settings/accounts")
@roles_required(ADMIN)
def settings_accounts():
    """The IBANs registered on pagoPA and the services crediting each."""
    creditor = _creditor()
    used_by = {a.id: settings_svc.services_using_account(db.session, a) for a in creditor.accounts}
    return render_template("officer/settings/accounts.html", creditor=creditor, used_by=used_by,
                           delete_form=EmptyForm())


@bp.route("/settings/accounts/new", methods=["GET", "POST"])
@roles_required(ADMIN)
def settings_account_new():
    """Register one more IBAN."""
    form = AccountForm()
    if form.validate_on_submit():
        try:
            account = settings_svc.create_account(db.session, _creditor(), iban=form.iban.data, label=form.label.data,
                                                  is_postal=form.is_postal.data, actor=current_user.actor)
        except ValidationFailed as exc:
            _put_errors(form, exc, "iban")
        else:
            flash(_("Conto %(iban)s aggiunto.", iban=account.iban), "success")
            return redirect(url_for("officer.settings_accounts"))
    return render_template("officer/settings/account_form.html", form=form, account=None), _status(form)


@bp.route("/settings/accounts/<id32:account_id>", methods=["GET", "POST"])
@roles_required(ADMIN)
def settings_account_edit(account_id: int):
    """Change an account's description or postal flag."""
    account = _account_or_404(account_id)
    form = AccountEditForm(obj=account)
    if form.validate_on_submit():
        try:
            changed = settings_svc.update_account(db.session, account, label=form.label.data,
                                                  is_postal=form.is_postal.data, actor=current_user.actor)
        except ValidationFailed as exc:
            _put_errors(form, exc, "label")
        else:
            flash(_("Conto salvato.") if changed else _("Nessuna modifica."), "success")
            return redirect(url_for("officer.settings_accounts"))
    return render_template("officer/settings/account_form.html", form=form, account=account), _status(form)


@bp.route("/settings/accounts/<id32:account_id>/delete", methods=["POST"])
@roles_required(ADMIN)
def settings_account_delete(account_id: int):
    """Remove an account that no service uses."""
    account = _account_or_404(account_id)
    form = EmptyForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        settings_svc.remove_account(db.session, account, actor=current_user.actor)
    except ValidationFailed as exc:
        flash(" ".join(e.message for e in exc.errors), "danger")
    else:
        flash(_("Conto %(iban)s eliminato.", iban=account.iban), "success")
    return redirect(url_for("officer.settings_accounts"))


# --- Services ---------------------------------------------------------------------------------------------------


def _service_or_404(service_id: int) -> Service:
    service = settings_svc.get_service(db.session, current_user.creditor_id, service_id)
    if service is None:
        abort(404)
    return service


def _service_form(creditor: Creditor, service: Service | None) -> ServiceForm:
    form = ServiceForm(obj=service)
    form.account_id.choices = [(a.id, f"{a.label} – {a.iban}") for a in creditor.accounts]
    return form


def _service_input(form: ServiceForm) -> settings_svc.ServiceInput:
    return settings_svc.ServiceInput(**{f.name: form[f.name].data for f in fields(settings_svc.ServiceInput)})


def _render_service(form: ServiceForm, creditor: Creditor, service: Service | None):
    return render_template("officer/settings/service_form.html", form=form, service=service, creditor=creditor,
                           taxonomy_choices=taxonomy.choices("01")), _status(form)


@bp.route("/settings/services")
@roles_required(ADMIN)
def settings_services():
    """The creditor's services."""
    return render_template("officer/settings/services.html", creditor=_creditor())


@bp.route("/settings/services/new", methods=["GET", "POST"])
@roles_required(ADMIN)
def settings_service_new():
    """Add a service."""
    creditor = _creditor()
    form = _service_form(creditor, None)
    if form.validate_on_submit():
        try:
            service = settings_svc.create_service(db.session, creditor, _service_input(form), actor=current_user.actor)
        except ValidationFailed as exc:
            _put_errors(form, exc, "code")
        else:
            flash(_("Servizio %(code)s creato.", code=service.code), "success")
            return redirect(url_for("officer.settings_services"))
    return _render_service(form, creditor, None)


@bp.route("/settings/services/<id32:service_id>", methods=["GET", "POST"])
@roles_required(ADMIN)
def settings_service_edit(service_id: int):
    """Change a service's settings."""
    service = _service_or_404(service_id)
    creditor = _creditor()
    form = _service_form(creditor, service)
    if form.validate_on_submit():
        try:
            changed = settings_svc.update_service(db.session, service, _service_input(form), actor=current_user.actor)
        except ValidationFailed as exc:
            _put_errors(form, exc, "code")
        else:
            flash(_("Servizio %(code)s salvato.", code=service.code) if changed else _("Nessuna modifica."),
                  "success")
            return redirect(url_for("officer.settings_services"))
    return _render_service(form, creditor, service)


# --- Users ------------------------------------------------------------------------------------------------------


def _user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None or user.creditor_id != current_user.creditor_id:
        abort(404)
    return user


def _scope_choices(form, creditor: Creditor) -> None:
    form.service_ids.choices = [(s.id, f"{s.code} – {s.name}") for s in creditor.services]


def _chosen_services(form, creditor: Creditor) -> list[Service]:
    chosen = set(form.service_ids.data or [])
    return [s for s in creditor.services if s.id in chosen]


def _put_user_error(form, exc: UserFieldError) -> None:
    field = form[exc.field] if exc.field in form else form["service_ids" if exc.field == "services" else "full_name"]
    field.errors = list(field.errors) + [str(exc)]


@bp.route("/settings/users")
@roles_required(ADMIN)
def settings_users():
    """The creditor's officers."""
    users = db.session.scalars(
        db.select(User).where(User.creditor_id == current_user.creditor_id).order_by(User.username)
    ).all()
    return render_template("officer/settings/users.html", users=users, role_labels=ROLE_LABELS)


@bp.route("/settings/users/new", methods=["GET", "POST"])
@roles_required(ADMIN)
def settings_user_new():
    """Create an officer with a role and, optionally, a limited set of services."""
    creditor = _creditor()
    form = UserCreateForm()
    _scope_choices(form, creditor)
    if form.validate_on_submit():
        try:
            user = add_user(db.session, creditor, by=current_user, username=form.username.data,
                            full_name=form.full_name.data, password=form.password.data, role=form.role.data,
                            email=form.email.data, services=_chosen_services(form, creditor))
        except UserFieldError as exc:
            _put_user_error(form, exc)
        else:
            flash(_("Utente %(username)s creato.", username=user.username), "success")
            return redirect(url_for("officer.settings_users"))
    return render_template("officer/settings/user_form.html", form=form, user=None,
                           min_password=MIN_PASSWORD_LENGTH), _status(form)


@bp.route("/settings/users/<id32:user_id>", methods=["GET", "POST"])
@roles_required(ADMIN)
def settings_user_edit(user_id: int):
    """Change an officer's role, scope, active flag, name and e-mail."""
    user = _user_or_404(user_id)
    creditor = _creditor()
    form = UserEditForm(obj=user)
    _scope_choices(form, creditor)
    if not form.is_submitted():
        form.service_ids.data = [s.id for s in user.services]
    if form.validate_on_submit():
        try:
            changed = update_user(db.session, user, by=current_user, full_name=form.full_name.data,
                                  email=form.email.data, role=form.role.data,
                                  services=_chosen_services(form, creditor), active=form.active.data)
        except UserFieldError as exc:
            _put_user_error(form, exc)
        else:
            flash(_("Utente %(username)s salvato.", username=user.username) if changed else _("Nessuna modifica."),
                  "success")
            return redirect(url_for("officer.settings_users"))
    return render_template("officer/settings/user_form.html", form=form, user=user), _status(form)


@bp.route("/settings/users/<id32:user_id>/password", methods=["GET", "POST"])
@roles_required(ADMIN)
def settings_user_password(user_id: int):
    """Give an officer a new password (to be communicated to them by a safe channel)."""
    user = _user_or_404(user_id)
    form = PasswordResetForm()
    if form.validate_on_submit():
        try:
            set_password(db.session, user, form.password.data, by=current_user)
        except UserFieldError as exc:
            _put_user_error(form, exc)
        else:
            flash(_("Password di %(username)s reimpostata.", username=user.username), "success")
            return redirect(url_for("officer.settings_users"))
    return render_template("officer/settings/user_password.html", form=form, user=user,
                           min_password=MIN_PASSWORD_LENGTH), _status(form)


# --- API access ---------------------------------------------------------------------------------------------------


def _token_or_404(token_id: int) -> api_tokens.ApiToken:
    token = db.session.get(api_tokens.ApiToken, token_id)
    if token is None or token.creditor_id != current_user.creditor_id:
        abort(404)
    return token


def _render_tokens(form: ApiTokenForm, *, secret: str | None = None, created=None, status: int = 200):
    tokens = api_tokens.tokens_of(db.session, current_user.creditor_id)
    return render_template("officer/settings/api_tokens.html", tokens=tokens, form=form, secret=secret,
                           created=created, revoke_form=EmptyForm(), scope_labels=api_tokens.SCOPE_LABELS), status


@bp.route("/settings/api", methods=["GET", "POST"])
@roles_required(ADMIN)
def settings_api():
    """Accesso API: the tokens of the Comune's systems; a new one is shown once, right after it is created."""
    from datetime import datetime, time

    from portal.formatting import ROME, parse_date_input

    creditor = _creditor()
    form = ApiTokenForm()
    _scope_choices(form, creditor)
    if not form.validate_on_submit():
        return _render_tokens(form, status=_status(form))
    expires_at = None
    if form.expires_on.data:
        day = parse_date_input(form.expires_on.data)
        if day is None:
            form.expires_on.errors = [_("Data non valida: usare gg/mm/aaaa.")]
            return _render_tokens(form, status=INVALID)
        expires_at = datetime.combine(day, time.max, tzinfo=ROME)
    try:
        issued = api_tokens.create_token(db.session, creditor, name=form.name.data, scope=form.scope.data,
                                         services=_chosen_services(form, creditor), expires_at=expires_at,
                                         created_by_id=current_user.id)
    except api_tokens.TokenError as exc:
        target = {"services": "service_ids", "expires_at": "expires_on"}.get(exc.field, exc.field)
        form[target].errors = [str(exc)]
        return _render_tokens(form, status=INVALID)
    blank = ApiTokenForm(formdata=None)
    _scope_choices(blank, creditor)
    response = make_response(_render_tokens(blank, secret=issued.secret, created=issued.token))
    # The secret is on this page only: never cached, never kept by the browser's history.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/settings/api/<id32:token_id>/revoke", methods=["POST"])
@roles_required(ADMIN)
def settings_api_revoke(token_id: int):
    """Revoke a token now: the system's next call is refused."""
    token = _token_or_404(token_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    api_tokens.revoke(db.session, token, by_id=current_user.id)
    flash(_("Token «%(name)s» revocato: le chiamate con questo token sono rifiutate.", name=token.name), "success")
    return redirect(url_for("officer.settings_api"), code=303)
