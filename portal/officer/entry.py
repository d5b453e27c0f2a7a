"""Manual entry of a new position by an officer (``/officer/positions/new``).

One form, posted whole. Its buttons (``action``): ``save`` stores the position; ``generate`` fills the
installment rows; ``add_transfer`` / ``remove_transfer-N`` edit the beneficiary rows; ``preview`` refreshes the
summary. Without JavaScript every button is a plain POST that re-renders the page; with htmx the helper buttons
swap only the form (or the summary), and each field is checked as it is typed through
``officer.validate_position_field``. Rules and parsing are the ledger's: see :mod:`portal.officer.entry_forms`.
"""

from datetime import date, timedelta

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from jinja2_fragments.flask import render_block
from wtforms.fields.choices import SelectChoice

from portal.accounts.models import Role
from portal.extensions import db, htmx
from portal.ledger import services as ledger
from portal.ledger import taxonomy
from portal.ledger.errors import ValidationFailed
from portal.ledger.inputs import MAX_TRANSFERS
from portal.ledger.models import Service
from portal.money import AmountError, parse_euro
from portal.officer import bp
from portal.officer.access import can_see_service, roles_required, visible_services
from portal.officer.entry_forms import (
    MAX_FORM_INSTALLMENTS,
    SUMMARY,
    Draft,
    ErrorBag,
    PositionForm,
    add_transfer_row,
    build_draft,
    field_labels,
    generate_installments,
    place_errors,
    preview_rows,
    remove_transfer_row,
)

ENTRY_ROLES = (Role.ADMIN, Role.OPERATOR)
TEMPLATE = "officer/new_position.html"
#: Taxonomy suggestions: Comuni and Province / Città metropolitane (TEFA).
TAXONOMY_CREDITOR_TYPES = ("01", "02")


def _services() -> list[Service]:
    """Active services in the officer's scope: the only ones a position may be created for."""
    return [s for s in visible_services() if s.active]


def _form(services: list[Service]) -> PositionForm:
    form = PositionForm()
    form.service_id.choices = [SelectChoice("", "Scegliere il servizio")] + [
        SelectChoice(s.id, f"{s.name} ({s.code})") for s in services
    ]
    return form


def _taxonomy_choices():
    return [e for t in TAXONOMY_CREDITOR_TYPES for e in taxonomy.choices(t)]


def _render(form: PositionForm, services: list[Service], *, errors: dict | None = None, draft: Draft | None = None,
            block: str | None = None, status: int = 200, editing=None):
    errors = errors or {}
    labels = field_labels(form)
    anchors = {SUMMARY: None}
    summary = [(anchors.get(name, name), labels.get(name, ""), message)
               for name, messages in errors.items() for message in messages]
    context = {
        "form": form,
        "services": services,
        "errors": errors,
        "error_summary": summary,
        "preview": draft.preview if draft else None,
        "preview_rows": preview_rows(draft.preview if draft else None),
        "creditor": current_user.creditor,
        "max_transfers": MAX_TRANSFERS,
        "max_installments": MAX_FORM_INSTALLMENTS,
        "editing": editing,
        "form_url": url_for("officer.edit_position", position_id=editing.id) if editing
        else url_for("officer.new_position"),
    }
    if block:
        return render_block(TEMPLATE, block, **context), status
    return render_template(TEMPLATE, taxonomy_choices=_taxonomy_choices(), **context), status


