"""The portal's front pages and the services' forms (Designers Italia "servizio": the service, its form, the
summary, payment). Thin views: :mod:`portal.forms_builder` reads the answers, :mod:`portal.citizen_payments`
keeps them."""

from __future__ import annotations

from datetime import date

from flask import Response, redirect, render_template, request
from jinja2_fragments.flask import render_block

from portal.citizen import bp
from portal.citizen.context import creditor_url, creditors, payable_services, resolve, service_with_form, slugs
from portal.citizen.protection import HONEYPOT, honeypot_filled, limit
from portal.citizen_payments import spontaneous
from portal.citizen_payments.status import find
from portal.extensions import db, htmx
from portal.forms_builder import amounts
from portal.forms_builder.definition import FormDefinition
from portal.ledger.errors import ValidationFailed
from portal.money import format_euro

#: Status of a form page re-rendered with errors (htmx swaps it like a 200).
INVALID = 422


@bp.route("/")
def home():
    """The Comune's page (one Ente), or the list of the Enti an intermediary serves."""
    everyone = creditors()
    if len(everyone) == 1:
        return _creditor_home(everyone[0], None)
    names = slugs(everyone)
    return render_template("citizen/creditors.html", creditors=[(c, names[c.id]) for c in everyone])


@bp.route("/<slug>/")
def home_of(slug: str):
    """One Ente's page when the installation serves several."""
    creditor, slug = resolve(slug)
    return _creditor_home(creditor, slug)


def _creditor_home(creditor, slug):
    services = payable_services(creditor.id)
    return render_template("citizen/home.html", creditor=creditor, slug=slug,
                           services=[(s, FormDefinition.from_dict(f.definition)) for s, f in services])


@bp.route("/servizi/<code>", methods=["GET", "POST"])
def service(code: str):
    """A service's page with its payment form (step 1 of 3)."""
    return _service(None, code)


@bp.route("/<slug>/servizi/<code>", methods=["GET", "POST"])
def service_of(slug: str, code: str):
    """The same, for one of several Enti."""
    return _service(slug, code)


def _service(slug: str | None, code: str):
    creditor, slug = resolve(slug)
    service, form = service_with_form(creditor, code)
    definition = FormDefinition.from_dict(form.definition)
    values: dict = {}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        limit("service-form")
        if honeypot_filled(request.form):
            return render_template("citizen/refused.html", creditor=creditor), 400
        values = {key: request.form.get(key, "")[:1000] for key in _input_names(definition)}
        try:
            payment = spontaneous.start(db.session, service, form, values, today=date.today())
        except ValidationFailed as exc:
            errors = exc.by_field()
        else:
            target = _summary_url(payment.token)
            if htmx:
                return Response(status=204, headers={"HX-Redirect": target})
            return redirect(target, code=303)
    else:
        values = _values_of_draft(request.args.get("modifica"), form.id)
    context = dict(creditor=creditor, slug=slug, service=service, definition=definition, values=values,
                   errors=errors, action=creditor_url("service", slug, code=service.code), honeypot=HONEYPOT,
                   amount_inputs={"typed": amounts.TYPED_INPUT, "choice": amounts.CHOICE_INPUT},
                   euro=format_euro)
    status = INVALID if errors else 200
    if htmx and request.method == "POST":
        return render_block("citizen/service.html", "payment_form", **context), status
    return render_template("citizen/service.html", **context), status


def _input_names(definition: FormDefinition) -> list[str]:
    names = [f.key for f in definition.fields]
    if definition.amount.kind == "typed":
        names.append(amounts.TYPED_INPUT)
    if definition.amount.kind == "choice":
        names.append(amounts.CHOICE_INPUT)
    return names


def _values_of_draft(token: str | None, form_id: int) -> dict:
    """The answers of a draft payment, to correct them ("Modifica" on the summary)."""
    payment = find(db.session, token or "")
    if payment is None or payment.status != "draft" or payment.form_id != form_id or not payment.answers:
        return {}
    return {k: ("on" if v is True else "" if v in (None, False) else str(v)) for k, v in payment.answers.items()}


def _summary_url(token: str) -> str:
    from flask import url_for

    return url_for("citizen.payment", token=token)


bp.add_app_template_global(creditor_url, "creditor_url")
