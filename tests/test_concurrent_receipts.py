"""Receipts for every option of a position arriving at the same instant, on PostgreSQL and on the embedded SQLite.

Whatever the engine, one way of paying wins (the single payment or the installments), every other receipt is
stored and flagged, and ``paid_cents`` equals what the paid options hold. The last test does it over real HTTP
against a server started as ``make run`` starts it (SQLite, in-process jobs, ``flask run``).
"""

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger import services as ledger
from portal.ledger.models import Creditor, PaymentOption, Position, Receipt, Service
from portal.ledger.payments import FLAG_ALREADY_PAID, CreditorRef, record_receipt
from portal.ledger.status import OptionStatus, PositionStatus
from portal.settings import services as settings_svc
from tests.conftest import CF_COMUNE, IBAN_COMUNE, position_input
from tests.test_ledger_payments import receipt_for
from tests.test_pagopa_receipts import BROKER, STATION, rt_request
from tests.test_sqlite import _logging_kept, sqlite_app

ROOT = Path(__file__).resolve().parent.parent
#: Positions raced at once, each with a single payment and three installments.
POSITIONS = 3
INSTALLMENTS = (4000, 3000, 3000)


def seed(session) -> list[int]:
    """A Comune with its station, and published positions payable in one go or in three installments."""
    comune = session.scalar(sa.select(Creditor))
    if comune is None:
        comune = settings_svc.create_creditor(session, fiscal_code=CF_COMUNE, name="Comune di Prova",
                                              segregation_code="01", broker_id=BROKER, station_id=STATION)
        settings_svc.add_account(session, comune, iban=IBAN_COMUNE, label="Tesoreria")
        session.add(Service(creditor=comune, code="TARI", name="TARI", taxonomy_code="9/0101101IM/",
                            account=comune.accounts[0]))
        session.flush()
    service = session.scalar(sa.select(Service))
    ids = []
    for _ in range(POSITIONS):
        position, _ = ledger.create_position(
            session, comune, position_input(service, amount=10000, installments=INSTALLMENTS,
                                            due=date.today() + timedelta(days=30)),
            actor="test", enqueue_sync=False)
        ledger.transition(session, position, PositionStatus.PUBLISHED, actor="test")
        ids.append(position.id)
    session.commit()
    return ids


def all_receipts(session, position_ids) -> list:
    """A receipt for every option of every position (detached values only)."""
    options = session.scalars(sa.select(PaymentOption).where(PaymentOption.position_id.in_(position_ids))
                              .order_by(PaymentOption.id)).all()
    return [receipt_for(option) for option in options]


def check_ledger(session, position_ids) -> None:
    """One way of paying won on each position, the rest is flagged, and the totals agree with the rows."""
    session.expire_all()
    for position in session.scalars(sa.select(Position).where(Position.id.in_(position_ids))):
        options = position.options
        receipts = session.scalars(sa.select(Receipt).where(Receipt.position_id == position.id)).all()
        assert len(receipts) == 1 + len(INSTALLMENTS), "every receipt is stored"
        paid = [o for o in options if o.status == OptionStatus.PAID]
        assert paid, "something was paid"
        assert len({o.kind for o in paid}) == 1, "the single payment and installments are never both paid"
        assert position.paid_cents == sum(o.amount_cents for o in paid)
        assert position.status == PositionStatus.PAID
        applied = [r for r in receipts if r.flag is None]
        flagged = [r for r in receipts if r.flag is not None]
        assert sum(r.amount_cents for r in applied) == position.paid_cents
        assert {r.flag for r in flagged} <= {FLAG_ALREADY_PAID}
        assert len(applied) == len(paid)
        assert {r.option_id for r in applied} == {o.id for o in paid}


def race(app, receipts) -> None:
    """Record every receipt in its own thread and transaction, all released at the same instant."""
    barrier = threading.Barrier(len(receipts))
    errors = []

    def one(data):
        with app.app_context():
            try:
                creditor = CreditorRef.of(db.session.scalar(sa.select(Creditor)))
                db.session.commit()
                barrier.wait(10)
                record_receipt(db.session, creditor, data, source="paSendRTV2", raw_xml="<receipt/>")
                db.session.commit()
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                db.session.rollback()
            finally:
                db.session.remove()

    threads = [threading.Thread(target=one, args=(data,)) for data in receipts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


def test_simultaneous_receipts_on_postgresql(app, ctx):
    ids = seed(db.session)
    receipts = all_receipts(db.session, ids)
    db.session.remove()
    race(app, receipts)
    check_ledger(db.session, ids)


def test_simultaneous_receipts_on_sqlite(tmp_path):
    with sqlite_app(tmp_path / "paybox.db") as app:
        ids = seed(db.session)
        receipts = all_receipts(db.session, ids)
        db.session.remove()
        race(app, receipts)
        check_ledger(db.session, ids)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    with sqlite_app(tmp_path / "paybox.db"):
        assert db.session.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(sa.text("PRAGMA busy_timeout")).scalar() >= 30000


# --- Over HTTP, against `make run`'s server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_simultaneous_receipts_over_http_to_the_embedded_default(tmp_path):
    database = tmp_path / "paybox.db"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PAYBOX_ENV": "development",
           "NOTICES_DIR": str(tmp_path / "notices"), "PAGOPA_GPD_URL": f"http://127.0.0.1:{free_port()}/gpd"}
    for name in ("REDIS_URL", "PAYBOX_JOBS_MODE", "TEST_DATABASE_URL"):
        env.pop(name, None)
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    with sqlite_app(database), _logging_kept():  # migrated to head, as `make run`'s `flask db upgrade` does
        ids = seed(db.session)
        payloads = [rt_request(data) for data in all_receipts(db.session, ids)]
        db.session.remove()
        port = free_port()
        # As `make run` serves it: the development server, threaded, jobs in this process, no Redis.
        server = subprocess.Popen([*flask, "run", "--host", "127.0.0.1", "--port", str(port)],  # noqa: S603
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    requests.get(f"{base}/officer/login", timeout=5)
                    break
                except (requests.ConnectionError, requests.Timeout):
                    time.sleep(0.1)
            barrier = threading.Barrier(len(payloads))
            answers = []

            def send(payload):
                barrier.wait(10)
                response = requests.post(f"{base}/pagopa/paForNode", data=payload, timeout=60, headers={
                    "Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"paSendRTV2"'})
                answers.append((response.status_code, b"<outcome>OK</outcome>" in response.content))

            threads = [threading.Thread(target=send, args=(p,)) for p in payloads]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(90)
        finally:
            server.terminate()
            output = server.communicate(timeout=10)[0].decode(errors="replace")
        assert answers == [(200, True)] * len(payloads), output[-3000:]
        check_ledger(db.session, ids)
