"""A citizen payment, reached by its random token: the summary, "Paga con pagoPA", the return from Checkout
(ok / annullato / errore / attesa) that waits for the receipt (htmx polling), and the receipt (page and PDF).

The signed link of the receipt e-mail (``/ricevuta/<link>``) shows the same receipt until it expires.
"""

from __future__ import annotations

import threading
from datetime import date

import requests
from flask import abort, current_app, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from jinja2_fragments.flask import render_block

from portal import timing
from portal.citizen import bp
from portal.citizen.context import creditor_url, slugs
from portal.citizen.protection import limit
from portal.citizen_payments import links, paying, spontaneous
from portal.citizen_payments.mailing import MAIL_TASK
from portal.citizen_payments.receipt_pdf import html_to_pdf
from portal.citizen_payments.status import OUTCOMES, find, record_return, state_of
from portal.extensions import db, htmx
from portal.forms_builder.definition import FormDefinition, summary_of
from portal.ledger.errors import ValidationFailed
from portal.ledger.models import Creditor, Service
from portal.pagopa.checkout import CheckoutClient, ReturnUrls
from portal.pagopa.gpd import GPDClient
from portal.pagopa.http import PagoPASession

#: Seconds between two looks at the receipt while the citizen waits.
POLL_SECONDS = 2
#: One HTTP session per web thread for the calls to pagoPA: its connections stay open between citizens, so a
#: "Paga con pagoPA" does not open (and, in production, TLS-handshake) two new connections.
_http = threading.local()


def _pagopa_session() -> requests.Session:
    session = getattr(_http, "session", None)
    if session is None:
        session = _http.session = PagoPASession()
    return session


def _payment_or_404(token: str):
    payment = find(db.session, token, with_related=True)
    if payment is None:
        abort(404)
    return payment


def _context(payment) -> dict:
    creditor = db.session.get(Creditor, payment.creditor_id)
    service = answers = None
    if payment.form is not None:
        service = db.session.get(Service, payment.form.service_id)
        answers = summary_of(FormDefinition.from_dict(payment.form.definition), payment.answers or {})
    everyone = db.session.query(Creditor.id).count()
    slug = slugs([creditor])[creditor.id] if everyone > 1 else None
    return dict(payment=payment, creditor=creditor, service=service, answers=answers, slug=slug,
                home_url=creditor_url("home", slug), poll_seconds=POLL_SECONDS)


@bp.route("/pagamento/<token>")
def payment(token: str):
    """The summary (step 2) before paying, or where the payment stands afterwards (step 3)."""
    payment = _payment_or_404(token)
    state = state_of(db.session, payment)
    context = _context(payment) | {"state": state}
    if state.paid:
        _ask_for_receipt_mail(payment)
    if htmx and htmx.target == "payment-status":
        return render_block("citizen/payment.html", "status", **context)
    return render_template("citizen/payment.html", **context)


@bp.route("/pagamento/<token>/paga", methods=["POST"])
def pay(token: str):
    """Create the position (spontaneous payments), publish it on pagoPA at once, open the Checkout cart, go there."""
    payment = _payment_or_404(token)
    limit("pay")
    if state_of(db.session, payment).paid:
        return redirect(url_for("citizen.payment", token=token), code=303)
    if payment.kind == "spontaneous":
        try:
            with timing.phase("position"):
                spontaneous.ensure_position(db.session, payment, today=date.today())
        except ValidationFailed as exc:
            problem = paying.CheckoutStart("refused", message=" ".join(e.message for e in exc.errors))
            context = _context(payment) | {"state": state_of(db.session, payment), "problem": problem}
            return render_template("citizen/payment.html", **context), 409
    return go_to_checkout(payment)


