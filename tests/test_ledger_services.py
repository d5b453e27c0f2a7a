"""Ledger operations: create_position (validation, idempotency, transfers) and transition."""

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.errors import ValidationFailed
from portal.ledger.inputs import OptionInput, TransferInput
from portal.ledger.models import Debtor, Event, NumberCounter, PaymentOption, Position, Transfer
from portal.ledger.notice_numbers import is_valid_nav
from portal.ledger.status import IgnoredTransition, InvalidTransition, PositionStatus
from portal.settings import services as settings_svc
from tests.conftest import CF_COMUNE, CF_PERSON, IBAN_COMUNE, position_input

CF_PROVINCIA = "00743110157"
IBAN_PROVINCIA = "IT25O0306909606100000012345"
TODAY = date.today()
DUE = TODAY + timedelta(days=30)


def _tefa(amount=10000, share=500, **second):
    return [
        TransferInput(amount_cents=amount - share),
        TransferInput(amount_cents=share, **{"beneficiary_fiscal_code": CF_PROVINCIA,
                                             "beneficiary_name": "Provincia di Prova", "iban": IBAN_PROVINCIA,
                                             "taxonomy_code": "9/0201102IM/", **second}),
    ]


def _counts():
    return {model.__tablename__: db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (Position, PaymentOption, Transfer, Debtor, Event)}


def _bad(service, **changes):
    """A valid input with some parts replaced; ``single``/``installments`` take OptionInputs."""
    data = position_input(service)
    for name, value in changes.items():
        if name.startswith("debtor_"):
            setattr(data.debtor, name.removeprefix("debtor_"), value)
        else:
            setattr(data, name, value)
    return data


BAD_INPUTS = {
    "invalid CF": ({"debtor_fiscal_code": "RCCMNL83S18D969A"}, {"debtor.fiscal_code"}),
    "CF of wrong length": ({"debtor_fiscal_code": "RCCMNL83S18"}, {"debtor.fiscal_code"}),
    "no debtor name": ({"debtor_name": "   "}, {"debtor.name"}),
    "bad CAP": ({"debtor_postal_code": "001"}, {"debtor.postal_code"}),
    "bad province": ({"debtor_province": "Roma"}, {"debtor.province"}),
    "bad email": ({"debtor_email": "mario.rossi"}, {"debtor.email"}),
    "no subject": ({"subject": "  "}, {"subject"}),
    "long subject": ({"subject": "x" * 141}, {"subject"}),
    "no options": ({"single": None}, {"options"}),
    # A wrong amount is reported once, on the amount: no implicit transfer is made from it.
    "amount 0": ({"single": OptionInput(amount_cents=0, due_date=DUE)}, {"single.amount"}),
    "negative amount": ({"single": OptionInput(amount_cents=-100, due_date=DUE)}, {"single.amount"}),
    "past due date": ({"single": OptionInput(amount_cents=100, due_date=TODAY - timedelta(days=1))},
                      {"single.due_date"}),
    "invalid IBAN": ({"single": OptionInput(amount_cents=100, due_date=DUE, transfers=[
        TransferInput(amount_cents=100, iban="IT60X0542811101000000123457")])}, {"single.transfers.1.iban"}),
    "unknown taxonomy": ({"single": OptionInput(amount_cents=100, due_date=DUE, transfers=[
        TransferInput(amount_cents=100, taxonomy_code="9/0101199IM/")])}, {"single.transfers.1.taxonomy_code"}),
    "expired taxonomy": ({"single": OptionInput(amount_cents=100, due_date=DUE, transfers=[
        TransferInput(amount_cents=100, taxonomy_code="9/0301119SP/")])}, {"single.transfers.1.taxonomy_code"}),
    "transfers not adding up": ({"single": OptionInput(amount_cents=10000, due_date=DUE, transfers=_tefa(9000))},
                                {"single.transfers"}),
    "transfer amount 0": ({"single": OptionInput(amount_cents=10000, due_date=DUE, transfers=[
        TransferInput(amount_cents=10000), TransferInput(amount_cents=0, beneficiary_fiscal_code=CF_PROVINCIA,
                                                         beneficiary_name="Provincia", iban=IBAN_PROVINCIA)])},
                          {"single.transfers.2.amount"}),
    "six transfers": ({"single": OptionInput(amount_cents=600, due_date=DUE,
                                             transfers=[TransferInput(amount_cents=100) for _ in range(6)])},
                      {"single.transfers"}),
    "first beneficiary not the creditor": ({"single": OptionInput(amount_cents=100, due_date=DUE, transfers=[
        TransferInput(amount_cents=100, beneficiary_fiscal_code=CF_PROVINCIA, beneficiary_name="Provincia",
                      iban=IBAN_PROVINCIA)])}, {"single.transfers.1.beneficiary_fiscal_code"}),
    "second beneficiary without IBAN and name": (
        {"single": OptionInput(amount_cents=10000, due_date=DUE, transfers=_tefa(iban=None, beneficiary_name=None))},
        {"single.transfers.2.iban", "single.transfers.2.beneficiary_name"}),
    "beneficiary with a person's CF": (
        {"single": OptionInput(amount_cents=10000, due_date=DUE, transfers=_tefa(beneficiary_fiscal_code=CF_PERSON))},
        {"single.transfers.2.beneficiary_fiscal_code"}),
    "single installment plan": ({"installments": [OptionInput(amount_cents=100, due_date=DUE)]}, {"installments"}),
    "installments out of order": ({"installments": [OptionInput(amount_cents=100, due_date=DUE + timedelta(days=9)),
                                                    OptionInput(amount_cents=100, due_date=DUE)]}, {"installments"}),
    "installment amount 0": ({"installments": [OptionInput(amount_cents=100, due_date=DUE),
                                               OptionInput(amount_cents=0, due_date=DUE + timedelta(days=30))]},
                             {"installments.2.amount"}),
    "long external id": ({"external_id": "x" * 101}, {"external_id"}),
}


