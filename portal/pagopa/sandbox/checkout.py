"""Checkout "carts" (EC API v1/v2) and the sandbox's payment page.

``POST /checkout/ec/v{1,2}/carts`` answers 302 to ``/checkout/pay/{cart}``: a plain Italian page listing the
notices with three buttons. *Paga* marks the options paid in the GPD store, stores one receipt per notice,
queues its paSendRTV2 and redirects to ``returnOkUrl``; *Annulla* → ``returnCancelUrl``;
*Simula errore* → ``returnErrorUrl``. As on the real Checkout, any formally valid cart is accepted (the API
documents only 302, 400 and 500): a notice that is not payable in the sandbox's GPD store is reported on the
payment page, which then offers no *Paga*, and paying anyway ends on ``returnErrorUrl``.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, current_app, g, redirect, render_template, request

from portal.money import format_euro
from portal.pagopa.sandbox import gpd, receipts, store
from portal.pagopa.sandbox.problems import ApiError

bp = Blueprint("sandbox_checkout", __name__)


def _check_notice(conn, notice: dict, now) -> tuple[dict, dict]:
    """The position and option behind a notice, or an :class:`ApiError` saying why it cannot be paid."""
    found = gpd.find_by_nav(conn, notice["fiscalCode"], notice["noticeNumber"], now)
    if found is None:
        raise ApiError(422, "PAYMENT_NOTICE_UNKNOWN",
                       f"Notice {notice['noticeNumber']} of {notice['fiscalCode']} is unknown to the node")
    doc, option = found
    try:
        gpd.check_payable(doc, option)
    except ApiError as exc:
        raise ApiError(422, "PAYMENT_NOTICE_NOT_PAYABLE",
                       f"Notice {notice['noticeNumber']} is not payable (position {doc['status']}, option "
                       f"{option['status']}): {exc.detail}") from exc
    if option["amount"] != notice["amount"]:
        raise ApiError(422, "PAYMENT_NOTICE_AMOUNT_MISMATCH",
                       f"Notice {notice['noticeNumber']}: amount {notice['amount']} differs from the amount due "
                       f"{option['amount']}")
    return doc, option


@bp.post("/checkout/ec/v1/carts")
@bp.post("/checkout/ec/v2/carts")
def create_cart():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):  # the spec does not mark the body required, but a cart is made of it
        raise ApiError(400, "Bad Request", "The request body must be a CartRequest JSON object")
    version = 2 if request.path.startswith("/checkout/ec/v2") else 1
    keys = [(notice["fiscalCode"], notice["noticeNumber"]) for notice in body["paymentNotices"]]
    if len(set(keys)) != len(keys):
        raise ApiError(400, "Bad Request", "The same notice appears more than once in the cart")
    return redirect(_open_cart(body, version, store.now_utc()), code=302)


def _open_cart(body: dict, version: int, now) -> str:
    """Store an open cart and return the URL of its payment page."""
    cart_id = uuid.uuid4().hex
    with store.transaction(g.db):
        g.db.execute("INSERT INTO carts (id, version, request, status, created_at, updated_at)"
                     " VALUES (?, ?, ?, 'open', ?, ?)",
                     (cart_id, version, store.dumps(body), store.iso(now), store.iso(now)))
    return f"{current_app.config['SANDBOX_PUBLIC_URL'].rstrip('/')}/checkout/pay/{cart_id}"


@bp.get("/")
def psp_counter():
    """A PSP's counter (bank, post office, app): pay any notice by the Ente's fiscal code and its notice number."""
    return render_template("sandbox/psp.html", fiscal_code=request.args.get("cf", ""),
                           notice_number=request.args.get("nav", ""), outcome=request.args.get("esito"), error=None)


@bp.post("/")
def psp_counter_pay():
    """Look the notice up as a PSP would (paVerify) and open the payment page for it."""
    fiscal_code = request.form.get("fiscal_code", "").strip()
    nav = "".join(ch for ch in request.form.get("notice_number", "") if ch.isdigit())
    now = store.now_utc()
    found = gpd.find_by_nav(g.db, fiscal_code, nav, now) if fiscal_code and len(nav) == 18 else None
    error = None
    if found is None:
        error = "Avviso sconosciuto: controllare il codice fiscale dell'ente e il codice avviso (18 cifre)."
    else:
        doc, option = found
        try:
            gpd.check_payable(doc, option)
        except ApiError as exc:
            error = f"L'avviso non è pagabile ({doc['status']}): {exc.detail}"
    if error:
        return render_template("sandbox/psp.html", fiscal_code=fiscal_code, notice_number=nav, outcome=None,
                               error=error), 422
    home = f"{current_app.config['SANDBOX_PUBLIC_URL'].rstrip('/')}/"
    body = {
        "paymentNotices": [{"noticeNumber": nav, "fiscalCode": fiscal_code, "amount": option["amount"],
                            "companyName": doc.get("companyName") or fiscal_code,
                            "description": option.get("description") or ""}],
        "returnUrls": {"returnOkUrl": home + "?esito=ok", "returnCancelUrl": home + "?esito=annullato",
                       "returnErrorUrl": home + "?esito=errore"},
    }
    return redirect(_open_cart(body, 1, now), code=303)


def _cart(cart_id: str):
    row = g.db.execute("SELECT * FROM carts WHERE id = ?", (cart_id,)).fetchone()
    if row is None:
        abort(404)
    return row, store.loads(row["request"])


@bp.get("/checkout/pay/<cart_id>")
def payment_page(cart_id: str):
    row, cart = _cart(cart_id)
    notices = cart["paymentNotices"]
    total = sum(notice["amount"] for notice in notices)
    problems = _problems(notices) if row["status"] == "open" else {}
    return render_template("sandbox/pay.html", cart_id=cart_id, status=row["status"], notices=notices,
                           total=format_euro(total), euro=format_euro, email=cart.get("emailNotice"),
                           message=request.args.get("msg"), problems=problems)


def _problems(notices: list[dict]) -> dict[str, str]:
    """Why each notice of the cart cannot be paid now (Italian, for the page), by notice number."""
    problems: dict[str, str] = {}
    now = store.now_utc()
    for notice in notices:
        try:
            _check_notice(g.db, notice, now)
        except ApiError as exc:
            problems[notice["noticeNumber"]] = _PROBLEM_TEXT.get(exc.title, "Avviso non pagabile.")
    return problems


_PROBLEM_TEXT = {
    "PAYMENT_NOTICE_UNKNOWN": "Avviso sconosciuto: l'ente non ha una posizione con questo codice avviso.",
    "PAYMENT_NOTICE_NOT_PAYABLE": "Avviso non pagabile nello stato attuale (bozza, annullato, scaduto o già pagato).",
    "PAYMENT_NOTICE_AMOUNT_MISMATCH": "L'importo indicato non corrisponde a quello dovuto.",
}


@bp.post("/checkout/pay/<cart_id>")
def pay(cart_id: str):
    row, cart = _cart(cart_id)
    urls = cart["returnUrls"]
    action = request.form.get("action", "")
    if row["status"] != "open":
        # A second submit (back button, double click): answer as the first one did.
        return redirect(urls[_RETURN_FOR.get(row["status"], "returnErrorUrl")], code=302)
    if action == "cancel":
        _set_status(cart_id, "cancelled")
        return redirect(urls["returnCancelUrl"], code=302)
    if action != "pay":
        _set_status(cart_id, "error")
        return redirect(urls["returnErrorUrl"], code=302)
    settings = current_app.config
    now = store.now_utc()
    try:
        with store.transaction(g.db):
            current = g.db.execute("SELECT status FROM carts WHERE id = ?", (cart_id,)).fetchone()["status"]
            if current != "open":
                raise _AlreadyClosed(current)
            for notice in cart["paymentNotices"]:
                doc, option = _check_notice(g.db, notice, now)
                receipt_id = receipts.new_receipt_id()
                gpd.mark_paid(doc, option, payment_date=store.iso(now), now=now,
                              payment_method=receipts.PSP["paymentMethod"],
                              psp_company=receipts.PSP["PSPCompanyName"], receipt_id=receipt_id,
                              fee=receipts.PSP["fee_cents"])
                org = doc["organizationFiscalCode"]
                body = receipts.build_receipt(
                    doc, option, receipt_id=receipt_id, paid_at=now, id_pa=org,
                    id_broker=settings.get("SANDBOX_BROKER_ID") or org,
                    id_station=settings.get("SANDBOX_STATION_ID") or f"{org}_01")
                errors = receipts.validate_body(body)
                if errors:
                    raise ApiError(500, "RT_NOT_VALID", "The paSendRTV2 built by the sandbox is not valid against "
                                                        "paForNode.xsd: " + "; ".join(errors))
                gpd.save(g.db, doc)
                receipts.record_receipt(g.db, doc, option, receipt_id=receipt_id, paid_at=now, body=body,
                                        url=settings["SANDBOX_PAYBOX_SOAP_URL"])
            g.db.execute("UPDATE carts SET status = 'paid', updated_at = ? WHERE id = ?", (store.iso(now), cart_id))
    except _AlreadyClosed as closed:  # a concurrent submit of the same cart won the race
        return redirect(urls[_RETURN_FOR.get(closed.status, "returnErrorUrl")], code=302)
    except ApiError as exc:
        current_app.logger.warning("cart %s not paid: %s", cart_id, exc)
        _set_status(cart_id, "error")
        return redirect(urls["returnErrorUrl"], code=302)
    worker = current_app.extensions.get("sandbox_worker")
    if worker is not None:
        worker.wake()
    return redirect(urls["returnOkUrl"], code=302)


_RETURN_FOR = {"paid": "returnOkUrl", "cancelled": "returnCancelUrl"}


class _AlreadyClosed(Exception):
    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


def _set_status(cart_id: str, status: str) -> None:
    """Close an open cart (a closed one keeps its outcome)."""
    with store.transaction(g.db):
        g.db.execute("UPDATE carts SET status = ?, updated_at = ? WHERE id = ? AND status = 'open'",
                     (status, store.iso(), cart_id))
