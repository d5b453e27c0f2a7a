"""The routes of ``/api/v1``. Thin: the ledger does the work, :mod:`portal.api.convert` translates.

Every call carries ``Authorization: Bearer <token>``; the token's name is the actor on the timeline and the
``source`` of the positions it creates (``api:<name>``), so external ids are unique per system. A position of a
service outside the token's scope, or of another creditor, is answered 404 (its existence is not revealed).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, time

import sqlalchemy as sa
from flask import Response, g, jsonify, render_template, request, url_for
from spectree import Response as Resp

from portal.accounts import api_tokens
from portal.api import bp, convert, idempotency, openapi, spec
from portal.api import schemas as s
from portal.api.limits import api_limit, limiter
from portal.api.problems import problem
from portal.extensions import db
from portal.ledger import changes, queries
from portal.ledger import services as ledger
from portal.ledger.errors import ValidationFailed
from portal.ledger.models import Creditor, Debtor, Event, PaymentOption, Position, Service
from portal.ledger.payability import not_payable_reason
from portal.ledger.status import LedgerError, PositionStatus
from portal.notices import NoticeError, render_notice
from portal.notices.render import notice_filename

log = logging.getLogger(__name__)

PUBLIC_ENDPOINTS = {"api.docs", "api.openapi_document"}
#: Endpoints that take a file (multipart/form-data) rather than JSON.
MULTIPART_ENDPOINTS = {"api.create_import"}
ERRORS = {f"HTTP_{code}": s.Problem for code in (400, 401, 403, 404, 415, 422, 429)}


def _resp(**ok) -> Resp:
    return Resp(**ok, **ERRORS)


# --- Authentication, body checks, errors -----------------------------------------------------------------------


@bp.before_request
def authenticate():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    token = api_tokens.authenticate(db.session, secret.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        return problem(401, "Token mancante, sconosciuto, scaduto o revocato.",
                       headers={"WWW-Authenticate": 'Bearer realm="paybox"'})
    g.api_token = token
    if request.method in ("POST", "PUT", "PATCH") and (request.content_length or 0) > 0 \
            and request.endpoint not in MULTIPART_ENDPOINTS:
        if request.mimetype != "application/json":
            return problem(415, "Il corpo della richiesta deve essere JSON (Content-Type: application/json).")
        try:
            json.loads(request.get_data() or b"null")
        except ValueError as exc:
            return problem(400, f"JSON non valido: {exc}.")
    return None


limiter.limit(api_limit)(bp)


@bp.after_request
def log_call(response):
    """One log line per call: which system did what, and the answer (the timeline records the changes)."""
    api_token = getattr(g, "api_token", None)
    log.info("api %s %s by %s: %s", request.method, request.path, api_token.actor if api_token else "-",
             response.status_code)
    return response


def _register_error_pages():
    for code in (400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500):
        bp.register_error_handler(code, lambda error, code=code: problem(code, _description(error)))


def _description(error) -> str | None:
    text = getattr(error, "description", None)
    return text if isinstance(text, str) and not text.startswith("<") else None


_register_error_pages()


def token() -> api_tokens.ApiToken:
    return g.api_token


def creditor() -> Creditor:
    return db.session.get(Creditor, token().creditor_id)


def _require_write() -> Response | None:
    if not token().can_write:
        return problem(403, "Il token è di sola lettura.")
    return None


def _visible(position: Position | None) -> Position | None:
    scope = token().service_scope()
    if position is None or position.creditor_id != token().creditor_id:
        return None
    if scope is not None and position.service_id not in scope:
        return None
    return position


def _not_found() -> Response:
    return problem(404, "Posizione non trovata.")


def _position_or_404(position_id: int) -> Position | Response:
    position = _visible(db.session.get(Position, position_id))
    return position if position is not None else _not_found()


def _ok(payload: dict, status: int = 200) -> tuple[dict, int]:
    return payload, status


# --- Services ----------------------------------------------------------------------------------------------------


@bp.get("/services")
@spec.validate(resp=_resp(HTTP_200=s.ServiceList), tags=["servizi"])
def list_services():
    """I servizi che il token può usare."""
    query = sa.select(Service).where(Service.creditor_id == token().creditor_id).order_by(Service.code)
    scope = token().service_scope()
    if scope is not None:
        query = query.where(Service.id.in_(scope))
    items = [{"code": x.code, "name": x.name, "active": x.active, "taxonomy_code": x.taxonomy_code,
              "iban": x.account.iban, "draft_first": x.draft_first} for x in db.session.scalars(query)]
    return {"items": items}


def _service_by_code(code: str) -> Service | None:
    service = db.session.scalar(sa.select(Service).where(Service.creditor_id == token().creditor_id,
                                                         Service.code == code.strip().upper()))
    scope = token().service_scope()
    if service is not None and scope is not None and service.id not in scope:
        return None
    return service


# --- Positions ---------------------------------------------------------------------------------------------------


@bp.post("/positions")
@spec.validate(json=s.PositionCreate, resp=_resp(HTTP_200=s.PositionOut, HTTP_201=s.PositionOut, HTTP_409=s.Problem),
               tags=["posizioni"])
def create_position(json: s.PositionCreate):
    """Crea una posizione (unica soluzione e/o rate, fino a 5 beneficiari per pagamento).

    Con ``external_id`` la chiamata è idempotente: lo stesso corpo restituisce la posizione già creata (200); lo
    stesso ``external_id`` con un corpo diverso è un 409 che elenca i campi diversi. La posizione va su pagoPA
    subito dopo (``pagopa.pending``), salvo i servizi che tengono le nuove posizioni in bozza.
    """
    refused = _require_write()
    if refused:
        return refused
    service = _service_by_code(json.service)
    if service is None:
        return problem(403 if _service_exists(json.service) else 422, "Servizio sconosciuto o non consentito al token.",
                       errors=[{"field": "service", "message": "Servizio sconosciuto o non consentito al token."}])
    data = convert.position_input(json, service_id=service.id, source=token().source, external_id=json.external_id)
    if json.external_id:
        existing = ledger.find_by_external_id(db.session, token().creditor_id, token().source,
                                              json.external_id.strip())
        if existing is not None:
            return _repeated_create(existing, data)
    try:
        position, created = ledger.create_position(db.session, creditor(), data, actor=token().actor,
                                                   visible_service_ids=token().service_scope())
    except ValidationFailed as exc:
        return _invalid(exc)
    return _ok(convert.position_json(position), 201 if created else 200)


def _service_exists(code: str) -> bool:
    return db.session.scalar(sa.select(Service.id).where(Service.creditor_id == token().creditor_id,
                                                         Service.code == code.strip().upper())) is not None


def _repeated_create(existing: Position, data) -> Response | tuple[dict, int]:
    try:
        differences = changes.compare(existing, data)
    except ValidationFailed as exc:
        return _invalid(exc)
    if differences:
        fields = sorted({convert.ledger_path(c.field) for c in differences})
        return problem(409, "Esiste già una posizione con questo external_id, con dati diversi.",
                       differences=fields, position_id=existing.id)
    return _ok(convert.position_json(existing), 200)


def _invalid(exc: ValidationFailed) -> Response:
    return problem(422, "Alcuni campi non sono validi: vedere «errors».", errors=convert.ledger_errors(exc.errors))


@bp.get("/positions")
@spec.validate(query=s.PositionQuery, resp=_resp(HTTP_200=s.PositionPage), tags=["posizioni"])
def list_positions(query: s.PositionQuery):
    """Elenco delle posizioni, dalle più recenti, a pagine (``next_cursor`` → ``cursor``)."""
    flt = queries.PositionFilter(scope=token().service_scope())
    if query.service:
        service = _service_by_code(query.service)
        if service is None:
            return {"items": [], "next_cursor": None}
        flt.service_id = service.id
    if query.status:
        flt.status = PositionStatus(query.status)
    flt.due_from, flt.due_to = query.due_from, query.due_to
    if query.debtor_fiscal_code:
        flt.debtor = query.debtor_fiscal_code
    ids = queries.matching_ids(token().creditor_id, flt, datetime.now().date())
    if query.created_from:
        ids = ids.where(Position.created_at >= _start_of(query.created_from))
    if query.created_to:
        ids = ids.where(Position.created_at < _start_of(query.created_to, days=1))
    if query.updated_since:
        since = query.updated_since
        if since.tzinfo is None:
            from portal.formatting import ROME

            since = since.replace(tzinfo=ROME)
        ids = ids.where(Position.updated_at >= since)
    if query.cursor:
        ids = ids.where(Position.id < query.cursor)
    ids = ids.order_by(Position.id.desc()).limit(query.limit + 1)
    rows = list(db.session.scalars(sa.select(Position).where(Position.id.in_(ids.scalar_subquery()))
                                   .order_by(Position.id.desc())))
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    return {"items": [convert.position_json(p) for p in rows], "next_cursor": rows[-1].id if more and rows else None}


def _start_of(day, days: int = 0) -> datetime:
    from datetime import timedelta

    from portal.formatting import ROME

    return datetime.combine(day + timedelta(days=days), time.min, tzinfo=ROME)


@bp.get("/positions/<int:position_id>")
@spec.validate(resp=_resp(HTTP_200=s.PositionOut), tags=["posizioni"])
def get_position(position_id: int):
    """Una posizione, con le sue opzioni di pagamento, i beneficiari e lo stato su pagoPA."""
    position = _position_or_404(position_id)
    return position if isinstance(position, Response) else convert.position_json(position)


@bp.get("/positions/iupd/<string:iupd>")
@spec.validate(resp=_resp(HTTP_200=s.PositionOut), tags=["posizioni"])
def get_position_by_iupd(iupd: str):
    """Una posizione dal suo identificativo pagoPA (IUPD)."""
    position = _visible(db.session.scalar(sa.select(Position).where(Position.iupd == iupd[:64])))
    return convert.position_json(position) if position else _not_found()


@bp.get("/positions/external/<path:external_id>")
@spec.validate(resp=_resp(HTTP_200=s.PositionOut), tags=["posizioni"])
def get_position_by_external_id(external_id: str):
    """Una posizione dall'identificativo che le ha dato il sistema del token (``external_id``)."""
    position = _visible(ledger.find_by_external_id(db.session, token().creditor_id, token().source,
                                                   external_id[:100]))
    return convert.position_json(position) if position else _not_found()


