"""Reminders and litigation in the back office: pick overdue positions, preview, start a batch, follow it.

Thin views over :mod:`portal.collections.batches`: operators and admins act, viewers look, scoped officers see
and select only their services' positions (the filter carries the scope).
"""

from datetime import date
from pathlib import Path

import sqlalchemy as sa
from flask import Response, abort, flash, make_response, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField, TextAreaField
from wtforms.validators import Length, Optional

from portal.accounts.models import Role
from portal.collections import batches, delivery, letters
from portal.collections.models import CollectionBatch, CollectionBatchItem, Reminder
from portal.extensions import db, htmx
from portal.ledger.models import PaymentOption, Position
from portal.ledger.notice_numbers import normalize_nav
from portal.officer import bp
from portal.officer.access import get_position_or_404, roles_required
from portal.officer.forms import EmptyForm
from portal.officer.positions import parse_filter

ANY_ROLE = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
EDIT_ROLES = (Role.ADMIN, Role.OPERATOR)
KINDS = (("reminder", "Solleciti"), ("litigation", "Accertamenti esecutivi (contenzioso)"))
#: The filter fields a batch selection keeps (as in the positions list).
SELECTION_FIELDS = ("service_id", "status", "due_from", "due_to", "debtor", "amount_min", "amount_max")


class BatchForm(FlaskForm):
    """What the batch does and to which positions (the filter arrives as hidden fields)."""

    kind = HiddenField()
    title = StringField("Descrizione del lotto", validators=[Optional(), Length(max=140)])
    numbers = TextAreaField("Solo questi codici avviso o IUV (uno per riga, facoltativo)",
                            validators=[Optional(), Length(max=200_000)])
    repeat = BooleanField("Secondo sollecito: includi anche le posizioni già sollecitate per la stessa scadenza")


def _ids_from_numbers(text: str) -> list[int] | None:
    numbers = [normalize_nav(line) for line in (text or "").split() if line.strip()]
    if not numbers:
        return None
    return list(db.session.scalars(sa.select(PaymentOption.position_id).where(
        PaymentOption.creditor_id == current_user.creditor_id,
        sa.or_(PaymentOption.notice_number.in_(numbers), PaymentOption.iuv.in_(numbers)))))


@bp.route("/collections")
@roles_required(*ANY_ROLE)
def collections():
    """The reminder and litigation batches, newest first."""
    rows = db.session.scalars(sa.select(CollectionBatch).where(
        CollectionBatch.creditor_id == current_user.creditor_id).order_by(CollectionBatch.id.desc()).limit(100)).all()
    return render_template("officer/collections.html", batches=rows, kinds=dict(KINDS))


@bp.route("/collections/new", methods=["GET", "POST"])
@roles_required(*EDIT_ROLES)
def collections_new():
    """Select, preview (count, amount, the first positions with what each gets), then start the batch."""
    args = request.form if request.method == "POST" else request.args
    selection = parse_filter(args, scope=current_user.service_scope())
    selection.flt.overdue = True
    form = BatchForm(data={"kind": args.get("kind") or "reminder"} if request.method == "GET" else None)
    if request.method == "GET":
        form.numbers.data = args.get("numbers") or ""
        form.repeat.data = args.get("repeat") == "y"
    kind = form.kind.data if form.kind.data in dict(KINDS) else "reminder"
    ids = _ids_from_numbers(form.numbers.data)
    today = date.today()
    if request.method == "POST" and form.validate_on_submit():
        try:
            batch = batches.start(db.session, current_user.creditor, kind, selection.flt, today=today,
                                  title=form.title.data or dict(KINDS)[kind], repeat=bool(form.repeat.data),
                                  ids=ids, actor_user_id=current_user.id)
        except batches.BatchError as exc:
            flash(str(exc), "warning")
        else:
            db.session.commit()
            flash(f"Lotto n. {batch.id} avviato: {batch.total} posizioni.", "success")
            return redirect(url_for("officer.collection_batch", batch_id=batch.id))
    found = batches.preview(db.session, current_user.creditor, kind, selection.flt, today=today,
                            repeat=bool(form.repeat.data), ids=ids)
    services = {s.id: s for s in current_user.creditor.services}
    return render_template("officer/collections_new.html", form=form, kind=kind, preview=found,
                           selection=selection, selection_fields=SELECTION_FIELDS, services=services,
                           errors=selection.errors)


