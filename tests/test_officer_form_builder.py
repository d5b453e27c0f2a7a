"""Impostazioni → Servizi → Modulo di pagamento: start from a template, preview, publish, version; admins only."""

import sqlalchemy as sa

from portal.extensions import db
from portal.forms_builder.models import PaymentForm


def builder_data(client, service, **changes):
    """The builder's inputs after loading the certificates template (as the page renders them)."""
    page = client.post(f"/officer/settings/services/{service.id}/form", data={"action": "template:certificati"})
    assert page.status_code == 200
    data = {
        "title": "Certificato anagrafico", "field_count": "4",
        "fields-1-key": "codice_fiscale", "fields-1-label": "Codice fiscale", "fields-1-kind": "fiscal_code",
        "fields-1-required": "1",
        "fields-2-key": "nome", "fields-2-label": "Nome e cognome", "fields-2-kind": "text", "fields-2-required": "1",
        "fields-2-max_length": "70",
        "fields-3-key": "email", "fields-3-label": "E-mail", "fields-3-kind": "email",
        "fields-4-key": "tipo", "fields-4-label": "Tipo", "fields-4-kind": "choice", "fields-4-required": "1",
        "fields-4-choices": "Residenza\nNascita",
        "amount_kind": "choice", "amount_options": "In carta libera | 0,26\nIn bollo | 0,52",
        "subject_template": "Diritti di segreteria – {tipo} ({voce})",
        "debtor_fiscal_code_field": "codice_fiscale", "debtor_name_field": "nome", "debtor_email_field": "email",
    }
    data.update(changes)
    return page, data


def test_an_admin_builds_previews_and_publishes_a_form(client, ctx, make_user, login, service):
    login(make_user("admin", role="admin"))
    page, data = builder_data(client, service)
    assert "Certificato anagrafico" in page.get_data(as_text=True)

    preview = client.post(f"/officer/settings/services/{service.id}/form/preview", data=data,
                          headers={"HX-Request": "true"})
    body = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert 'data-testid="form-preview"' in body
    assert "In bollo" in body
    assert "Da completare" not in body

    broken = client.post(f"/officer/settings/services/{service.id}/form",
                         data={**data, "action": "publish", "subject_template": "Diritti {manca}"})
    assert broken.status_code == 422
    assert "che non è un campo del modulo" in broken.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(PaymentForm)) == 0

    published = client.post(f"/officer/settings/services/{service.id}/form", data={**data, "action": "publish"})
    assert published.status_code == 303
    form = db.session.scalars(sa.select(PaymentForm)).one()
    assert (form.version, form.status) == (1, "published")
    db.session.refresh(service)
    assert service.spontaneous
    assert client.get("/servizi/TARI").status_code == 200

    # A second publication is version 2; version 1 is kept, retired.
    client.post(f"/officer/settings/services/{service.id}/form", data={**data, "action": "publish",
                                                                        "title": "Certificati"})
    rows = db.session.scalars(sa.select(PaymentForm).order_by(PaymentForm.version)).all()
    assert [(f.version, f.status) for f in rows] == [(1, "retired"), (2, "published")]


def test_add_field_adds_an_empty_row_without_javascript(client, ctx, make_user, login, service):
    login(make_user("admin", role="admin"))
    _, data = builder_data(client, service)
    page = client.post(f"/officer/settings/services/{service.id}/form", data={**data, "action": "add_field"})
    assert page.get_data(as_text=True).count('data-testid="field-row"') == 5


def test_operators_cannot_reach_the_builder(client, ctx, make_user, login, service):
    login(make_user("operatore", role="operator"))
    assert client.get(f"/officer/settings/services/{service.id}/form").status_code == 403
