"""Bill runs in the back office: start one (service + filters), follow its progress, download the package.

The run page is one URL for the full page and for its HTMX ``progress`` block, which re-requests itself every
two seconds while the run is working and stops once it is done, failed or cancelled.
"""

import sqlalchemy as sa
from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from jinja2_fragments.flask import render_block
from wtforms import BooleanField, DateField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from portal.accounts.models import Role
from portal.extensions import db, htmx
from portal.ledger.models import Creditor
from portal.ledger.queries import PositionFilter
from portal.ledger.status import LABELS, PAYABLE_STATUSES, PositionStatus
from portal.notices import billrun
from portal.notices.models import BillRun
from portal.officer import bp
from portal.officer.access import get_scoped_or_404, roles_required, visible_services
from portal.officer.forms import EmptyForm
from portal.routing import parse_id

ANY_ROLE = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
EDITORS = (Role.ADMIN, Role.OPERATOR)
TEMPLATE = "officer/billrun.html"

#: Italian labels and badge colours of a run's states.
RUN_STATUS = {
    "preparing": ("Selezione in corso", "secondary"),
    "rendering": ("Stampa in corso", "primary"),
    "assembling": ("Preparazione del pacchetto", "primary"),
    "done": ("Completata", "success"),
    "failed": ("Non riuscita", "danger"),
    "cancelled": ("Annullata", "dark"),
}
MODE_LABELS = {
    "envelopes": "Un PDF per busta (CF_IUV.pdf)",
    "merged": "PDF unici per blocco, con le pagine di ogni busta nell'indice",
}


class BillRunForm(FlaskForm):
    """What to print: a service, optional filters, the output mode and the e-mail option."""

    title = StringField("Descrizione", validators=[DataRequired("Indicare una descrizione."), Length(max=140)])
    service_id = SelectField("Servizio", coerce=int, validators=[DataRequired("Scegliere il servizio.")])
    status = SelectField("Stato delle posizioni", validators=[Optional()])
    due_from = DateField("Scadenza dal", validators=[Optional()])
    due_to = DateField("Scadenza al", validators=[Optional()])
    mode = RadioField("File per la stampa", choices=[SelectChoice(v, label) for v, label in MODE_LABELS.items()],
                      default="merged", validators=[DataRequired("Scegliere il formato dei file.")])
    include_issued = BooleanField("Ristampa anche gli avvisi già emessi")
    send_email = BooleanField("Invia anche ogni avviso all'e-mail del debitore, se nota")

    def validate_due_to(self, field) -> None:
        if field.data and self.due_from.data and field.data < self.due_from.data:
            raise ValidationError("La data finale precede quella iniziale.")

    def position_filter(self) -> PositionFilter:
        return PositionFilter(service_id=self.service_id.data,
                              status=PositionStatus(self.status.data) if self.status.data else None,
                              due_from=self.due_from.data, due_to=self.due_to.data,
                              scope=current_user.service_scope())


def _form() -> BillRunForm:
    form = BillRunForm()
    form.service_id.choices = [SelectChoice(0, "— Scegliere —")] + [
        SelectChoice(s.id, f"{s.name} ({s.code})") for s in visible_services()]
    form.status.choices = [SelectChoice("", "Tutte quelle pagabili")] + [
        SelectChoice(s.value, LABELS[s]) for s in PositionStatus if s in PAYABLE_STATUSES]
    return form


def _settings() -> billrun.BillRunSettings:
    return billrun.BillRunSettings.from_config(current_app.config)


@bp.route("/billruns")
@roles_required(*ANY_ROLE)
def billruns():
    """The Ente's bill runs, newest first (scoped officers see those of their services)."""
    query = sa.select(BillRun).where(BillRun.creditor_id == current_user.creditor_id).order_by(BillRun.id.desc())
    scope = current_user.service_scope()
    if scope is not None:
        query = query.where(BillRun.service_id.in_(scope or {-1}))
    runs = db.session.scalars(query.limit(100)).all()
    return render_template("officer/billruns.html", runs=runs, run_status=RUN_STATUS, mode_labels=MODE_LABELS)