@pytest.mark.parametrize(("changes", "fields"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_refused_and_nothing_is_stored(creditor, service, changes, fields):
    data = _bad(service, **changes)
    before = _counts()
    with pytest.raises(ValidationFailed) as info:
        ledger.create_position(db.session, creditor, data, actor="test")
    assert set(info.value.by_field()) == fields
    assert all(message for messages in info.value.by_field().values() for message in messages)
    db.session.commit()  # whatever the session holds would be written now
    assert _counts() == before == {"positions": 0, "payment_options": 0, "transfers": 0, "debtors": 0, "events": 0}
    assert db.session.get(NumberCounter, creditor.id).next_value == 1  # no number burnt either


def test_every_problem_is_reported_at_once(creditor, service):
    data = _bad(service, debtor_fiscal_code="XX", subject="",
                single=OptionInput(amount_cents=0, due_date=TODAY - timedelta(days=1)),
                installments=[OptionInput(amount_cents=100, due_date=DUE)])
    with pytest.raises(ValidationFailed) as info:
        ledger.create_position(db.session, creditor, data, actor="test")
    assert set(info.value.by_field()) == {"debtor.fiscal_code", "subject", "single.amount", "single.due_date",
                                          "installments"}
    assert "debtor.fiscal_code: " in str(info.value)


def test_unknown_or_inactive_service(creditor, service, make_service):
    data = position_input(service)
    data.service_id = service.id + 1000
    with pytest.raises(ValidationFailed) as info:
        ledger.create_position(db.session, creditor, data, actor="test")
    assert set(info.value.by_field()) == {"service_id"}
    closed = make_service(code="OLD", active=False)
    with pytest.raises(ValidationFailed, match="non è attivo"):
        ledger.create_position(db.session, creditor, position_input(closed), actor="test")
    assert _counts()["positions"] == 0


def test_position_with_installments_is_stored_whole(creditor, service):
    data = position_input(service, amount=10000, installments=(5000, 5000))
    position, created = ledger.create_position(db.session, creditor, data, actor="user:1")
    db.session.commit()
    assert created
    assert position.status == PositionStatus.DRAFT
    assert position.amount_cents == 10000
    assert position.paid_cents == 0
    assert position.due_date == DUE
    assert position.iupd.startswith(CF_COMUNE + "-")
    assert [o.kind for o in position.options] == ["single", "installment", "installment"]
    assert [o.installment_number for o in position.options] == [None, 1, 2]
    assert [o.description for o in position.options] == ["TARI 2027", "TARI 2027 - rata 1 di 2",
                                                         "TARI 2027 - rata 2 di 2"]
    assert [int(o.iuv[2:15]) for o in position.options] == [1, 2, 3]
    assert all(is_valid_nav(o.notice_number) and o.notice_number == "3" + o.iuv for o in position.options)
    for option in position.options:
        [transfer] = option.transfers
        assert (transfer.index, transfer.amount_cents) == (1, option.amount_cents)
        assert (transfer.beneficiary_fiscal_code, transfer.iban) == (CF_COMUNE, IBAN_COMUNE)
        assert transfer.taxonomy_code == service.taxonomy_code
        assert transfer.beneficiary_name == creditor.name
        assert transfer.remittance == "TARI 2027"
    [event] = position.events
    assert event.kind == "created"
    assert event.actor == "user:1"
    assert event.details["notice_numbers"] == [o.notice_number for o in position.options]
    assert position.debtor.kind == "F"
    assert position.debtor.fiscal_code == CF_PERSON


def test_plan_only_position_amount_is_the_plan_total(creditor, service):
    position, _ = ledger.create_position(
        db.session, creditor, position_input(service, amount=0, installments=(3000, 4000, 5000)), actor="test")
    assert position.amount_cents == 12000
    assert position.single_option is None
    assert [o.amount_cents for o in position.installments] == [3000, 4000, 5000]


def test_tefa_second_beneficiary(creditor, service):
    position, _ = ledger.create_position(
        db.session, creditor, position_input(service, amount=10000, transfers=_tefa()), actor="test")
    db.session.commit()
    db.session.expire_all()
    first, second = db.session.get(Position, position.id).single_option.transfers
    assert (first.index, first.amount_cents, first.beneficiary_fiscal_code, first.iban, first.taxonomy_code) == (
        1, 9500, CF_COMUNE, IBAN_COMUNE, "9/0101101IM/")
    assert (second.index, second.amount_cents, second.beneficiary_fiscal_code, second.iban, second.taxonomy_code) == (
        2, 500, CF_PROVINCIA, IBAN_PROVINCIA, "9/0201102IM/")
    assert second.beneficiary_name == "Provincia di Prova"


def test_idempotent_on_source_and_external_id(creditor, service):
    first, created = ledger.create_position(
        db.session, creditor, position_input(service, external_id=" TARI-2027-42 ", source="api:tributi"),
        actor="test")
    db.session.commit()
    assert created
    assert first.external_id == "TARI-2027-42"
    before = _counts()
    counter = db.session.get(NumberCounter, creditor.id).next_value

    again, created = ledger.create_position(
        db.session, creditor, position_input(service, external_id="TARI-2027-42", source="api:tributi"),
        actor="test")
    db.session.commit()
    assert not created
    assert again.id == first.id
    assert _counts() == before
    assert db.session.get(NumberCounter, creditor.id).next_value == counter

    # The same id from another channel is another position.
    other, created = ledger.create_position(
        db.session, creditor, position_input(service, external_id="TARI-2027-42", source="import"), actor="test")
    assert created
    assert other.id != first.id


def test_debtor_is_reused_and_refreshed(creditor, service):
    first, _ = ledger.create_position(db.session, creditor, position_input(service), actor="test")
    data = position_input(service, name="Mario  Rossi Bianchi")
    data.debtor.email = "mario@example.org"
    second, _ = ledger.create_position(db.session, creditor, data, actor="test")
    db.session.commit()
    assert first.debtor_id == second.debtor_id
    assert second.debtor.name == "Mario Rossi Bianchi"
    assert second.debtor.email == "mario@example.org"
    assert _counts()["debtors"] == 1


def test_transition_stamps_and_logs(make_position):
    position = make_position()
    published = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)
    event = ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="user:7", at=published,
                              reason="ok")
    db.session.commit()
    assert position.status == PositionStatus.PUBLISHED
    assert position.published_at == published
    assert (event.kind, event.actor, event.at) == ("published", "user:7", published)
    assert event.details == {"previous": "draft", "reason": "ok"}

    ledger.transition(db.session, position, PositionStatus.PAID, actor="pagopa")
    db.session.commit()
    assert position.paid_at is not None
    assert position.published_at == published
    db.session.expire_all()
    events = db.session.scalars(sa.select(Event).where(Event.position_id == position.id).order_by(Event.id)).all()
    assert [(e.kind, e.details.get("previous")) for e in events] == [
        ("created", None), ("published", "draft"), ("paid", "published")]