@bp.get("/positions/notice/<string:notice_number>")
@spec.validate(resp=_resp(HTTP_200=s.PositionOut), tags=["posizioni"])
def get_position_by_notice(notice_number: str):
    """Una posizione dal codice avviso (18 cifre) di una sua opzione."""
    digits = "".join(ch for ch in notice_number if ch.isdigit())[:18]
    position_id = db.session.scalar(sa.select(PaymentOption.position_id).where(
        PaymentOption.creditor_id == token().creditor_id, PaymentOption.notice_number == digits))
    position = _visible(db.session.get(Position, position_id)) if position_id else None
    return convert.position_json(position) if position else _not_found()


@bp.put("/positions/<int:position_id>")
@spec.validate(json=s.PositionUpdate, resp=_resp(HTTP_200=s.PositionOut, HTTP_409=s.Problem), tags=["posizioni"])
def update_position(position_id: int, json: s.PositionUpdate):
    """Sostituisce il contenuto di una posizione di cui nulla è stato pagato: una nuova versione va a pagoPA.

    I codici avviso delle opzioni che restano non cambiano; il corpo uguale a quanto già registrato non cambia nulla.
    """
    refused = _require_write()
    if refused:
        return refused
    position = _position_or_404(position_id)
    if isinstance(position, Response):
        return position
    data = convert.position_input(json, service_id=position.service_id, source=position.source,
                                  external_id=position.external_id)
    try:
        changes.update_position(db.session, position, data, actor=token().actor, reason=json.reason,
                                visible_service_ids=token().service_scope())
    except changes.ChangeRefused as exc:
        return problem(409, str(exc))
    except ValidationFailed as exc:
        return _invalid(exc)
    return convert.position_json(position)


