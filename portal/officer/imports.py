"""Importazioni: bulk uploads of bill runs in the back office (the domain is :mod:`portal.imports.services`).

The list with the upload form, the template, each service's column mapping, and an import's page: its progress
while the dry run or the import job works (an HTMX block that re-requests itself and stops once nothing works),
the dry-run report with every row error (paged, and as CSV), Confirm and Cancel, and after the import the link to
its positions and the cancellation of all of them. Operators and admins act, viewers look; a scoped officer sees
the imports of their services only, and another creditor's import is a 404.
"""

import sqlalchemy as sa
from flask import Response, abort, current_app, flash, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from jinja2_fragments.flask import render_block
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from portal.accounts.models import Role
from portal.extensions import db, htmx
from portal.imports import layout
from portal.imports import services as imports
from portal.imports.layout import FIELDS, Mapping
from portal.imports.models import Import
from portal.jobs.records import latest_run
from portal.ledger.models import Creditor, Service
from portal.officer import bp
from portal.officer.access import get_scoped_or_404, roles_required, visible_services
from portal.officer.forms import EmptyForm
from portal.routing import parse_id

ANY_ROLE = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
EDITORS = (Role.ADMIN, Role.OPERATOR)
TEMPLATE = "officer/imports/import.html"
#: Imports the list shows, and row errors a page of the report shows.
LIST_LIMIT = 100
REPORT_PAGE = 50
#: Italian labels and badge colours of an import's states.
STATUS = {
    "uploaded": ("In attesa di verifica", "secondary"),
    "checking": ("Verifica in corso", "primary"),
    "checked": ("Verificata", "info"),
    "importing": ("Importazione in corso", "primary"),
    "done": ("Importata", "success"),
    "failed": ("Non riuscita", "danger"),
    "cancelled": ("Annullata", "dark"),
}
DATE_FORMAT_LABELS = {"auto": "Riconosciuto dal file (gg/mm/aaaa, aaaa-mm-gg, numero di Excel)",
                      "%d/%m/%Y": "gg/mm/aaaa", "%Y-%m-%d": "aaaa-mm-gg", "%d-%m-%Y": "gg-mm-aaaa",
                      "%d.%m.%Y": "gg.mm.aaaa", "%Y%m%d": "aaaammgg", "%d/%m/%y": "gg/mm/aa"}
DECIMAL_LABELS = {"auto": "Riconosciuto dall'importo (1.234,50 o 1,234.50)", ",": "Virgola (1.234,50)",
                  ".": "Punto (1,234.50)"}


def _choices(labels: dict[str, str]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in labels.items()]


class UploadForm(FlaskForm):
    """The file, its service, and the two choices of the upload."""

    service_id = SelectField("Servizio", coerce=int, validators=[DataRequired("Scegliere il servizio.")])
    file = FileField("File CSV o XLSX", validators=[FileRequired("Scegliere il file da caricare.")])
    valid_rows_only = BooleanField("Importa solo le righe valide")
    update_existing = BooleanField("Aggiorna le posizioni esistenti")


class MappingForm(FlaskForm):
    """How a service's files are read: for each field of the layout its column's header and a fixed value."""

    date_format = SelectField("Formato delle date", choices=_choices(DATE_FORMAT_LABELS))
    decimal = SelectField("Separatore decimale degli importi", choices=_choices(DECIMAL_LABELS))


for _f in FIELDS:
    setattr(MappingForm, f"column_{_f.name}", StringField(f"Colonna per «{_f.name}»",
                                                          validators=[Optional(), Length(max=100)]))
    setattr(MappingForm, f"fixed_{_f.name}", StringField(f"Valore fisso per «{_f.name}»",
                                                         validators=[Optional(), Length(max=200)]))


class CancelPositionsForm(FlaskForm):
    """Why every position of an import is cancelled, and the officer's explicit confirmation."""

    reason = TextAreaField("Motivo dell'annullamento",
                           validators=[DataRequired("Indicare il motivo dell'annullamento."), Length(max=400)])
    confirm = BooleanField("Confermo l'annullamento di tutte le posizioni non pagate di questa importazione",
                           validators=[DataRequired("Confermare l'annullamento spuntando la casella.")])


def _settings() -> imports.ImportSettings:
    return imports.ImportSettings.from_config(current_app.config)


def _upload_form(**kwargs) -> UploadForm:
    form = UploadForm(**kwargs)
    form.service_id.choices = [SelectChoice(0, "— Scegliere —")] + [
        SelectChoice(s.id, f"{s.name} ({s.code})") for s in visible_services() if s.active]
    return form


