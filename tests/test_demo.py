"""The demo data: 1,000 positions in every status, with valid identifiers and consistent money."""

from collections import Counter, defaultdict

import sqlalchemy as sa
from schwifty import IBAN
from stdnum import luhn
from stdnum.it import codicefiscale
from werkzeug.security import check_password_hash

from portal import demo
from portal.accounts.models import Role, User
from portal.extensions import db
from portal.ledger import notice_numbers, taxonomy
from portal.ledger.models import Account, Creditor, Debtor, Event, PaymentOption, Position, Service, Transfer
from portal.ledger.status import OPEN_STATUSES, OptionStatus, PositionStatus
from portal.ledger.types import utcnow


def test_demo_load(ctx):
    result = demo.load(db.session, positions=1000)
    db.session.commit()
    session = db.session

    assert result.position_count == 1000
    assert session.scalar(sa.select(sa.func.count()).select_from(Position)) == 1000
    statuses = Counter(PositionStatus(s) for s in session.scalars(sa.select(Position.status)))
    assert set(statuses) == set(PositionStatus), statuses
    assert result.by_status == statuses

    creditor = session.scalar(sa.select(Creditor))
    assert creditor.name == "Comune di Valleverde"
    assert luhn.is_valid(creditor.fiscal_code)
    for account in session.scalars(sa.select(Account)):
        assert IBAN(account.iban).compact == account.iban
    assert {a.is_postal for a in session.scalars(sa.select(Account))} == {True, False}

    debtors = session.scalars(sa.select(Debtor)).all()
    assert len(debtors) == 200
    for debtor in debtors:
        if debtor.kind == "F":
            assert codicefiscale.is_valid(debtor.fiscal_code), debtor.fiscal_code
        else:
            assert len(debtor.fiscal_code) == 11, debtor.fiscal_code
            assert luhn.is_valid(debtor.fiscal_code), debtor.fiscal_code
    assert {d.kind for d in debtors} == {"F", "G"}
    assert any(d.street is None for d in debtors)
    assert any(d.email for d in debtors)

    transfers = defaultdict(list)
    for transfer in session.scalars(sa.select(Transfer).order_by(Transfer.option_id, Transfer.index)):
        transfers[transfer.option_id].append(transfer)
    options = session.scalars(sa.select(PaymentOption).order_by(PaymentOption.id)).all()
    by_position = defaultdict(list)
    taxonomy_codes = set()
    for option in options:
        by_position[option.position_id].append(option)
        assert notice_numbers.is_valid_nav(option.notice_number), option.notice_number
        assert option.iuv == option.notice_number[1:]
        parts = transfers[option.id]
        assert sum(t.amount_cents for t in parts) == option.amount_cents
        assert parts[0].beneficiary_fiscal_code == creditor.fiscal_code
        for transfer in parts:
            taxonomy_codes.add(transfer.taxonomy_code)
            assert IBAN(transfer.iban).compact == transfer.iban
    for code in taxonomy_codes:
        taxonomy.validate(code)

    services = {s.id: s for s in session.scalars(sa.select(Service))}
    positions = session.scalars(sa.select(Position)).all()
    tari_checked = 0
    for position in positions:
        opts = by_position[position.id]
        paid = sum(o.amount_cents for o in opts if o.status == OptionStatus.PAID)
        assert position.paid_cents == paid, position.id
        status = PositionStatus(position.status)
        if status in (PositionStatus.PAID, PositionStatus.REPORTED):
            assert position.paid_cents == position.amount_cents
            assert position.paid_at is not None
            assert all(o.status != OptionStatus.UNPAID for o in opts)
        elif status == PositionStatus.PARTIALLY_PAID:
            assert 0 < position.paid_cents < position.amount_cents
            assert [o for o in opts if o.kind == "installment"][0].status == OptionStatus.PAID
        elif status == PositionStatus.CANCELLED:
            assert position.cancelled_at is not None
            assert all(o.status == OptionStatus.CANCELLED for o in opts)
        if status in OPEN_STATUSES:
            unpaid = [o.due_date for o in opts if o.status == OptionStatus.UNPAID]
            assert position.due_date == min(unpaid), position.id
        if status == PositionStatus.REPORTED:
            assert position.reported_at >= position.paid_at
        if services[position.service_id].code == "TARI":
            tari_checked += 1
            for option in opts:
                province = [t for t in transfers[option.id] if t.beneficiary_fiscal_code == demo.PROVINCE_FISCAL_CODE]
                assert len(province) == 1
                assert province[0].taxonomy_code in ("9/0201102IM/", "9/0201133IM/")
                assert province[0].iban == demo.PROVINCE_IBAN
                assert province[0].index == 2
    assert tari_checked > 100
    assert luhn.is_valid(demo.PROVINCE_FISCAL_CODE)
    assert any(p.notice_issued_at for p in positions)
    assert any(p.replaces_id for p in positions)

    # Every event is in the past and the timeline of each position runs forward.
    timelines = defaultdict(list)
    for event in session.scalars(sa.select(Event).order_by(Event.id)):
        timelines[event.position_id].append(event)
    assert len(timelines) == 1000
    for events in timelines.values():
        assert events[0].kind == "created"
        times = [e.at for e in events]
        assert times == sorted(times)
    payments = session.scalars(sa.select(Event).where(Event.kind == "paid")).all()
    assert payments
    assert all(e.actor == "pagopa" and e.details["receipt_id"] for e in payments)

    users = {u.username: u for u in session.scalars(sa.select(User))}
    assert [login[0] for login in result.logins] == [login[0] for login in demo.logins()]
    for username, password, _ in demo.logins():
        assert len(password) >= 10
        assert check_password_hash(users[username].password_hash, password)
    assert {u.role for u in users.values()} == set(Role)
    assert any(u.services for u in users.values())

    # Loading again into a database that has data does nothing.
    assert demo.load(db.session, positions=1000, if_empty=True) is None


def test_demo_small_and_deterministic(ctx):
    """A small demo still has every status, and the same seed gives the same data."""
    now = utcnow()
    result = demo.load(db.session, positions=30, seed=7, now=now)
    db.session.commit()
    assert set(result.by_status) == set(PositionStatus)
    first = db.session.execute(
        sa.select(Position.subject, Position.amount_cents, Position.status).order_by(Position.id)
    ).all()
    tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
    db.session.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    db.session.commit()
    demo.load(db.session, positions=30, seed=7, now=now)
    db.session.commit()
    second = db.session.execute(
        sa.select(Position.subject, Position.amount_cents, Position.status).order_by(Position.id)
    ).all()
    assert first == second