@bp.post("/positions/<int:position_id>/abatement")
@spec.validate(json=s.AbatementIn, resp=_resp(HTTP_200=s.PositionOut, HTTP_409=s.Problem), tags=["posizioni"])
def abate_position(position_id: int, json: s.AbatementIn):
    """Sgravio: riduce l'importo ancora dovuto (per intero: la posizione è annullata). Con ``Idempotency-Key``."""
    return _idempotent(lambda position: _abate(position, json), position_id)


def _abate(position: Position, body: s.AbatementIn):
    try:
        changes.abate_position(db.session, position, body.amount_cents, reason=body.reason, actor=token().actor)
    except changes.ChangeRefused as exc:
        return problem(409, str(exc))
    except ValidationFailed as exc:
        return _invalid(exc)
    return convert.position_json(position), 200


@bp.post("/positions/<int:position_id>/cancel")
@spec.validate(json=s.CancelIn, resp=_resp(HTTP_200=s.PositionOut, HTTP_409=s.Problem), tags=["posizioni"])
def cancel_position(position_id: int, json: s.CancelIn):
    """Annulla la posizione, con un motivo; su pagoPA non è più pagabile. Con ``Idempotency-Key``."""
    return _idempotent(lambda position: _cancel(position, json), position_id)


def _cancel(position: Position, body: s.CancelIn):
    try:
        ledger.cancel_position(db.session, position, reason=body.reason, actor=token().actor)
    except LedgerError:  # InvalidTransition, IgnoredTransition
        return problem(409, "La posizione non si può annullare nel suo stato (pagata, già annullata o chiusa).")
    except ValueError as exc:  # a reason of blanks only
        return problem(422, str(exc), errors=[{"field": "reason", "message": str(exc)}])
    return convert.position_json(position), 200