def _list_page(form: UploadForm | None, status: int = 200):
    query = sa.select(Import).where(Import.creditor_id == current_user.creditor_id).order_by(Import.id.desc())
    scope = current_user.service_scope()
    if scope is not None:
        query = query.where(Import.service_id.in_(scope or {-1}))
    rows = db.session.scalars(query.limit(LIST_LIMIT)).all()
    context = {"imports": rows, "form": form, "status_labels": STATUS, "services": visible_services(),
               "on_pagopa": imports.on_pagopa(db.session, [i.id for i in rows]),
               "max_mb": current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)}
    return render_template("officer/imports/list.html", **context), status


@bp.route("/imports", endpoint="imports")
@roles_required(*ANY_ROLE)
def imports_list():
    """The Ente's imports, newest first, and (for operators and admins) the upload form."""
    return _list_page(_upload_form() if current_user.can_edit else None)


@bp.route("/imports", methods=["POST"])
@roles_required(*EDITORS)
def upload_import():
    """Keep the uploaded file and ask for its dry run; the officer lands on the import's page."""
    form = _upload_form()
    if not form.validate_on_submit():
        return _list_page(form, 422)
    service = db.session.get(Service, form.service_id.data)
    creditor = db.session.get(Creditor, current_user.creditor_id)
    upload = form.file.data
    try:
        imp = imports.create_import(
            db.session, creditor, service, upload.filename or "", upload.stream,
            imports.ImportOptions(valid_rows_only=form.valid_rows_only.data,
                                  update_existing=form.update_existing.data),
            actor=current_user.actor, actor_user_id=current_user.id, settings=_settings())
    except imports.ImportRefused as exc:
        form.file.errors.append(str(exc))
        return _list_page(form, 422)
    flash(f"File «{imp.filename}» caricato: la verifica è in corso.", "success")
    return redirect(url_for("officer.import_page", import_id=imp.id), code=303)


@bp.errorhandler(RequestEntityTooLarge)
def upload_too_large(error):
    """A file over ``MAX_UPLOAD_MB`` is refused before it is read: the upload form says so (elsewhere the usual
    error page)."""
    if request.endpoint != "officer.upload_import" or not current_user.is_authenticated or not current_user.can_edit:
        return render_template("errors/error.html", code=413, description=error.description), 413
    form = _upload_form(formdata=None)  # the request's body is the problem: never read it
    max_mb = current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
    form.file.errors = [f"Il file supera la dimensione massima di {max_mb} MB."]
    return _list_page(form, 413)