def test_transition_keeps_the_first_stamp(make_position):
    position = make_position()
    first = datetime(2027, 1, 10, tzinfo=UTC)
    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test", at=first)
    ledger.transition(db.session, position, PositionStatus.DRAFT, actor="test")
    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test")
    db.session.commit()
    assert position.published_at == first
    assert [e.kind for e in position.events] == ["created", "published", "draft", "published"]


def test_refused_transitions_write_nothing(make_position):
    position = make_position()
    with pytest.raises(InvalidTransition):
        ledger.transition(db.session, position, PositionStatus.PAID, actor="test")
    with pytest.raises(IgnoredTransition):
        ledger.transition(db.session, position, PositionStatus.DRAFT, actor="test")
    db.session.commit()
    assert position.status == PositionStatus.DRAFT
    assert position.paid_at is None
    assert [e.kind for e in position.events] == ["created"]


def test_create_creditor_validates(ctx):
    from portal.ledger.identifiers import IdentifierError
    from portal.ledger.notice_numbers import NoticeNumberError

    with pytest.raises(IdentifierError):
        settings_svc.create_creditor(db.session, fiscal_code="80015010724", name="X", segregation_code="01")
    with pytest.raises(NoticeNumberError):
        settings_svc.create_creditor(db.session, fiscal_code=CF_COMUNE, name="X", segregation_code="47")
    with pytest.raises(NoticeNumberError):
        settings_svc.create_creditor(db.session, fiscal_code=CF_COMUNE, name="X", segregation_code="3")
    comune = settings_svc.create_creditor(db.session, fiscal_code=f" {CF_COMUNE} ", name="  Comune  ",
                                          segregation_code=2)
    db.session.commit()
    assert (comune.fiscal_code, comune.name, comune.segregation_code) == (CF_COMUNE, "Comune", "02")
    assert db.session.get(NumberCounter, comune.id).next_value == 1


