"""Paying a notice (``/avviso``): look it up by notice number and the debtor's fiscal code (or open the link
printed on it), put up to five in a cart kept in the session, and pay them together through Checkout."""

from __future__ import annotations

from datetime import date

from flask import flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from jinja2_fragments.flask import render_block

from portal.citizen import bp
from portal.citizen.context import creditor_url, resolve
from portal.citizen.payments import go_to_checkout
from portal.citizen.protection import HONEYPOT, honeypot_filled, limit
from portal.citizen_payments import notice_lookup, notices_cart
from portal.extensions import db, htmx
from portal.forms_builder.fields import EMAIL_RE
from portal.ledger.identifiers import normalize_fiscal_code

CART_KEY = "citizen_cart"


def _cart() -> list[int]:
    return [int(i) for i in session.get(CART_KEY, []) if isinstance(i, int)][: notice_lookup.CART_MAX]


@bp.route("/avviso", methods=["GET", "POST"])
def notice():
    """Find a notice and add it to the cart."""
    return _notice(None)


@bp.route("/<slug>/avviso", methods=["GET", "POST"])
def notice_of(slug: str):
    """The same, for one of several Enti."""
    return _notice(slug)


def _notice(slug: str | None):
    creditor, slug = resolve(slug)
    today = date.today()
    nav = request.values.get("codice_avviso", "")[:40]
    fiscal_code = request.values.get("codice_fiscale", "")[:20]
    found = error = None
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        code = normalize_fiscal_code(fiscal_code)
        limit("notice-lookup", fiscal_code=code or None)
        if honeypot_filled(request.form):
            return render_template("citizen/refused.html", creditor=creditor), 400
        if notice_lookup.normalize_nav(nav) is None:
            errors["codice_avviso"] = _("Il codice avviso è di 18 cifre (spazi ammessi).")
        if not code or len(code) not in (11, 16):
            errors["codice_fiscale"] = _("Indicare il codice fiscale dell'intestatario (16 caratteri, 11 cifre per "
                                         "le imprese).")
        if errors:
            status = 422
        else:
            found = notice_lookup.lookup(db.session, nav, code, creditor_ids=[creditor.id], today=today)
            if found is None:
                error, status = _(notice_lookup.NOT_FOUND), 200
            elif request.form.get("azione") == "aggiungi":
                target = found if found.payable or found.replacement is None else found.replacement
                try:
                    session[CART_KEY] = notices_cart.add(_cart(), target)
                except notices_cart.CartError as exc:
                    error = str(exc)
                else:
                    flash(_("Avviso aggiunto al carrello."), "success")
                    return redirect(creditor_url("notice", slug), code=303)
    context = dict(creditor=creditor, slug=slug, nav=nav, fiscal_code=fiscal_code, found=found, error=error,
                   errors=errors, message=None, honeypot=HONEYPOT, action=creditor_url("notice", slug),
                   cart=notices_cart.views(db.session, _cart(), today=today), cart_max=notice_lookup.CART_MAX)
    if htmx and request.method == "POST":
        return render_block("citizen/notice.html", "lookup", **context), status
    return render_template("citizen/notice.html", **context), status


@bp.route("/avviso/carrello/rimuovi", methods=["POST"])
def cart_remove():
    """Take one notice out of the cart."""
    option_id = request.form.get("avviso", "")
    session[CART_KEY] = [i for i in _cart() if str(i) != option_id]
    return redirect(request.form.get("indietro") if _local(request.form.get("indietro")) else url_for("citizen.home"),
                    code=303)


@bp.route("/avviso/carrello/paga", methods=["POST"])
def cart_pay():
    """Turn the cart into a payment and go on as for a spontaneous one ("Paga con pagoPA" on its page)."""
    limit("pay")
    email = (request.form.get("email") or "").strip().lower()[:254] or None
    back = request.form.get("indietro") if _local(request.form.get("indietro")) else url_for("citizen.home")
    if email and not EMAIL_RE.match(email):
        flash(_("Indirizzo e-mail non valido (esempio: nome@dominio.it)."), "danger")
        return redirect(back, code=303)
    try:
        payment = notices_cart.create_payment(db.session, _cart(), email=email, today=date.today())
    except notices_cart.CartError as exc:
        flash(str(exc), "danger")
        return redirect(back, code=303)
    session[CART_KEY] = []
    return go_to_checkout(payment)


def _local(url: str | None) -> bool:
    """Whether ``url`` is a path of this site (no open redirect)."""
    return bool(url) and url.startswith("/") and not url.startswith("//") and "\\" not in url
