"""``/api/v1/imports``: a municipal system uploads a bill run, reads its dry run, confirms it and follows it.

The same code path as the back office's *Importazioni* (:mod:`portal.imports.services`): upload → dry run (a job)
→ confirm (``Idempotency-Key``) → import (a job) → positions to pagoPA through the sync.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Response, current_app, request
from spectree import Response as Resp

from portal.api import bp, spec
from portal.api import schemas as s
from portal.api.problems import problem
from portal.api.views import ERRORS, _idempotent_call, _require_write, _resp, creditor, token
from portal.extensions import db
from portal.imports import services as imports
from portal.imports.models import Import
from portal.jobs.models import JobRecord
from portal.ledger.models import Service

UPLOAD_ENDPOINT = "api.create_import"


def _settings() -> imports.ImportSettings:
    return imports.ImportSettings.from_config(current_app.config)


def _visible(imp: Import | None) -> Import | None:
    scope = token().service_scope()
    if imp is None or imp.creditor_id != token().creditor_id:
        return None
    if scope is not None and imp.service_id not in scope:
        return None
    return imp


def _import_or_404(import_id: int) -> Import | Response:
    imp = _visible(db.session.get(Import, import_id))
    return imp if imp is not None else problem(404, "Importazione non trovata.")


def _job(imp: Import) -> dict | None:
    ids = [imports.job_id(imp.id, step) for step in ("check", "run", "cancel")]
    record = db.session.scalar(sa.select(JobRecord).where(JobRecord.rq_id.in_(ids)).order_by(JobRecord.id.desc())
                               .limit(1))
    if record is None:
        return None
    return {"step": record.rq_id.rsplit("-", 1)[1], "status": record.status, "progress": record.progress or 0,
            "total": record.total}


def import_json(imp: Import) -> dict:
    counts = imports.pagopa_counts(db.session, imp.id)
    return {
        "id": imp.id, "service": imp.service.code, "filename": imp.filename, "file_size": imp.file_size,
        "file_format": imp.file_format, "status": imp.status, "valid_rows_only": imp.valid_rows_only,
        "update_existing": imp.update_existing,
        **{name: getattr(imp, name) for name in ("rows_total", "rows_refused", "error_count", "positions_new",
                                                 "positions_updated", "positions_unchanged", "positions_refused",
                                                 "imported", "message")},
        "totals": imp.totals or {}, "confirmable": imp.confirmable, "refusal": imports.refusal(imp),
        **{name: getattr(imp, name).isoformat() if getattr(imp, name) else None
           for name in ("created_at", "checked_at", "confirmed_at", "finished_at", "cancelled_at")},
        "job": _job(imp),
        "pagopa": {"total": counts.total, "on_pagopa": counts.on_pagopa, "pending": counts.pending,
                   "failing": counts.failing, "cancelled": counts.cancelled},
    }


def _flag(name: str) -> bool:
    return (request.form.get(name) or "").strip().lower() in ("1", "true", "yes", "si", "sì", "on")


@bp.post("/imports")
@spec.validate(resp=_resp(HTTP_202=s.ImportOut, HTTP_413=s.Problem), tags=["importazioni"])
def create_import():
    """Carica un file (CSV o XLSX, campo ``file``) per un servizio (campo ``service``): parte la verifica.

    Campi facoltativi ``valid_rows_only`` e ``update_existing`` (``true``/``false``). La verifica è un'attività in
    background: seguirla con ``GET /imports/{id}`` (``status`` passa da ``checking`` a ``checked``).
    """
    refused = _require_write()
    if refused:
        return refused
    upload = request.files.get("file")
    code = (request.form.get("service") or "").strip().upper()
    errors = []
    if upload is None or not upload.filename:
        errors.append({"field": "file", "message": "Allegare il file da importare (campo «file»)."})
    service = db.session.scalar(sa.select(Service).where(Service.creditor_id == token().creditor_id,
                                                         Service.code == code)) if code else None
    scope = token().service_scope()
    if service is None:
        errors.append({"field": "service", "message": "Servizio sconosciuto."})
    elif scope is not None and service.id not in scope:
        return problem(403, "Il token non può usare questo servizio.")
    if errors:
        return problem(422, "Alcuni campi non sono validi: vedere «errors».", errors=errors)
    options = imports.ImportOptions(valid_rows_only=_flag("valid_rows_only"), update_existing=_flag("update_existing"))
    try:
        imp = imports.create_import(db.session, creditor(), service, upload.filename, upload.stream, options,
                                    actor=token().actor, settings=_settings())
    except imports.ImportRefused as exc:
        return problem(422, str(exc), errors=[{"field": "file", "message": str(exc)}])
    return import_json(imp), 202


@bp.get("/imports/<id32:import_id>")
@spec.validate(resp=_resp(HTTP_200=s.ImportOut), tags=["importazioni"])
def get_import(import_id: int):
    """Un'importazione: lo stato, le cifre della verifica, se si può confermare e perché no, l'avanzamento."""
    imp = _import_or_404(import_id)
    return imp if isinstance(imp, Response) else import_json(imp)


@bp.get("/imports/<id32:import_id>/errors")
@spec.validate(query=s.ErrorsQuery, resp=_resp(HTTP_200=s.ImportErrors), tags=["importazioni"])
def import_errors(import_id: int, query: s.ErrorsQuery):
    """Il rapporto riga per riga della verifica: numero di riga, colonna, chiave della posizione, messaggio."""
    imp = _import_or_404(import_id)
    if isinstance(imp, Response):
        return imp
    rows = imports.report_rows(db.session, imp.id, after=query.cursor, limit=query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    return {"items": [{"row": r.row_number, "column": r.column, "key": r.key, "message": r.message} for r in rows],
            "next_cursor": rows[-1].id if more and rows else None}


@bp.get("/imports/<id32:import_id>/errors.csv")
@spec.validate(resp=Resp(HTTP_200=None, **ERRORS), tags=["importazioni"])
def import_errors_csv(import_id: int):
    """Lo stesso rapporto come CSV (``;``, UTF-8 con BOM), da aprire con un foglio di calcolo."""
    imp = _import_or_404(import_id)
    if isinstance(imp, Response):
        return imp
    return Response(imports.report_csv(db.session, imp.id), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename=importazione-{imp.id}-errori.csv"})


@bp.post("/imports/<id32:import_id>/confirm")
@spec.validate(resp=_resp(HTTP_202=s.ImportOut, HTTP_409=s.Problem), tags=["importazioni"])
def confirm_import(import_id: int):
    """Conferma l'importazione verificata: parte la scrittura delle posizioni. Con ``Idempotency-Key``."""
    return _idempotent_call(lambda: _confirm(import_id))


