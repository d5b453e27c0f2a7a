"""Payment forms without Flask or a database: fields, amount rules, subject templates, the ready templates."""

from dataclasses import replace
from datetime import date, timedelta

import pytest

from portal.forms_builder import amounts, subjects, templates
from portal.forms_builder.amounts import AmountOption, AmountRule, Reduction
from portal.forms_builder.definition import DebtorMapping, FormDefinition, check_definition, fill
from portal.forms_builder.fields import TEXT_HARD_MAX, AnswerError, FieldSpec, read_answer
from portal.ledger.errors import ValidationFailed

TODAY = date(2027, 3, 10)
CF = "RSSMRA80A01H501U"


def form(**changes) -> FormDefinition:
    base = FormDefinition(
        title="Certificato",
        fields=(FieldSpec("cf", "Codice fiscale", "fiscal_code", required=True),
                FieldSpec("nome", "Nome e cognome", "text", required=True, max_length=70),
                FieldSpec("email", "E-mail", "email"),
                FieldSpec("tipo", "Tipo", "choice", required=True, choices=("Residenza", "Nascita"))),
        amount=AmountRule("fixed", amount_cents=1650),
        subject_template="Diritti di segreteria – {tipo}",
        debtor=DebtorMapping("cf", "nome", "email"),
    )
    return replace(base, **changes)


@pytest.mark.parametrize(("kind", "raw", "expected"), [
    ("text", "  Via Roma 1 ", "Via Roma 1"),
    ("number", "1.000", 1000),
    ("date", "2027-03-01", "2027-03-01"),
    ("date", "1/3/2027", "2027-03-01"),
    ("fiscal_code", "rssmra80a01h501u", CF),
    ("email", "Mario.Rossi@Example.IT", "mario.rossi@example.it"),
    ("plate", "ab 123 cd", "AB123CD"),
    ("checkbox", "on", True),
])
def test_answers_are_read_into_plain_values(kind, raw, expected):
    spec = FieldSpec("x", "X", kind, choices=("a",))
    assert read_answer(spec, raw, today=TODAY) == expected


@pytest.mark.parametrize(("spec", "raw", "message"), [
    (FieldSpec("x", "X", "text", required=True), "  ", "Campo obbligatorio."),
    (FieldSpec("x", "X", "text", max_length=5), "troppo lungo", "Al massimo 5 caratteri"),
    (FieldSpec("x", "X", "text", min_length=3), "ab", "Almeno 3 caratteri."),
    (FieldSpec("x", "X", "number", min_value=1, max_value=10), "11", "Il valore massimo è 10."),
    (FieldSpec("x", "X", "number"), "2,5", "numero intero"),
    (FieldSpec("x", "X", "date"), "31/02/2027", "data valida"),
    (FieldSpec("x", "X", "choice", choices=("a", "b")), "c", "Scegliere una delle voci"),
    (FieldSpec("x", "X", "fiscal_code"), "RSSMRA80A01H501X", "non valido"),
    (FieldSpec("x", "X", "email"), "mario@", "e-mail non valido"),
    (FieldSpec("x", "X", "plate"), "ABCDEFG", "Targa non valida"),
    (FieldSpec("x", "X", "checkbox", required=True), "", "obbligatoria"),
])
def test_a_wrong_answer_says_what_to_correct(spec, raw, message):
    with pytest.raises(AnswerError, match=message):
        read_answer(spec, raw, today=TODAY)


def test_text_is_capped_whatever_the_form_says():
    spec = FieldSpec("x", "X", "text", max_length=10_000)
    assert spec.text_max == TEXT_HARD_MAX
    with pytest.raises(AnswerError, match=f"Al massimo {TEXT_HARD_MAX}"):
        read_answer(spec, "a" * (TEXT_HARD_MAX + 1), today=TODAY)


def test_filling_a_form_gives_amount_subject_and_debtor():
    filled = fill(form(), {"cf": CF.lower(), "nome": "Mario  Rossi", "tipo": "Nascita", "email": ""}, today=TODAY)
    assert filled.amount.cents == 1650
    assert filled.subject == "Diritti di segreteria – Nascita"
    assert (filled.debtor_fiscal_code, filled.debtor_name, filled.debtor_email) == (CF, "Mario Rossi", None)
    assert ("Tipo", "Nascita") in filled.summary


def test_every_wrong_field_is_reported_at_once():
    with pytest.raises(ValidationFailed) as caught:
        fill(form(), {"cf": "XYZ", "nome": "", "tipo": "Altro"}, today=TODAY)
    assert set(caught.value.by_field()) == {"cf", "nome", "tipo"}