@bp.route("/positions/new", methods=["GET", "POST"])
@roles_required(*ENTRY_ROLES)
def new_position():
    """Type a new position: a single payment, an installment plan, or both, with up to five beneficiaries."""
    services = _services()
    form = _form(services)
    today = date.today()
    if request.method == "GET":
        if len(services) == 1:
            form.service_id.data = services[0].id
        if services:
            form.single_due_date.data = (today + timedelta(days=services[0].default_due_days)).isoformat()
        return _render(form, services)

    creditor = current_user.creditor
    draft, helper = handle_helpers(form, services, creditor=creditor, today=today)
    if helper is not None:
        return helper
    if draft.errors:
        return _render(form, services, errors=draft.errors, draft=draft, status=422)
    try:
        position, created = ledger.create_position(db.session, creditor, draft.data, actor=current_user.actor,
                                                   actor_user_id=current_user.id,
                                                   visible_service_ids=current_user.service_scope())
    except ValidationFailed as exc:
        errors = ErrorBag()
        draft.errors = errors
        place_errors(draft, exc.errors)
        return _render(form, services, errors=errors, draft=draft, status=422)
    if not created and not can_see_service(position.service_id):
        errors = ErrorBag()
        errors.add("external_id", "Questo identificativo esterno è già usato da un'altra posizione.")
        return _render(form, services, errors=errors, draft=draft, status=422)
    if created:
        flash("Posizione creata.", "success")
        if position.debtor.version_of_id is not None:
            # The shared debtor was left as it was (see ledger.upsert_debtor): say so, and where the data went.
            flash(_("I dati anagrafici esistenti del contribuente non sono stati modificati: il codice fiscale ha "
                    "posizioni in servizi che non gestisci. I dati inseriti valgono solo per questa posizione "
                    "(avviso e pagoPA)."), "warning")
    else:
        flash(f"Una posizione con identificativo esterno «{position.external_id}» esisteva già: "
              "non ne è stata creata un'altra.", "info")
    return redirect(url_for("officer.position", position_id=position.id), code=303)


def handle_helpers(form: PositionForm, services: list[Service], *, creditor, today: date, editing=None):
    """The form's helper buttons (generate installments, add/remove a beneficiary, refresh the summary).

    :return: the parsed draft, and the response to send when the button was a helper (``None`` for a save).
    """
    action = request.form.get("action", "save")
    helper_block = "entry_form" if htmx else None
    if action == "generate":
        errors = generate_installments(form)
        return None, _render(form, services, errors=errors, block=helper_block, editing=editing,
                             draft=build_draft(form, creditor=creditor, services=services, today=today))
    if action == "add_transfer":
        add_transfer_row(form)
    elif action.startswith("remove_transfer-") and action.removeprefix("remove_transfer-").isdigit():
        remove_transfer_row(form, int(action.removeprefix("remove_transfer-")))
    draft = build_draft(form, creditor=creditor, services=services, today=today)
    if action == "add_transfer" or action.startswith("remove_transfer-"):
        return draft, _render(form, services, block=helper_block, draft=draft, editing=editing)
    if action == "preview":
        return draft, _render(form, services, draft=draft, block="entry_summary" if htmx else None, editing=editing)
    return draft, None


@bp.route("/positions/new/validate", methods=["POST"])
@roles_required(*ENTRY_ROLES)
def validate_position_field():
    """The errors of one field of the new-position form (named by ``HX-Trigger-Name``), with the same rules as saving.

    The whole form is posted, so rules that involve several fields (transfer sums, installment order) apply too;
    the group errors of beneficiaries and installments are refreshed out of band. Nothing is stored.
    """
    services = _services()
    form = _form(services)
    draft = build_draft(form, creditor=current_user.creditor, services=services, today=date.today())
    name = htmx.trigger_name or request.form.get("field", "")
    groups = []
    if name.startswith("transfers-") or name in ("single_amount", "mode"):
        groups.append("transfers")
    if name.startswith("installments-") or name == "mode":
        groups.append("installments")
    messages = draft.errors.get(name, [])
    return render_template(
        "officer/_entry_field_error.html",
        messages=messages,
        read_as=_amount_read_as(name, request.form.get(name)) if not messages else None,
        groups={group: draft.errors.get(group, []) for group in groups},
    )


def _amount_read_as(name: str, text: str | None) -> int | None:
    """The cents an amount field was understood as ("1.050" is 1.050,00 €, "10.5" is 10,50 €), to say so."""
    if not name.endswith("amount") or not (text or "").strip():
        return None
    try:
        return parse_euro(text, allow_zero=True)
    except AmountError:
        return None
