"""The positions list and its export, the position page and the citizen page of the back office.

Views parse the query string, check scope, call :mod:`portal.ledger.queries` or :mod:`portal.reports.exports`
and render. The list is one URL for the full page and for its HTMX fragments (filtered results, next rows).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from flask import Response, abort, current_app, flash, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user
from jinja2_fragments.flask import render_block, render_blocks
from sqlalchemy.orm import selectinload

from portal.accounts.models import Role, User
from portal.citizen_payments.status import form_answers
from portal.extensions import db, htmx
from portal.formatting import parse_date_input, status_label
from portal.ledger import changes, offline_payments, queries
from portal.ledger import services as ledger
from portal.ledger.identifiers import IdentifierError, validate_debtor_fiscal_code
from portal.ledger.models import Event, PaymentOption, Receipt
from portal.ledger.notice_numbers import normalize_nav
from portal.ledger.payability import not_payable_reason
from portal.ledger.publishing import is_publishable_draft
from portal.ledger.status import (
    OPEN_STATUSES,
    TRANSITIONS,
    InvalidTransition,
    PositionStatus,
)
from portal.money import AmountError, parse_euro
from portal.notices.delivery import deliveries_of
from portal.officer import bp
from portal.officer.access import get_position_or_404, roles_required, visible_services
from portal.officer.forms import AbatePositionForm, CancelPositionForm, EmptyForm, ReversePaymentForm, flash_errors
from portal.officer.timeline import describe_event
from portal.reports import exports
from portal.routing import parse_id

ANY_ROLE = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)

#: The query-string fields of the positions filter, in the order links repeat them.
FILTER_FIELDS = ("service_id", "status", "due_from", "due_to", "debtor", "number", "amount_min", "amount_max",
                 "overdue", "import_id")


# --- Filter parsing (plain Python: a mapping in, a filter and Italian messages out) -----------------------------


@dataclass
class FilterForm:
    """The positions filter as typed (to show it again), as understood, and what could not be understood."""

    values: dict[str, str]
    flt: queries.PositionFilter
    errors: dict[str, str] = field(default_factory=dict)

    def query_args(self) -> dict[str, str]:
        """The non-empty fields, for links that keep the filter (export, next rows)."""
        return {name: value for name, value in self.values.items() if value and name not in self.errors}


def parse_filter(args: Mapping[str, str], *, scope: set[int] | None) -> FilterForm:
    """Read the positions filter from query-string ``args``; a field that is not valid is reported and ignored."""
    values = {name: (args.get(name) or "").strip() for name in FILTER_FIELDS}
    values["overdue"] = "1" if values["overdue"] in ("1", "on", "true") else ""
    flt = queries.PositionFilter(scope=scope, overdue=bool(values["overdue"]))
    errors: dict[str, str] = {}

    if values["service_id"]:
        flt.service_id = parse_id(values["service_id"])
        if flt.service_id is None:
            errors["service_id"] = "Servizio non valido."
    if values["import_id"]:
        flt.import_id = parse_id(values["import_id"])
        if flt.import_id is None:
            errors["import_id"] = "Importazione non valida."
    if values["status"]:
        try:
            flt.status = PositionStatus(values["status"])
        except ValueError:
            errors["status"] = "Stato non valido."
    for name in ("due_from", "due_to"):
        if values[name]:
            parsed = parse_date_input(values[name])
            if parsed is None:
                errors[name] = "Data non valida: usare il formato gg/mm/aaaa."
            setattr(flt, name, parsed)
    if flt.due_from and flt.due_to and flt.due_from > flt.due_to:
        errors["due_to"] = "La data finale precede quella iniziale."
        flt.due_to = None
    if values["debtor"]:
        flt.debtor = values["debtor"]
    if values["number"]:
        digits = normalize_nav(values["number"])
        if len(digits) in (17, 18) and not re.search(r"[^\d\s-]", values["number"]):
            flt.number = digits
        else:
            errors["number"] = "Indicare lo IUV (17 cifre) o il codice avviso (18 cifre)."
    for name in ("amount_min", "amount_max"):
        if values[name]:
            try:
                setattr(flt, name, parse_euro(values[name], allow_zero=True))
            except AmountError as exc:
                errors[name] = str(exc)
    if flt.amount_min is not None and flt.amount_max is not None and flt.amount_min > flt.amount_max:
        errors["amount_max"] = "L'importo massimo è minore del minimo."
        flt.amount_max = None
    return FilterForm(values=values, flt=flt, errors=errors)


def _int_arg(name: str) -> int | None:
    """A cursor or a count of the query string; ``None`` when it is missing or not one (past int64 too)."""
    return parse_id(request.args.get(name))


# --- The list ---------------------------------------------------------------------------------------------------


@bp.route("/positions")
@roles_required(*ANY_ROLE)
def positions():
    """The filtered positions list, newest first, a page at a time ("Carica altre" appends the next rows)."""
    form = parse_filter(request.args, scope=current_user.service_scope())
    after = _int_arg("after")
    shown_before = (_int_arg("shown") or 0) if after is not None else 0
    size = current_app.config["POSITIONS_PAGE_SIZE"]
    page = queries.list_positions(db.session, current_user.creditor_id, form.flt, after=after, limit=size,
                                  today=date.today())
    exports.attach_options(db.session, page.items)
    shown = shown_before + len(page.items)
    more_url = None
    if page.next_cursor is not None:
        more_url = url_for("officer.positions", **form.query_args(), after=page.next_cursor, shown=shown)
    context = {
        "form": form,
        "page": page,
        "total": queries.count_positions(db.session, current_user.creditor_id, form.flt, today=date.today()),
        "after": after,
        "first_shown": shown_before + 1,
        "shown": shown,
        "more_url": more_url,
        "services": visible_services(),
        "statuses": list(PositionStatus),
        "today": date.today(),
        "open_statuses": OPEN_STATUSES,
    }
    if htmx and not htmx.history_restore_request:
        if after is not None:
            # "Carica altre": only the next rows (and the new count, out of band).
            return render_blocks("officer/positions.html", ["rows", "count"], append=True, oob=True, **context)
        # The filter form: the results; the form (values and errors as understood) and the count out of band.
        return render_blocks("officer/positions.html", ["results", "filter_form", "count"], oob=True, **context)
    return render_template("officer/positions.html", **context)


@bp.route("/positions/export")
@roles_required(*ANY_ROLE)
def positions_export():
    """Download the filtered list, one row per payment option, as CSV (streamed) or XLSX."""
    kind = request.args.get("format", "csv")
    layout = exports.LAYOUTS.get(request.args.get("layout", "it"))
    if kind not in ("csv", "xlsx") or layout is None:
        abort(400)
    form = parse_filter(request.args, scope=current_user.service_scope())
    # Read everything the export needs from the user now: batches expunge the session while rows are written.
    creditor_id = current_user.creditor_id
    today = date.today()
    filename = f"posizioni-{today:%Y%m%d}{'' if layout is exports.ITALIAN else '-dati'}.{kind}"
    rows = exports.export_rows(db.session, creditor_id, form.flt, today=today)
    if kind == "csv":
        return Response(
            stream_with_context(exports.iter_csv(rows, layout=layout)),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
        )
    chunks, size = exports.xlsx_chunks(rows, layout=layout)
    return Response(
        chunks,
        mimetype=exports.XLSX_MIMETYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Content-Length": str(size),
                 "Cache-Control": "no-store"},
    )


# --- The position page ------------------------------------------------------------------------------------------

@bp.route("/positions/<int:position_id>")
@roles_required(*ANY_ROLE)
def position(position_id: int):
    """One position: amounts, payment options with their transfers, and its timeline (its whole life, event by
    event: created, loaded on pagoPA, notice issued, paid with the receipt's references)."""
    item = get_position_or_404(position_id)
    if htmx and htmx.target == "position-sync":
        if not item.sync_pending:
            # pagoPA confirmed: reload the whole page, so the status, timeline and options show it too.
            return Response(status=204, headers={"HX-Refresh": "true"})
        return render_block("officer/position.html", "sync", position=item)
    options = db.session.scalars(
        sa.select(PaymentOption)
        .where(PaymentOption.position_id == item.id)
        .options(selectinload(PaymentOption.transfers))
        .order_by(PaymentOption.id)
    ).all()
    events = db.session.scalars(sa.select(Event).where(Event.position_id == item.id).order_by(Event.at, Event.id)).all()
    user_ids = {e.actor_user_id for e in events if e.actor_user_id is not None}
    user_names = dict(db.session.execute(sa.select(User.id, User.full_name).where(User.id.in_(user_ids))).all()) \
        if user_ids else {}
    receipts = {r.option_id: r for r in db.session.scalars(sa.select(Receipt).where(Receipt.position_id == item.id))}
    outside = offline_payments.of_position(db.session, item.id)
    notice_unavailable = not_payable_reason(item)
    can_email = current_user.can_edit and item.debtor.email and notice_unavailable is None
    return render_template(
        "officer/position.html",
        position=item,
        options=options,
        receipts=receipts,
        outside=outside,
        outside_by_option={p.option_id: p for p in outside if p.reversed_at is None},
        outside_refusals={p.id: offline_payments.reversal_refusal(p) for p in outside},
        record_outside=current_user.can_edit and bool(offline_payments.payable_options(item)),
        reverse_form=ReversePaymentForm() if current_user.can_edit else None,
        sandbox_url=current_app.config.get("PAGOPA_SANDBOX_URL"),
        cancel_form=CancelPositionForm() if _cancellable(item) else None,
        email_form=EmptyForm() if can_email else None,
        publish_form=EmptyForm() if current_user.can_edit and is_publishable_draft(item) else None,
        can_modify=current_user.can_edit and changes.edit_refusal(item) is None,
        abate_form=AbatePositionForm() if current_user.can_edit and changes.abatement_refusal(item) is None else None,
        owed_cents=changes.owed_cents(item),
        notice_unavailable=notice_unavailable,
        deliveries=deliveries_of(db.session, item.id),
        citizen_form=form_answers(db.session, item.id) if item.source == "citizen" else None,
        timeline=[describe_event(e, user_names) for e in events],
        remaining_cents=max(item.amount_cents - item.paid_cents, 0) if item.status in OPEN_STATUSES else 0,
        overdue=item.status in OPEN_STATUSES and item.due_date < date.today(),
    )


def _cancellable(position) -> bool:
    """Whether the current officer may cancel this position now."""
    return current_user.can_edit and PositionStatus.CANCELLED in TRANSITIONS[position.status]


@bp.route("/positions/<int:position_id>/cancel", methods=["POST"])
@roles_required(Role.ADMIN, Role.OPERATOR)
def cancel_position(position_id: int):
    """Cancel a credit with a reason; pagoPA is asked to invalidate it after the commit."""
    item = get_position_or_404(position_id)
    form = CancelPositionForm()
    if not form.validate_on_submit():
        flash_errors(form)
        return redirect(url_for("officer.position", position_id=item.id), code=303)
    try:
        ledger.cancel_position(db.session, item, reason=form.reason.data, actor=current_user.actor,
                               actor_user_id=current_user.id)
    except InvalidTransition:
        flash(f"La posizione è {status_label(item.status).lower()}: non può essere annullata.", "error")
        return redirect(url_for("officer.position", position_id=item.id), code=303)
    flash("Posizione annullata. pagoPA riceverà l'annullamento a breve.", "success")
    return redirect(url_for("officer.position", position_id=item.id), code=303)


# --- The citizen page -------------------------------------------------------------------------------------------


@bp.route("/citizen")
@roles_required(*ANY_ROLE)
def citizen():
    """Everything one codice fiscale owes in the officer's scope, with the totals due, paid and overdue."""
    raw = (request.args.get("cf") or "").strip()
    error = summary = None
    code = ""
    if raw:
        try:
            code, _kind = validate_debtor_fiscal_code(raw)
        except IdentifierError as exc:
            error = str(exc)
        else:
            summary = queries.citizen_summary(db.session, current_user.creditor_id, code,
                                              scope=current_user.service_scope(), today=date.today())
            if not summary.positions:
                # No position in scope: the debtor's data is not shown either.
                summary = None
    return render_template("officer/citizen.html", cf=raw, code=code, error=error, summary=summary,
                           today=date.today(), open_statuses=OPEN_STATUSES)