def test_full_width_fiscal_code_is_the_same_debtor(creditor, service):
    """A full-width digit is NFKC-normalised: same debtor row, ASCII code (what GPD receives)."""
    first, _ = ledger.create_position(db.session, creditor, position_input(service), actor="test")
    wide = CF_PERSON.replace("501", "50１")
    second, _ = ledger.create_position(db.session, creditor, position_input(service, fiscal_code=wide), actor="test")
    db.session.commit()
    assert second.debtor_id == first.debtor_id
    assert second.debtor.fiscal_code == CF_PERSON
    assert _counts()["debtors"] == 1


@pytest.mark.parametrize(("code", "message"), [
    ("00000000000", "soli zeri"),
    ("0074311015٧", "11 cifre"),
    ("00743110158", "cifra di controllo"),
])
def test_beneficiary_fiscal_code_is_an_entes_code(creditor, service, code, message):
    data = _bad(service, single=OptionInput(amount_cents=10000, due_date=DUE,
                                            transfers=_tefa(beneficiary_fiscal_code=code)))
    with pytest.raises(ValidationFailed) as info:
        ledger.create_position(db.session, creditor, data, actor="test")
    messages = info.value.by_field()["single.transfers.2.beneficiary_fiscal_code"]
    assert any(message in m for m in messages)


def test_beneficiary_fiscal_code_in_full_width_is_stored_in_ascii(creditor, service):
    wide = CF_PROVINCIA[:-1] + "７"
    data = _bad(service, single=OptionInput(amount_cents=10000, due_date=DUE,
                                            transfers=_tefa(beneficiary_fiscal_code=wide)))
    position, _ = ledger.create_position(db.session, creditor, data, actor="test")
    db.session.commit()
    assert position.options[0].transfers[1].beneficiary_fiscal_code == CF_PROVINCIA


def test_all_zero_debtor_code_is_refused(creditor, service):
    with pytest.raises(ValidationFailed) as info:
        ledger.create_position(db.session, creditor, _bad(service, debtor_fiscal_code="00000000000"), actor="test")
    assert "soli zeri" in info.value.by_field()["debtor.fiscal_code"][0]


@pytest.mark.parametrize("code", ["00000000000", "0000000000０"])
def test_creditor_with_an_all_zero_fiscal_code_is_refused(ctx, code):
    from portal.ledger.identifiers import IdentifierError

    with pytest.raises(IdentifierError, match="soli zeri"):
        settings_svc.create_creditor(db.session, fiscal_code=code, name="Comune Zero", segregation_code="01")