def go_to_checkout(payment):
    """Publish the payment's positions, open the cart and redirect there; or say why not (with a retry)."""
    config = current_app.config
    timeout = float(config.get("CITIZEN_PAGOPA_TIMEOUT_SECONDS") or 4)
    http = _pagopa_session()
    gpd = GPDClient(config["PAGOPA_GPD_URL"], config["PAGOPA_API_KEY"], timeout=timeout, session=http)
    checkout = CheckoutClient(config["PAGOPA_CHECKOUT_URL"], config["PAGOPA_API_KEY"], timeout=timeout,
                              session=http)
    started = paying.start_checkout(db.session, payment, gpd, checkout, _return_urls(payment.token))
    if started.result == "redirect":
        return redirect(started.url, code=303)
    context = _context(payment) | {"state": state_of(db.session, payment), "problem": started}
    return render_template("citizen/payment.html", **context), 200 if started.result == "slow" else 409


def _return_urls(token: str) -> ReturnUrls:
    # On the host the citizen's browser used (behind a proxy, ProxyFix makes it the public one).
    base = request.host_url.rstrip("/")

    def url(outcome: str) -> str:
        return base + url_for("citizen.checkout_return", token=token, outcome=outcome)

    return ReturnUrls(ok_url=url("ok"), cancel_url=url("annullato"), error_url=url("errore"),
                      waiting_url=url("attesa"))


@bp.route("/pagamento/<token>/esito/<outcome>")
def checkout_return(token: str, outcome: str):
    """Where Checkout sends the citizen back; the payment page then waits for the receipt."""
    payment = _payment_or_404(token)
    if outcome not in OUTCOMES:
        abort(404)
    record_return(db.session, payment, OUTCOMES[outcome])
    return redirect(url_for("citizen.payment", token=token), code=303)


def _ask_for_receipt_mail(payment) -> None:
    """Send the receipt link now rather than at the next sweep (once: the job id is the payment's)."""
    from portal import outbox

    if payment.email and payment.receipt_mailed_at is None:
        outbox.schedule(db.session, MAIL_TASK, payment.id, job_id=f"citizen-receipt-{payment.id}",
                        creditor_id=payment.creditor_id)


# --- Receipts ---------------------------------------------------------------------------------------------------


def _receipt_pdf(payment):
    state = state_of(db.session, payment)
    if not state.paid:
        abort(404)
    html = render_template("citizen/receipt_pdf.html", **_context(payment), state=state)
    response = make_response(html_to_pdf(html))
    response.mimetype = "application/pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="ricevuta-{payment.id}.pdf"'
    response.cache_control.private = True
    response.cache_control.no_store = True
    return response


@bp.route("/pagamento/<token>/ricevuta.pdf")
def receipt_pdf(token: str):
    """The receipt PDF of a paid payment."""
    return _receipt_pdf(_payment_or_404(token))


def _signed_payment(link: str):
    token = links.verify(current_app.config["SECRET_KEY"], link)
    if token is None:
        abort(410, description=_("Il link alla ricevuta non è valido o è scaduto. La ricevuta resta disponibile "
                                 "presso l'ufficio del Comune."))
    return _payment_or_404(token)


@bp.route("/ricevuta/<link>")
def signed_receipt(link: str):
    """The receipt from the e-mail's signed link."""
    payment = _signed_payment(link)
    state = state_of(db.session, payment)
    if not state.paid:
        abort(404)
    return render_template("citizen/payment.html", **_context(payment), state=state,
                           pdf_url=url_for("citizen.signed_receipt_pdf", link=link))


@bp.route("/ricevuta/<link>/pdf")
def signed_receipt_pdf(link: str):
    """The receipt PDF from the e-mail's signed link."""
    return _receipt_pdf(_signed_payment(link))


@bp.after_request
def _private(response):
    """Citizen pages carry personal data: never stored by shared caches, never sent as a Referer to Checkout."""
    if request.endpoint and request.endpoint.startswith("citizen.") and request.endpoint != "citizen.home":
        response.cache_control.private = True
        response.headers["Referrer-Policy"] = "no-referrer"
    return response