@bp.route("/collections/preview.pdf")
@roles_required(*EDIT_ROLES)
def collections_preview_pdf():
    """The first letter the batch would send, as it would look (nothing is written)."""
    selection = parse_filter(request.args, scope=current_user.service_scope())
    selection.flt.overdue = True
    kind = request.args.get("kind") if request.args.get("kind") in dict(KINDS) else "reminder"
    today = date.today()
    found = batches.preview(db.session, current_user.creditor, kind, selection.flt, today=today,
                            repeat=request.args.get("repeat") == "y",
                            ids=_ids_from_numbers(request.args.get("numbers")), first=1)
    if not found.first:
        abort(404)
    plan = found.first[0]
    if kind == "reminder":
        pdf = letters.reminder_pdf(plan.position, current_user.creditor, on=today, due_date=plan.position.due_date,
                                   deadline=plan.deadline, cost_cents=0)
    else:
        pdf = letters.assessment_pdf(plan.position, plan.position, current_user.creditor, on=today,
                                     deadline=plan.deadline, breakdown=plan.breakdown.as_dicts())
    return Response(pdf, mimetype="application/pdf", headers={"Content-Disposition": "inline; filename=anteprima.pdf"})


def _batch_or_404(batch_id: int) -> CollectionBatch:
    batch = db.session.get(CollectionBatch, batch_id)
    if batch is None or batch.creditor_id != current_user.creditor_id:
        abort(404)
    return batch


@bp.route("/collections/<id32:batch_id>")
@roles_required(*ANY_ROLE)
def collection_batch(batch_id: int):
    """A batch's progress (an HTMX component polling itself while it runs) and each position's outcome."""
    batch = _batch_or_404(batch_id)
    scope = current_user.service_scope()
    query = sa.select(CollectionBatchItem).join(CollectionBatchItem.position).where(
        CollectionBatchItem.batch_id == batch.id)
    if scope is not None:
        query = query.where(Position.service_id.in_(scope or {-1}))
    items = db.session.scalars(query.order_by(CollectionBatchItem.id).limit(500)).all()
    context = {"batch": batch, "items": items, "counts": batches.counts(db.session, batch), "form": EmptyForm(),
               "outcomes": batches.OUTCOME_LABELS, "kinds": dict(KINDS)}
    if htmx and htmx.target == "batch-progress":
        response = make_response(render_template("officer/_collection_progress.html", **context))
        if batch.status != "running":  # over (or stopped) while the page watched: show the outcomes of every row
            response.headers["HX-Refresh"] = "true"
        return response
    return render_template("officer/collection_batch.html", **context)


@bp.route("/collections/<id32:batch_id>/<action>", methods=["POST"])
@roles_required(*EDIT_ROLES)
def collection_batch_action(batch_id: int, action: str):
    """Stop a running batch, or resume a stopped one (or retry the positions pagoPA could not be asked about)."""
    batch = _batch_or_404(batch_id)
    if action not in ("stop", "resume"):
        abort(404)
    if EmptyForm().validate_on_submit():
        try:
            (batches.stop if action == "stop" else batches.resume)(db.session, batch)
        except batches.BatchError as exc:
            flash(str(exc), "warning")
        else:
            db.session.commit()
            flash("Lotto fermato." if action == "stop" else "Lotto ripreso.", "success")
    return redirect(url_for("officer.collection_batch", batch_id=batch.id))


@bp.route("/collections/<id32:batch_id>/package.zip")
@roles_required(*EDIT_ROLES)
def collection_package(batch_id: int):
    """The print package of the batch's letters without a PEC or e-mail address."""
    batch = _batch_or_404(batch_id)
    if not batch.package_path or not Path(batch.package_path).exists():
        abort(404)
    return send_file(batch.package_path, mimetype="application/zip", as_attachment=True,
                     download_name=f"lotto-{batch.id}.zip")


@bp.route("/positions/<id32:position_id>/act.pdf")
@roles_required(*ANY_ROLE)
def position_act(position_id: int):
    """The assessment act of a re-issued position (breakdown and the new notice)."""
    position = get_position_or_404(position_id)
    try:
        pdf = delivery.assessment_letter(db.session, position, current_user.creditor)
    except ValueError:
        abort(404)
    return Response(pdf, mimetype="application/pdf",
                    headers={"Content-Disposition": f"inline; filename=accertamento-{position.id}.pdf"})


@bp.route("/reminders/<id32:reminder_id>.pdf")
@roles_required(*ANY_ROLE)
def reminder_letter(reminder_id: int):
    """One reminder letter as it was sent."""
    reminder = db.session.get(Reminder, reminder_id)
    if reminder is None:
        abort(404)
    get_position_or_404(reminder.position_id)
    pdf = delivery.reminder_letter(db.session, reminder, current_user.creditor)
    return Response(pdf, mimetype="application/pdf",
                    headers={"Content-Disposition": f"inline; filename=sollecito-{reminder.id}.pdf"})
