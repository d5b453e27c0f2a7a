"""``/api/v1`` for the Comune's accounting: payments outside pagoPA on a position (record, reverse, list), the
webhook delivery log (read, send again) and the accounting export (CSV or XLSX, streamed).

The same code paths as the back office: :mod:`portal.ledger.offline_payments`, :mod:`portal.webhooks.services`,
:mod:`portal.reports.payments`. Reading needs a token, changing a write token; a scoped token sees the positions,
deliveries and export rows of its services only.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Response, stream_with_context
from spectree import Response as Resp

from portal.api import bp, spec
from portal.api import schemas as s
from portal.api.problems import problem
from portal.api.views import ERRORS, _idempotent, _position_or_404, _require_write, _resp, token
from portal.extensions import db
from portal.ledger import offline_payments as offline
from portal.ledger.errors import ValidationFailed
from portal.ledger.models import OfflinePayment, PaymentOption, Position
from portal.ledger.notice_numbers import normalize_nav
from portal.reports import exports, payments
from portal.webhooks import services as webhooks
from portal.webhooks.models import PENDING, WebhookDelivery

#: The ledger's names of the fields (``portal.ledger.offline_payments``) → the body's.
FIELDS = {"option": "notice_number", "amount": "amount_cents"}


# --- Payments outside pagoPA ---------------------------------------------------------------------------------------


def payment_json(payment: OfflinePayment) -> dict:
    option = payment.option
    return {
        "id": payment.id, "position_id": payment.position_id, "notice_number": option.notice_number,
        "installment_number": option.installment_number, "channel": payment.channel, "reference": payment.reference,
        "amount_cents": payment.amount_cents, "option_amount_cents": payment.option_amount_cents,
        "paid_on": payment.paid_on.isoformat(), "recorded_at": payment.recorded_at.isoformat(),
        "recorded_by": payment.recorded_by, "flag": payment.flag,
        "pagopa_notified_at": _iso(payment.pagopa_notified_at),
        "reversible": offline.reversal_refusal(payment) is None, "reversed_at": _iso(payment.reversed_at),
        "reversed_by": payment.reversed_by, "reversal_reason": payment.reversal_reason,
        "position_status": payment.position.status.value,
    }


def _iso(value):
    return value.isoformat() if value is not None else None


@bp.get("/positions/<int:position_id>/offline-payments")
@spec.validate(resp=_resp(HTTP_200=s.OfflinePaymentList), tags=["pagamenti fuori pagoPA"])
def list_offline_payments(position_id: int):
    """I pagamenti fuori pagoPA (sportello, bonifico, F24) di una posizione, anche quelli annullati."""
    position = _position_or_404(position_id)
    if isinstance(position, Response):
        return position
    return {"items": [payment_json(p) for p in offline.of_position(db.session, position.id)]}


@bp.post("/positions/<int:position_id>/offline-payments")
@spec.validate(json=s.OfflinePaymentIn, resp=_resp(HTTP_201=s.OfflinePaymentOut, HTTP_409=s.Problem),
               tags=["pagamenti fuori pagoPA"])
def record_offline_payment(position_id: int, json: s.OfflinePaymentIn):
    """Registra un pagamento fuori pagoPA (sportello, bonifico, F24) su un'opzione della posizione.

    L'opzione risulta pagata e pagoPA ne è informato subito dopo (l'avviso non è più pagabile). Un importo diverso
    dal dovuto va confermato (``accept_amount_mismatch``) e resta tra le anomalie. Con ``Idempotency-Key``.
    """
    return _idempotent(lambda position: _record(position, json), position_id)


def _record(position: Position, body: s.OfflinePaymentIn):
    nav = normalize_nav(body.notice_number)
    option_id = db.session.scalar(sa.select(PaymentOption.id).where(PaymentOption.position_id == position.id,
                                                                    PaymentOption.notice_number == nav))
    data = offline.OfflinePaymentInput(option_id=option_id, paid_on=body.paid_on, channel=body.channel,
                                       reference=body.reference, amount_cents=body.amount_cents,
                                       accept_amount_mismatch=body.accept_amount_mismatch)
    try:
        payment = offline.record(db.session, position.id, data, actor=token().actor)
    except ValidationFailed as exc:
        return problem(422, "Alcuni campi non sono validi: vedere «errors».",
                       errors=[{"field": FIELDS.get(e.field, e.field), "message": e.message} for e in exc.errors])
    except offline.OfflinePaymentRefused as exc:
        return problem(409, str(exc))
    return payment_json(payment), 201


@bp.post("/positions/<int:position_id>/offline-payments/<int:payment_id>/reverse")
@spec.validate(json=s.ReverseIn, resp=_resp(HTTP_200=s.OfflinePaymentOut, HTTP_409=s.Problem),
               tags=["pagamenti fuori pagoPA"])
def reverse_offline_payment(position_id: int, payment_id: int, json: s.ReverseIn):
    """Annulla un pagamento fuori pagoPA registrato per errore, con un motivo.

    Solo finché pagoPA non ne è stato informato (``reversible``): dopo è un 409. L'opzione torna da pagare, la
    posizione allo stato di prima. Con ``Idempotency-Key``.
    """
    return _idempotent(lambda position: _reverse(position, payment_id, json), position_id)


def _reverse(position: Position, payment_id: int, body: s.ReverseIn):
    payment = offline.get(db.session, token().creditor_id, payment_id)
    if payment is None or payment.position_id != position.id:
        return problem(404, "Pagamento non trovato.")
    try:
        payment = offline.reverse(db.session, payment.id, reason=body.reason, actor=token().actor)
    except offline.OfflinePaymentRefused as exc:
        return problem(409, str(exc))
    except ValueError as exc:  # a reason of blanks only
        return problem(422, str(exc), errors=[{"field": "reason", "message": str(exc)}])
    return payment_json(payment), 200


# --- The webhook delivery log ----------------------------------------------------------------------------------------


def delivery_json(delivery: WebhookDelivery) -> dict:
    return {
        "id": delivery.id, "subscriber_id": delivery.subscriber_id, "subscriber_url": delivery.subscriber.url,
        "event_id": delivery.event.event_id, "event": delivery.event.name, "position_id": delivery.position_id,
        "status": delivery.status, "attempts": delivery.attempts, "last_attempt_at": _iso(delivery.last_attempt_at),
        "last_status_code": delivery.last_status_code, "last_error": delivery.last_error,
        "response_excerpt": delivery.response_excerpt,
        "next_attempt_at": _iso(delivery.next_attempt_at) if delivery.status == PENDING else None,
        "delivered_at": _iso(delivery.delivered_at), "created_at": delivery.created_at.isoformat(),
    }


@bp.get("/webhooks/deliveries")
@spec.validate(query=s.DeliveryQuery, resp=_resp(HTTP_200=s.DeliveryPage), tags=["webhook"])
def list_deliveries(query: s.DeliveryQuery):
    """Il registro degli invii dei webhook, dal più recente, per destinatario e per posizione.

    Per ogni invio: codice di risposta, orario, tentativi, un estratto della risposta. A pagine (``next_cursor`` →
    ``cursor``).
    """
    rows = webhooks.list_deliveries(db.session, token().creditor_id, subscriber_id=query.subscriber_id,
                                    position_id=query.position_id, status=query.status, limit=query.limit + 1,
                                    before_id=query.cursor, scope=token().service_scope())
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    return {"items": [delivery_json(d) for d in rows], "next_cursor": rows[-1].id if more and rows else None}


@bp.post("/webhooks/deliveries/<int:delivery_id>/resend")
@spec.validate(resp=_resp(HTTP_200=s.DeliveryOut), tags=["webhook"])
def resend_delivery(delivery_id: int):
    """Invia di nuovo un evento a un destinatario, subito e con un altro giorno di tentativi (consegnato o no)."""
    refused = _require_write()
    if refused:
        return refused
    delivery = webhooks.get_delivery(db.session, token().creditor_id, delivery_id, scope=token().service_scope())
    if delivery is None:
        return problem(404, "Invio non trovato.")
    webhooks.send_again(db.session, delivery)
    return delivery_json(delivery)


# --- The accounting export -------------------------------------------------------------------------------------------


@bp.get("/payments/export")
@spec.validate(query=s.PaymentsExportQuery, resp=Resp(HTTP_200=None, **ERRORS), tags=["ragioneria"])
def payments_export(query: s.PaymentsExportQuery):
    """L'esportazione per la ragioneria di un periodo, in CSV o XLSX.

    Una riga per versamento di ogni pagamento (pagoPA o fuori pagoPA, con il canale) con ricevuta, flusso e data di
    regolamento, poi i totali per servizio, beneficiario e canale. Trasmessa man mano; i testi che un foglio di
    calcolo leggerebbe come formule sono neutralizzati. Per data di regolamento ci sono solo i pagamenti pagoPA.
    """
    if query.day_from > query.day_to:
        return problem(422, "La data finale precede quella iniziale.",
                       errors=[{"field": "to", "message": "La data finale precede quella iniziale."}])
    scope = token().service_scope()
    rows = payments.payment_rows(db.session, token().creditor_id, query.day_from, query.day_to, by=query.by,
                                 service_ids=None if scope is None else set(scope))
    layout = payments.LAYOUTS[query.layout]
    name = f"pagamenti_{query.by}_{query.day_from:%Y%m%d}_{query.day_to:%Y%m%d}.{query.format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    if query.format == "xlsx":
        chunks, size = exports.xlsx_chunks(rows, layout=layout)
        return Response(chunks, mimetype=exports.XLSX_MIMETYPE, headers={**headers, "Content-Length": str(size)})
    return Response(stream_with_context(exports.iter_csv(rows, layout=layout)), mimetype="text/csv", headers=headers)

