"""Impostazioni → Servizi → Modulo di pagamento: the no-code builder of a service's spontaneous-payment form.

Works as plain POSTs (add a field, preview, save, publish) and, with htmx, previews the citizen's form live as the
officer types. :mod:`portal.forms_builder` checks the form; this module only reads the builder's inputs
(``fields-<n>-<attribute>``, amounts in euro) and renders. Admins only, scoped to their own creditor.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from portal.accounts.models import Role
from portal.extensions import db, htmx
from portal.forms_builder import amounts, fields, services, templates
from portal.forms_builder.amounts import AmountOption, AmountRule, Reduction
from portal.forms_builder.definition import MAX_FIELDS, DebtorMapping, FormDefinition, check_definition
from portal.forms_builder.fields import FieldSpec
from portal.ledger.errors import FieldError, ValidationFailed
from portal.money import AmountError, format_euro, parse_euro
from portal.officer import bp
from portal.officer.access import roles_required
from portal.officer.settings import _service_or_404

#: Field attributes the builder shows per row.
ROW_ATTRIBUTES = ("key", "label", "kind", "required", "help", "min_length", "max_length", "min_value", "max_value",
                  "choices")


# --- Reading the builder's inputs --------------------------------------------------------------------------------


def _int(value: str | None, name: str, errors: list[FieldError]) -> int | None:
    text = (value or "").strip()
    if not text:
        return None
    if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 9:
        errors.append(FieldError(name, "Indicare un numero intero."))
        return None
    return int(text)


def _euro(value: str | None, name: str, errors: list[FieldError]) -> int | None:
    if not (value or "").strip():
        return None
    try:
        return parse_euro(value[:30])
    except AmountError as exc:
        errors.append(FieldError(name, str(exc)))
        return None


def read_definition(form: MultiDict) -> tuple[FormDefinition, list[FieldError]]:
    """The form the builder's inputs describe, and the problems of reading them (numbers, amounts)."""
    errors: list[FieldError] = []
    rows = []
    count = min(_int(form.get("field_count"), "fields", errors) or 0, MAX_FIELDS + 5)
    for n in range(1, count + 1):
        get = lambda attr, n=n: (form.get(f"fields-{n}-{attr}") or "")[:2000]  # noqa: E731
        if get("delete") or not (get("key") or get("label")):
            continue
        at = f"fields.{len(rows) + 1}"
        rows.append(FieldSpec(
            key=get("key").strip().lower(), label=get("label").strip(), kind=get("kind") or "text",
            required=bool(get("required")), help=get("help").strip(),
            min_length=_int(get("min_length"), f"{at}.min_length", errors),
            max_length=_int(get("max_length"), f"{at}.max_length", errors),
            min_value=_int(get("min_value"), f"{at}.min_value", errors),
            max_value=_int(get("max_value"), f"{at}.max_value", errors),
            choices=tuple(line.strip() for line in get("choices").splitlines() if line.strip()),
        ))
    options = []
    for number, line in enumerate((form.get("amount_options") or "")[:5000].splitlines(), start=1):
        if not line.strip():
            continue
        label, _, amount = line.rpartition("|")
        cents = _euro(amount, "amount_options", errors) if label.strip() else None
        if not label.strip() or cents is None:
            if not any(e.field == "amount_options" for e in errors):
                errors.append(FieldError("amount_options", f"Riga {number}: scrivere descrizione | importo, ad "
                                                           "esempio «In bollo | 16,52»."))
            continue
        options.append(AmountOption(label.strip()[:100], cents))
    reduction = None
    if (form.get("reduction_percent") or "").strip():
        reduction = Reduction(_int(form.get("reduction_percent"), "reduction_percent", errors) or 0,
                              _int(form.get("reduction_days"), "reduction_days", errors) or 0,
                              (form.get("reduction_date_field") or "").strip())
    rule = AmountRule(kind=form.get("amount_kind") or "fixed",
                      amount_cents=_euro(form.get("amount_cents"), "amount_cents", errors),
                      options=tuple(options), quantity_field=(form.get("quantity_field") or "").strip() or None,
                      min_cents=_euro(form.get("min_cents"), "min_cents", errors),
                      max_cents=_euro(form.get("max_cents"), "max_cents", errors), reduction=reduction)
    definition = FormDefinition(
        title=(form.get("title") or "").strip()[:200], intro=(form.get("intro") or "").strip()[:3000],
        fields=tuple(rows), amount=rule, subject_template=(form.get("subject_template") or "").strip()[:400],
        debtor=DebtorMapping((form.get("debtor_fiscal_code_field") or "").strip(),
                             (form.get("debtor_name_field") or "").strip(),
                             (form.get("debtor_email_field") or "").strip() or None))
    return definition, errors