def test_choice_amount_uses_the_entry_and_its_label_in_the_subject():
    rule = AmountRule("choice", options=(AmountOption("In carta libera", 26), AmountOption("In bollo", 52)))
    definition = form(amount=rule, subject_template="Certificato di {tipo} {voce}")
    filled = fill(definition, {"cf": CF, "nome": "M R", "tipo": "Nascita", amounts.CHOICE_INPUT: "1"}, today=TODAY)
    assert (filled.amount.cents, filled.subject) == (52, "Certificato di Nascita In bollo")
    with pytest.raises(ValidationFailed) as caught:
        fill(definition, {"cf": CF, "nome": "M R", "tipo": "Nascita", amounts.CHOICE_INPUT: "7"}, today=TODAY)
    assert caught.value.by_field() == {amounts.CHOICE_INPUT: ["Scegliere una delle voci."]}


def test_quantity_times_unit_price():
    fields = (*form().fields, FieldSpec("giorni", "Giorni", "number", required=True, min_value=1, max_value=30))
    definition = form(fields=fields, amount=AmountRule("quantity", amount_cents=500, quantity_field="giorni"))
    filled = fill(definition, {"cf": CF, "nome": "M R", "tipo": "Nascita", "giorni": "3"}, today=TODAY)
    assert filled.amount.cents == 1500
    assert filled.amount.explanation == "3 × 5,00\u00a0€"


@pytest.mark.parametrize(("typed", "error"), [("4,99", "minimo"), ("500,01", "massimo"), ("abc", "non valido")])
def test_typed_amount_stays_within_its_limits(typed, error):
    definition = form(amount=AmountRule("typed", min_cents=500, max_cents=50000))
    with pytest.raises(ValidationFailed, match=error):
        fill(definition, {"cf": CF, "nome": "M R", "tipo": "Nascita", amounts.TYPED_INPUT: typed}, today=TODAY)
    ok = fill(definition, {"cf": CF, "nome": "M R", "tipo": "Nascita", amounts.TYPED_INPUT: "12,50"}, today=TODAY)
    assert ok.amount.cents == 1250


@pytest.mark.parametrize(("days_ago", "cents"), [(0, 2940), (5, 2940), (6, 4200), (-1, 4200)])
def test_traffic_fine_is_reduced_by_30_percent_within_5_days(days_ago, cents):
    template = templates.get("cds").definition
    raw = {"codice_fiscale": CF, "nome": "Mario Rossi", "verbale": "123/A", "targa": "AB123CD",
           "notifica": (TODAY - timedelta(days=days_ago)).isoformat(), amounts.TYPED_INPUT: "42,00"}
    assert fill(template, raw, today=TODAY).amount.cents == cents


@pytest.mark.parametrize("template", templates.TEMPLATES, ids=lambda t: t.key)
def test_every_ready_template_is_a_valid_form(template):
    check_definition(template.definition)


def test_a_definition_survives_storage():
    definition = templates.get("cds").definition
    assert FormDefinition.from_dict(definition.to_dict()) == definition


@pytest.mark.parametrize(("changes", "field"), [
    ({"title": ""}, "title"),
    ({"fields": ()}, "fields"),
    ({"subject_template": "Diritti {inesistente}"}, "subject_template"),
    ({"subject_template": "Diritti {tipo"}, "subject_template"),
    ({"amount": AmountRule("fixed")}, "amount_cents"),
    ({"amount": AmountRule("typed", min_cents=1000, max_cents=500)}, "min_cents"),
    ({"amount": AmountRule("quantity", amount_cents=100, quantity_field="nome")}, "quantity_field"),
    ({"amount": AmountRule("fixed", amount_cents=100, reduction=Reduction(30, 5, "nome"))}, "reduction_date_field"),
    ({"debtor": DebtorMapping("nome", "nome")}, "debtor_fiscal_code_field"),
    ({"debtor": DebtorMapping("cf", "email")}, "debtor_name_field"),
])
def test_the_builder_refuses_an_inconsistent_form(changes, field):
    with pytest.raises(ValidationFailed) as caught:
        check_definition(form(**changes))
    assert field in caught.value.by_field()


def test_field_problems_name_the_row():
    fields = (*form().fields, FieldSpec("cf", "", "choice"))
    with pytest.raises(ValidationFailed) as caught:
        check_definition(form(fields=fields))
    assert {"fields.5.key", "fields.5.label", "fields.5.choices"} <= set(caught.value.by_field())


def test_subject_is_collapsed_and_cut_to_140():
    assert subjects.render("Mensa – {alunno}", {"alunno": ""}) == "Mensa"
    assert len(subjects.render("{a}", {"a": "x" * 300})) == 140