@bp.route("/imports/template.<any(csv, xlsx):fmt>", endpoint="import_template")
@roles_required(*ANY_ROLE)
def import_template(fmt: str):
    """The default layout with example rows (the XLSX also describes each column)."""
    if fmt == "csv":
        return Response(layout.template_csv(), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=modello-importazione.csv"})
    return Response(layout.template_xlsx(),
                    mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": "attachment; filename=modello-importazione.xlsx"})


def _visible_service_or_404(service_id: int) -> Service:
    service = db.session.get(Service, service_id)
    if service is None or service.id not in {s.id for s in visible_services()}:
        abort(404)
    return service


@bp.route("/imports/mapping/<int:service_id>", methods=["GET", "POST"], endpoint="import_mapping")
@roles_required(*ANY_ROLE)
def import_mapping(service_id: int):
    """The columns of a service's files: header → field, fixed values, date format and decimal separator."""
    service = _visible_service_or_404(service_id)
    form = MappingForm()
    status = 200
    if request.method == "POST":
        if not current_user.can_edit:
            abort(403)
        if form.validate_on_submit():
            mapping = Mapping(columns={f.name: form[f"column_{f.name}"].data or "" for f in FIELDS},
                              fixed={f.name: form[f"fixed_{f.name}"].data or "" for f in FIELDS},
                              date_format=form.date_format.data, decimal=form.decimal.data)
            try:
                imports.save_mapping(db.session, service, mapping, actor_user_id=current_user.id)
            except imports.ImportRefused as exc:
                form.form_errors.append(str(exc))
                status = 422
            else:
                flash(f"Colonne del servizio {service.code} salvate: valgono per i prossimi caricamenti.", "success")
                return redirect(url_for("officer.import_mapping", service_id=service.id), code=303)
        else:
            status = 422
    else:
        mapping = imports.get_mapping(db.session, service)
        form.date_format.data, form.decimal.data = mapping.date_format, mapping.decimal
        for f in FIELDS:
            form[f"column_{f.name}"].data = mapping.columns.get(f.name, "")
            form[f"fixed_{f.name}"].data = mapping.fixed.get(f.name, "")
    return render_template("officer/imports/mapping.html", form=form, service=service, fields=FIELDS), status


def _step(imp: Import) -> str | None:
    """The job that works (or worked last) on the import, for its progress bar."""
    if imp.status in ("uploaded", "checking"):
        return "check"
    if imp.status == "importing":
        return "run"
    if imp.status == "done":
        return "cancel"
    return None


@bp.route("/imports/<int:import_id>", endpoint="import_page")
@roles_required(*ANY_ROLE)
def import_page(import_id: int):
    """One import: progress while a job works on it, the report, and what can be done next."""
    imp = get_scoped_or_404(Import, import_id)
    step = _step(imp)
    job = latest_run(db.session, imports.job_id(imp.id, step)) if step else None
    cancelling = step == "cancel" and job is not None and job.status in ("queued", "running")
    after = parse_id(request.args.get("after"))
    rows = imports.report_rows(db.session, imp.id, after=after, limit=REPORT_PAGE + 1)
    context = {
        "imp": imp, "status_labels": STATUS, "job": job if step != "cancel" or cancelling else None,
        "polling": imp.active or cancelling, "cancelling": cancelling,
        "rows": rows[:REPORT_PAGE], "next_after": rows[REPORT_PAGE - 1].id if len(rows) > REPORT_PAGE else None,
        "after": after, "refusal": imports.refusal(imp),
        "counts": imports.pagopa_counts(db.session, imp.id) if imp.status == "done" else None,
        "form": EmptyForm(), "cancel_form": CancelPositionsForm(),
        "poll_seconds": current_app.config.get("IMPORTS_PAGE_POLL_SECONDS") or 2,
    }
    if htmx and not htmx.history_restore_request:
        return render_block(TEMPLATE, "live", **context)
    return render_template(TEMPLATE, **context)


@bp.route("/imports/<int:import_id>/report.csv", endpoint="import_report_csv")
@roles_required(*ANY_ROLE)
def import_report_csv(import_id: int):
    """Every row error of the import, as a CSV (formula-safe)."""
    imp = get_scoped_or_404(Import, import_id)
    return Response(stream_with_context(imports.report_csv(db.session, imp.id)), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename=importazione-{imp.id}-errori.csv"})


def _action_form_or_400(import_id: int) -> Import:
    imp = get_scoped_or_404(Import, import_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    return imp


@bp.route("/imports/<int:import_id>/confirm", methods=["POST"], endpoint="confirm_import")
@roles_required(*EDITORS)
def confirm_import(import_id: int):
    """Ask for the import of a checked file (confirming again changes nothing)."""
    imp = _action_form_or_400(import_id)
    try:
        imports.confirm(db.session, imp.id, actor=current_user.actor, actor_user_id=current_user.id)
        flash("Importazione confermata: le posizioni vengono scritte.", "success")
    except imports.ImportRefused as exc:
        flash(str(exc), "error")
    return redirect(url_for("officer.import_page", import_id=imp.id), code=303)


@bp.route("/imports/<int:import_id>/cancel", methods=["POST"], endpoint="cancel_import")
@roles_required(*EDITORS)
def cancel_import(import_id: int):
    """Drop an import before it is confirmed (its file and report stay)."""
    imp = _action_form_or_400(import_id)
    try:
        imports.cancel_import(db.session, imp.id, actor_user_id=current_user.id, settings=_settings())
        flash("Importazione annullata: nessuna posizione è stata scritta.", "success")
    except imports.ImportRefused as exc:
        flash(str(exc), "error")
    return redirect(url_for("officer.import_page", import_id=imp.id), code=303)


@bp.route("/imports/<int:import_id>/cancel-positions", methods=["POST"], endpoint="cancel_import_positions")
@roles_required(*EDITORS)
def cancel_import_positions(import_id: int):
    """Cancel every unpaid position the import created, with a reason (a job; each cancellation on its timeline)."""
    imp = get_scoped_or_404(Import, import_id)
    form = CancelPositionsForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for message in errors:
                flash(message, "error")
        return redirect(url_for("officer.import_page", import_id=imp.id), code=303)
    if imp.status != "done":
        flash("Solo le posizioni di un'importazione completata si annullano in blocco.", "error")
        return redirect(url_for("officer.import_page", import_id=imp.id), code=303)
    try:
        count = imports.request_cancel_positions(db.session, imp.id, reason=form.reason.data,
                                                 actor=current_user.actor, actor_user_id=current_user.id)
        flash(f"Annullamento di {count} posizioni avviato: pagoPA riceverà gli annullamenti a breve.", "success")
    except imports.ImportRefused as exc:
        flash(str(exc), "error")
    return redirect(url_for("officer.import_page", import_id=imp.id), code=303)