@bp.route("/billruns/new", methods=["GET", "POST"])
@roles_required(*EDITORS)
def new_billrun():
    """Choose what to print; "Calcola" counts the notices, "Avvia" starts the run."""
    form = _form()
    counted, status = None, 200
    requested = parse_id(request.args.get("service_id")) if request.method == "GET" else None
    if requested is not None:
        form.service_id.data = requested
    if request.method == "POST" and not form.validate_on_submit():
        status = 422
    elif request.method == "POST":
        if form.service_id.data not in {s.id for s in visible_services()}:
            form.service_id.errors.append("Servizio non disponibile.")
            status = 422
        elif "preview" in request.form:
            counted = billrun.count_selection(db.session, current_user.creditor_id, form.position_filter(),
                                              include_issued=form.include_issued.data)
        else:
            creditor = db.session.get(Creditor, current_user.creditor_id)
            try:
                run = billrun.start_bill_run(
                    db.session, creditor, form.position_filter(), title=form.title.data, mode=form.mode.data,
                    include_issued=form.include_issued.data, send_email=form.send_email.data,
                    actor_user_id=current_user.id, settings=_settings())
            except billrun.BillRunError as exc:
                form.form_errors.append(str(exc))
                status = 422
            else:
                flash(f"Bollettazione avviata: {run.total} avvisi.", "success")
                return redirect(url_for("officer.billrun", run_id=run.id), code=303)
    return render_template("officer/billrun_new.html", form=form, counted=counted), status


@bp.route("/billruns/<id32:run_id>", endpoint="billrun")
@roles_required(*ANY_ROLE)
def billrun_page(run_id: int):
    """One run: selection, progress (polled while working), the package, cancel and restart."""
    run = get_scoped_or_404(BillRun, run_id)
    context = {"run": run, "run_status": RUN_STATUS, "mode_labels": MODE_LABELS, "form": EmptyForm(),
               "selection": billrun.selection_filter(run), "status_labels": LABELS}
    if htmx and not htmx.history_restore_request:
        return render_block(TEMPLATE, "progress", **context)
    return render_template(TEMPLATE, **context)


@bp.route("/billruns/<id32:run_id>/package.zip")
@roles_required(*ANY_ROLE)
def billrun_package(run_id: int):
    """The ZIP for the print vendor."""
    run = get_scoped_or_404(BillRun, run_id)
    if run.status != "done" or not run.file_name:
        abort(404)
    path = _settings().storage_dir / run.file_name
    if not path.is_file():
        abort(410, description="Il pacchetto non è più disponibile sul server.")
    return send_file(path, mimetype="application/zip", as_attachment=True,
                     download_name=f"bollettazione-{run.id}.zip", max_age=0)


@bp.route("/billruns/<id32:run_id>/cancel", methods=["POST"])
@roles_required(*EDITORS)
def cancel_billrun(run_id: int):
    """Stop a run that is still working (rendered chunks are kept for a restart)."""
    run = get_scoped_or_404(BillRun, run_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        billrun.cancel(db.session, run.id, actor_user_id=current_user.id)
        flash("Bollettazione annullata: nessun avviso risulta emesso.", "success")
    except billrun.BillRunError as exc:
        flash(str(exc), "error")
    return redirect(url_for("officer.billrun", run_id=run.id), code=303)


@bp.route("/billruns/<id32:run_id>/restart", methods=["POST"])
@roles_required(*EDITORS)
def restart_billrun(run_id: int):
    """Resume a cancelled, failed or stalled run: only what is missing is rendered."""
    run = get_scoped_or_404(BillRun, run_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        billrun.restart(db.session, run.id)
        flash("Bollettazione ripresa: vengono stampati solo i blocchi mancanti.", "success")
    except billrun.BillRunError as exc:
        flash(str(exc), "error")
    return redirect(url_for("officer.billrun", run_id=run.id), code=303)
