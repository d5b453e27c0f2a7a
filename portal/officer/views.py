"""Login, logout and the dashboard. Other areas of the back office have their own modules."""

from datetime import date

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from jinja2_fragments.flask import render_block

from portal.accounts.models import ROLE_LABELS, Role
from portal.accounts.services import LoginThrottled, authenticate, end_sessions
from portal.collections import overdue
from portal.extensions import db, htmx
from portal.ledger import queries
from portal.ledger.status import PositionStatus
from portal.ledger.sync_state import sync_summary
from portal.officer import bp, cashflow
from portal.officer.access import frozen_scope, roles_required
from portal.officer.anomalies import open_counts
from portal.officer.forms import EmptyForm, LoginForm
from portal.officer.redirects import same_site_path

ANY_ROLE = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)

#: The main menu: endpoint, label, and who sees it.
MENU = (
    ("officer.dashboard", "Cruscotto", ANY_ROLE),
    ("officer.positions", "Posizioni", ANY_ROLE),
    ("officer.new_position", "Nuova posizione", (Role.ADMIN, Role.OPERATOR)),
    ("officer.citizen", "Contribuente", ANY_ROLE),
    ("officer.imports", "Importazioni", ANY_ROLE),
    ("officer.billruns", "Bollettazioni", ANY_ROLE),
    ("officer.collections", "Solleciti e contenzioso", ANY_ROLE),
    ("officer.anomalies_list", "Anomalie", ANY_ROLE),
    ("officer.reporting_flows", "Rendicontazione", ANY_ROLE),
    ("officer.jobs", "Attività", (Role.ADMIN,)),
    ("officer.settings", "Impostazioni", (Role.ADMIN,)),
)


@bp.app_context_processor
def officer_helpers():
    def officer_menu():
        if not current_user.is_authenticated:
            return []
        return [(endpoint, label, current_user.role in roles and endpoint in current_app.view_functions)
                for endpoint, label, roles in MENU]

    return {"officer_menu": officer_menu, "role_label": lambda role: ROLE_LABELS.get(Role(role), role)}


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Officer login; failures are recorded and too many lock the account for a while."""
    if current_user.is_authenticated:
        return redirect(url_for("officer.dashboard"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        cfg = current_app.config
        try:
            user = authenticate(
                db.session, form.username.data, form.password.data, request.remote_addr or "unknown",
                max_failures=cfg["LOGIN_MAX_FAILURES"], lockout_minutes=cfg["LOGIN_LOCKOUT_MINUTES"],
                max_failures_per_ip=cfg["LOGIN_MAX_FAILURES_PER_IP"],
            )
        except LoginThrottled:
            return render_template("officer/login.html", form=form, error=(
                f"Troppi tentativi non riusciti. Riprovare tra {cfg['LOGIN_LOCKOUT_MINUTES']} minuti."
            )), 429
        if user is None:
            error = "Nome utente o password non corretti."
        else:
            # Decided before logging in, so nothing can fail once the session is open: only same-site paths.
            next_url = same_site_path(request.args.get("next")) or url_for("officer.dashboard")
            login_user(user)
            return redirect(next_url)
    return render_template("officer/login.html", form=form, error=error)


@bp.route("/logout", methods=["POST"])
def logout():
    """End the session (POST with CSRF, so a link on another site cannot log an officer out)."""
    form = EmptyForm()
    if form.validate_on_submit():
        if current_user.is_authenticated:
            end_sessions(current_user)  # a copy of this session's cookie must not open anything either
            db.session.commit()
        logout_user()
        flash("Sessione terminata.", "info")
    return redirect(url_for("officer.login"))


@bp.route("/")
@roles_required(*ANY_ROLE)
def dashboard():
    """Counts and amounts per status and service, what is overdue, and the collections of the last 12 months
    (``?service_id=`` narrows the chart to one service; htmx gets that section alone)."""
    scope = current_user.service_scope()
    creditor_id = current_user.creditor_id
    collections = cashflow.context(db.session, creditor_id, today=date.today(), scope=scope,
                                   services=current_user.creditor.services,
                                   service_id=request.args.get("service_id", type=int))
    if htmx and htmx.target == "cashflow":
        return render_block("officer/dashboard.html", "cashflow", **collections)
    totals = queries.dashboard_totals(db.session, creditor_id, scope=scope, today=date.today())
    open_anomalies = open_counts(frozen_scope())
    aging = overdue.aging(db.session, creditor_id, today=date.today(), scope=scope)
    largest = max((b.owed_cents for row in aging for b in row.buckets), default=0)
    services = {s.id: s for s in current_user.creditor.services}
    return render_template("officer/dashboard.html", totals=totals, statuses=list(PositionStatus),
                           sync=sync_summary(db.session, creditor_id),
                           anomalies=sum(open_anomalies.values()), aging=aging, largest=largest or 1,
                           services=services, buckets=overdue.BUCKETS,
                           alerts=overdue.alerts(db.session, creditor_id, scope=scope),
                           digest_form=EmptyForm(), **collections)


@bp.route("/me/overdue-digest", methods=["POST"])
@roles_required(*ANY_ROLE)
def overdue_digest_setting():
    """Turn the officer's daily e-mail of overdue positions on or off (their own setting)."""
    form = EmptyForm()
    if form.validate_on_submit():
        wanted = request.form.get("enabled") == "1"
        if wanted and not current_user.email:
            flash("Per ricevere il riepilogo serve un indirizzo e-mail nel profilo: chiederlo a un amministratore.",
                  "warning")
        else:
            current_user.overdue_digest = wanted
            db.session.commit()
            flash("Riepilogo giornaliero delle posizioni scadute attivato." if wanted else
                  "Riepilogo giornaliero delle posizioni scadute disattivato.", "success")
    return redirect(url_for("officer.dashboard"))