def _idempotent(action, position_id: int):
    """Run ``action(position)`` once per ``Idempotency-Key`` (see :func:`_idempotent_call`)."""
    def run():
        position = _position_or_404(position_id)
        return position if isinstance(position, Response) else action(position)

    return _idempotent_call(run)


def _idempotent_call(action):
    """Run ``action()`` once per ``Idempotency-Key`` (when given): a repeat gets the first answer again.

    ``action`` returns a problem :class:`Response` (not stored: the caller may fix and retry) or ``(payload,
    status)``, stored with the key in the same transaction as the change.
    """
    refused = _require_write()
    if refused:
        return refused
    key = (request.headers.get("Idempotency-Key") or "").strip()
    if len(key) > idempotency.KEY_MAX:
        return problem(400, f"Idempotency-Key può avere al massimo {idempotency.KEY_MAX} caratteri.")
    digest = idempotency.request_hash(request.method, request.path, request.get_data())
    if key:
        stored = idempotency.lookup(db.session, token().id, key, digest)
        if stored is not None:
            if not stored.same_request:
                return problem(422, "Questa Idempotency-Key è già stata usata per una richiesta diversa.")
            return Response(stored.body, status=stored.status, mimetype="application/json",
                            headers={"Idempotent-Replayed": "true"})
    result = action()
    if isinstance(result, Response):
        return result
    payload, status = result
    if key:
        idempotency.remember(db.session, token().id, key, digest, status, json.dumps(payload, default=str))
    return payload, status


@bp.get("/positions/<int:position_id>/notice.pdf")
@spec.validate(resp=Resp(HTTP_200=None, HTTP_409=s.Problem, **ERRORS), tags=["posizioni"])
def position_notice(position_id: int):
    """L'avviso di pagamento pagoPA (PDF con QR code e, se c'è il conto postale, il bollettino)."""
    position = _position_or_404(position_id)
    if isinstance(position, Response):
        return position
    reason = not_payable_reason(position)
    if reason:
        return problem(409, reason)
    try:
        pdf = render_notice(position, creditor=creditor())
    except NoticeError as exc:
        return problem(409, str(exc))
    return Response(pdf, mimetype="application/pdf",
                    headers={"Content-Disposition": f"attachment; filename={notice_filename(position)}"})


@bp.get("/positions/<int:position_id>/events")
@spec.validate(resp=_resp(HTTP_200=s.EventList), tags=["posizioni"])
def position_events(position_id: int):
    """La cronologia della posizione: ogni evento, chi e quando, con i dettagli."""
    from portal.officer.timeline import sentence

    position = _position_or_404(position_id)
    if isinstance(position, Response):
        return position
    events = db.session.scalars(sa.select(Event).where(Event.position_id == position.id).order_by(Event.id))
    return {"items": [{"id": e.id, "kind": e.kind, "at": e.at.isoformat(), "actor": e.actor,
                       "description": sentence(e.kind), "details": e.details or {}} for e in events]}


# --- Debtors -----------------------------------------------------------------------------------------------------


@bp.get("/debtors/<string:fiscal_code>")
@spec.validate(resp=_resp(HTTP_200=s.DebtorPositions), tags=["debitori"])
def get_debtor(fiscal_code: str):
    """Un debitore, dal codice fiscale o dalla partita IVA, con tutte le sue posizioni visibili al token."""
    summary = queries.citizen_summary(db.session, token().creditor_id, fiscal_code[:20],
                                      scope=token().service_scope())
    if summary.debtor is None:
        return problem(404, "Nessuna posizione per questo codice fiscale.")
    debtor: Debtor = summary.debtor
    return {"debtor": {name: getattr(debtor, name) for name in s.DebtorOut.model_fields},
            "positions": [convert.position_json(p) for p in summary.positions],
            "due_cents": summary.due_cents, "paid_cents": summary.paid_cents, "overdue_cents": summary.overdue_cents}


# --- The document's page -------------------------------------------------------------------------------------------


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 document, generated by SpecTree from the routes and models (public, like the docs page)."""
    return jsonify(openapi.document(spec.spec))


@bp.get("/docs")
def docs():
    """The OpenAPI document, readable (Swagger UI from npm, served from static/vendor)."""
    return render_template("api/docs.html", spec_url=url_for("api.openapi_document"))