def _checked(definition: FormDefinition, read_errors: list[FieldError]) -> dict[str, list[str]]:
    """Every problem of the form, by builder input (``fields.2.key``, ``amount_cents``...)."""
    errors = list(read_errors)
    try:
        check_definition(definition)
    except ValidationFailed as exc:
        errors += exc.errors
    return ValidationFailed(errors).by_field() if errors else {}


# --- Views -------------------------------------------------------------------------------------------------------


def _render(service, definition: FormDefinition, errors: dict, *, extra_rows: int = 0, status: int = 200,
            template_key: str | None = None):
    published = services.published_form(db.session, service.id)
    draft = services.draft_form(db.session, service.id)
    return render_template(
        "officer/settings/payment_form.html", service=service, definition=definition, errors=errors,
        rows=list(definition.fields) + [FieldSpec("", "")] * extra_rows, field_kinds=fields.KINDS,
        amount_kinds=amounts.KINDS, templates=templates.TEMPLATES, published=published, draft=draft,
        versions=services.versions(db.session, service.id), euro=lambda c: format_euro(c, symbol=False) if c else "",
        template_key=template_key, preview_errors=errors,
        amount_inputs={"typed": amounts.TYPED_INPUT, "choice": amounts.CHOICE_INPUT}, euro_symbol=format_euro,
    ), status


@bp.route("/settings/services/<id32:service_id>/form", methods=["GET", "POST"])
@roles_required(Role.ADMIN)
def settings_payment_form(service_id: int):
    """Build, preview, save and publish the service's payment form."""
    service = _service_or_404(service_id)
    if request.method == "GET":
        source = services.draft_form(db.session, service.id) or services.published_form(db.session, service.id)
        if source is None:
            return _render(service, FormDefinition("", (), AmountRule(), "", DebtorMapping()), {}, extra_rows=0)
        return _render(service, FormDefinition.from_dict(source.definition), {})
    action = request.form.get("action", "preview")
    if action.startswith("template:"):
        template = templates.get(action.split(":", 1)[1])
        if template is None:
            abort(400)
        flash(f"Modello «{template.name}» caricato: controllare gli importi con le tariffe dell'ente, poi salvare.",
              "info")
        return _render(service, template.definition, {}, template_key=template.key)
    if action == "withdraw":
        if services.withdraw(db.session, service, actor_user_id=current_user.id):
            flash("Modulo ritirato: i cittadini non possono più avviare pagamenti di questo servizio.", "success")
        return redirect(url_for("officer.settings_payment_form", service_id=service.id), code=303)
    definition, read_errors = read_definition(request.form)
    if action == "add_field":
        return _render(service, definition, {}, extra_rows=1)
    errors = _checked(definition, read_errors)
    if action in ("save", "publish") and not errors:
        services.save_draft(db.session, service, definition, actor_user_id=current_user.id,
                            template_key=request.form.get("template_key") or None)
        if action == "publish":
            published = services.publish(db.session, service, actor_user_id=current_user.id)
            flash(f"Modulo pubblicato (versione {published.version}): i cittadini lo trovano sul portale.", "success")
        else:
            flash("Bozza del modulo salvata.", "success")
        return redirect(url_for("officer.settings_payment_form", service_id=service.id), code=303)
    return _render(service, definition, errors, status=422 if errors and action != "preview" else 200)


@bp.route("/settings/services/<id32:service_id>/form/preview", methods=["POST"])
@roles_required(Role.ADMIN)
def settings_payment_form_preview(service_id: int):
    """The citizen's form as the builder's inputs describe it now (htmx, as the officer types)."""
    service = _service_or_404(service_id)
    definition, read_errors = read_definition(request.form)
    errors = _checked(definition, read_errors)
    if not htmx:
        return _render(service, definition, errors)
    return render_template("officer/settings/_payment_form_preview.html", definition=definition, errors=errors,
                           amount_inputs={"typed": amounts.TYPED_INPUT, "choice": amounts.CHOICE_INPUT},
                           euro_symbol=format_euro)
