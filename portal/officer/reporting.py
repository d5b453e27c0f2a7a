"""Rendicontazione: the reporting flows (FdR) pagoPA published, their reconciliation, and its anomalies.

Thin views over :mod:`portal.ledger.reporting` and :mod:`portal.ledger.reporting_anomalies`. Everyone sees the
flows (a scoped officer sees the lines and anomalies of their services only, and no flow totals of other
services' money); operators and admins resolve anomalies with a note; admins ask for a download of the flows now.
"""

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal.accounts.models import Role
from portal.extensions import db
from portal.ledger import reporting, reporting_anomalies
from portal.officer import bp
from portal.officer.access import frozen_scope, roles_required
from portal.officer.anomalies import resolve_from_form
from portal.officer.forms import EmptyForm, ResolveAnomalyForm

TEMPLATE = "officer/reporting.html"
ANY_ROLE = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
SYNC_TASK = "sync_reporting_flows"


def _filter() -> reporting_anomalies.AnomalyFilter:
    kind = request.args.get("kind", "")
    return reporting_anomalies.AnomalyFilter(kind=kind if kind in reporting_anomalies.KINDS else "",
                                             include_resolved=request.args.get("resolved") == "1", scope=frozen_scope())


@bp.route("/reporting")
@roles_required(*ANY_ROLE)
def reporting_flows():
    """The flows, newest first, with their totals against the receipts they matched; the open anomalies below."""
    flt = _filter()
    creditor_id = current_user.creditor_id
    return render_template(
        TEMPLATE, flows=reporting.list_flows(db.session, creditor_id,
                                             include_superseded=request.args.get("superseded") == "1"),
        anomalies=reporting_anomalies.list_anomalies(db.session, creditor_id, flt),
        counts=reporting_anomalies.count_open(db.session, creditor_id, flt.scope), flt=flt,
        kinds=reporting_anomalies.KINDS, form=ResolveAnomalyForm(), sync_form=EmptyForm(),
        show_superseded=request.args.get("superseded") == "1",
        sandbox=bool(current_app.config.get("PAGOPA_SANDBOX_URL")))


@bp.route("/reporting/flows/<int:flow_id>")
@roles_required(*ANY_ROLE)
def reporting_flow(flow_id: int):
    """One flow: its header, each line and what it matched, and its anomalies."""
    flow = reporting.get_flow(db.session, current_user.creditor_id, flow_id)
    if flow is None:
        abort(404)
    flt = reporting_anomalies.AnomalyFilter(include_resolved=True, scope=frozen_scope(), flow_id=flow.id)
    return render_template("officer/reporting_flow.html", flow=flow,
                           lines=reporting.flow_lines(db.session, flow, scope=frozen_scope()),
                           anomalies=reporting_anomalies.list_anomalies(db.session, current_user.creditor_id, flt),
                           kinds=reporting_anomalies.KINDS, form=ResolveAnomalyForm())


@bp.route("/reporting/anomalies/<int:anomaly_id>/resolve", methods=["POST"])
@roles_required(Role.ADMIN, Role.OPERATOR)
def resolve_reporting_anomaly(anomaly_id: int):
    """Record what was done about one reconciliation anomaly."""
    anomaly = reporting_anomalies.get_anomaly(db.session, current_user.creditor_id, anomaly_id, frozen_scope())
    if anomaly is None:
        abort(404)
    return resolve_from_form(reporting_anomalies.resolve, anomaly, template=TEMPLATE, block="anomaly_row", name="a",
                             kinds=reporting_anomalies.KINDS, back="officer.reporting_flows")


@bp.route("/reporting/sync", methods=["POST"])
@roles_required(Role.ADMIN)
def reporting_sync():
    """Ask for a download of the new flows now (the periodic job, run at once)."""
    from portal import outbox

    if not EmptyForm().validate_on_submit():
        abort(400)
    outbox.schedule(db.session, SYNC_TASK, job_id=f"periodic-{SYNC_TASK}", created_by_id=current_user.id,
                    creditor_id=current_user.creditor_id)
    flash("Download dei flussi di rendicontazione avviato: l'esito è tra le attività.", "success")
    return redirect(url_for("officer.reporting_flows"))


@bp.route("/reporting/sandbox-publish", methods=["POST"])
@roles_required(Role.ADMIN)
def reporting_sandbox_publish():
    """Demo only (the sandbox configured): the sandbox's PSP publishes flows for what it was paid, then we fetch."""
    import requests

    from portal import outbox
    from portal.ledger.models import Creditor

    sandbox = current_app.config.get("PAGOPA_SANDBOX_URL")
    if not sandbox or not EmptyForm().validate_on_submit():
        abort(404 if not sandbox else 400)
    creditor = db.session.get(Creditor, current_user.creditor_id)
    try:
        flows = requests.post(f"{sandbox}/sandbox/fdr/publish", json={"organization": creditor.fiscal_code},
                              timeout=10).json().get("flows", [])
    except (requests.RequestException, ValueError):
        flash("La sandbox pagoPA non risponde.", "danger")
        return redirect(url_for("officer.reporting_flows"))
    outbox.schedule(db.session, SYNC_TASK, job_id=f"periodic-{SYNC_TASK}", created_by_id=current_user.id,
                    creditor_id=current_user.creditor_id)
    flash(f"La sandbox ha pubblicato {len(flows)} flussi; il download è avviato.", "success")
    return redirect(url_for("officer.reporting_flows"))


@bp.route("/reporting/export")
@roles_required(*ANY_ROLE)
def reporting_export():
    """The accounting export of a period (``from``/``to`` AAAA-MM-GG, ``by`` paid|regulation), CSV or XLSX."""
    from datetime import date

    from flask import Response, stream_with_context

    from portal.reports import exports, payments

    try:
        day_from = date.fromisoformat(request.args.get("from", ""))
        day_to = date.fromisoformat(request.args.get("to", ""))
    except ValueError:
        flash("Indicare il periodo con date valide (dal, al).", "danger")
        return redirect(url_for("officer.reporting_flows"))
    by = request.args.get("by") if request.args.get("by") in payments.BY else "paid"
    layout = payments.LAYOUTS.get(request.args.get("layout", "it"), payments.ITALIAN)
    scope = frozen_scope()
    rows = payments.payment_rows(db.session, current_user.creditor_id, day_from, day_to, by=by,
                                 service_ids=None if scope is None else set(scope))
    name = f"pagamenti_{by}_{day_from:%Y%m%d}_{day_to:%Y%m%d}"
    if request.args.get("format") == "xlsx":
        chunks, size = exports.xlsx_chunks(rows, layout=layout)
        return Response(chunks, mimetype=exports.XLSX_MIMETYPE,
                        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"',
                                 "Content-Length": str(size)})
    return Response(stream_with_context(exports.iter_csv(rows, layout=layout)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