def _confirm(import_id: int):
    imp = _import_or_404(import_id)
    if isinstance(imp, Response):
        return imp
    try:
        imp = imports.confirm(db.session, imp.id, actor=token().actor)
    except imports.ImportRefused as exc:
        return problem(409, str(exc))
    return import_json(imp), 202


@bp.post("/imports/<id32:import_id>/cancel")
@spec.validate(resp=_resp(HTTP_200=s.ImportOut, HTTP_409=s.Problem), tags=["importazioni"])
def cancel_import(import_id: int):
    """Annulla un'importazione non ancora confermata (il file e il rapporto restano)."""
    refused = _require_write()
    if refused:
        return refused
    imp = _import_or_404(import_id)
    if isinstance(imp, Response):
        return imp
    try:
        imp = imports.cancel_import(db.session, imp.id)
    except imports.ImportRefused as exc:
        return problem(409, str(exc))
    return import_json(imp)


@bp.post("/imports/<id32:import_id>/cancel-positions")
@spec.validate(json=s.ImportCancelPositions, resp=_resp(HTTP_202=s.Accepted, HTTP_409=s.Problem),
               tags=["importazioni"])
def cancel_import_positions(import_id: int, json: s.ImportCancelPositions):
    """Annulla, con un motivo, tutte le posizioni importate non ancora pagate (un'attività in background)."""
    def cancel():
        imp = _import_or_404(import_id)
        if isinstance(imp, Response):
            return imp
        try:
            count = imports.request_cancel_positions(db.session, imp.id, reason=json.reason, actor=token().actor)
        except imports.ImportRefused as exc:
            return problem(409, str(exc))
        return {"import_id": imp.id, "positions": count}, 202

    return _idempotent_call(cancel)

