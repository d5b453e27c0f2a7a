"""Fixtures for notices and bill runs: billable positions with varied addresses, bill-run settings for a test."""

from datetime import date, timedelta

import pytest

from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.inputs import DebtorInput, OptionInput, PositionInput
from portal.ledger.status import PositionStatus
from portal.notices import billrun

#: Valid fiscal codes (check characters verified) of different people.
PEOPLE = [
    ("RSSMRA80A01H501U", "Mario Rossi", "Via Roma", "1", "00184", "Roma", "RM"),
    ("BNCLRA85M41F205C", "Laura Bianchi", "Corso d'Italia", "15/B", "20121", "Milano", "MI"),
    ("VRDGPP70C15L219C", "Giuseppe Verdi", "Piazza Castello", "3", "10121", "Torino", "TO"),
    ("NREFNC90E50A944N", "Francesca Neri", "Via dell'Indipendenza", "88", "40121", "Bologna", "BO"),
    ("GLLLCU75T10D612Y", "Luca Gialli", "Via Tornabuoni", "2", "50123", "Firenze", "FI"),
    ("BLUSRA95H60F839V", "Sara Blu", None, None, None, None, None),  # no postal address
]


@pytest.fixture
def settings(app, tmp_path, monkeypatch):
    """Chunks of 2 notices under a temporary directory, for the jobs too (they read the app's settings)."""
    monkeypatch.setitem(app.config, "NOTICES_DIR", str(tmp_path / "notices"))
    monkeypatch.setitem(app.config, "NOTICES_CHUNK_SIZE", 2)
    return billrun.BillRunSettings.from_config(app.config)


def publish(position):
    ledger.transition(db.session, position, PositionStatus.PUBLISHED, actor="test")


@pytest.fixture
def billable(creditor, service):
    """Six published positions (one without address, one with 3 installments), newest last."""
    made = []
    for n, (cf, name, street, civic, cap, city, prov) in enumerate(PEOPLE):
        data = PositionInput(
            service_id=service.id,
            debtor=DebtorInput(fiscal_code=cf, name=name, street=street, civic_number=civic, postal_code=cap,
                               city=city, province=prov, email=f"{name.split()[0].lower()}@example.org"),
            subject=f"TARI 2027 - utenza {n + 1}",
            single=OptionInput(amount_cents=10_000 + n, due_date=date.today() + timedelta(days=30)),
            installments=[OptionInput(amount_cents=a, due_date=date.today() + timedelta(days=30 * (i + 1)))
                          for i, a in enumerate((3_000, 3_000, 4_000 + n))] if n == 1 else [],
        )
        position, _ = ledger.create_position(db.session, creditor, data, actor="test", enqueue_sync=False)
        publish(position)
        made.append(position)
    db.session.commit()
    return made


