"""Helpers of the collections tests: positions already past their due date."""

from datetime import date, timedelta

import pytest

from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.status import PositionStatus
from tests.conftest import position_input


@pytest.fixture
def legal_rates(ctx):
    """The legal-rate table as the migration seeds it (the tables are emptied after every test)."""
    from portal.collections.settings import seed_legal_rates

    seed_legal_rates(db.session)
    db.session.commit()


@pytest.fixture
def overdue_position(creditor, service, station, legal_rates):
    """Make a published position whose single payment fell due ``days`` ago (created back then)."""

    def make(days=40, amount=25000, svc=None, fiscal_code="RSSMRA80A01H501U", email=None, pec=None,
             status=PositionStatus.PUBLISHED, pagopa=False, **kwargs):
        svc = svc or service
        due = date.today() - timedelta(days=days)
        data = position_input(svc, amount=amount, due=due, fiscal_code=fiscal_code, **kwargs)
        data.debtor.email, data.debtor.pec = email, pec
        position, _ = ledger.create_position(db.session, creditor, data, actor="test", today=due - timedelta(days=30),
                                             enqueue_sync=False)
        ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test")
        if pagopa:  # pagoPA confirmed it (the sandbox tests create it there themselves)
            position.pagopa_synced_target, position.pagopa_synced_version = "published", position.pagopa_version
            position.sync_pending = False
        if status != PositionStatus.PUBLISHED:
            ledger.transition(db.session, position, status, actor="test")
        db.session.commit()
        return position

    return make
