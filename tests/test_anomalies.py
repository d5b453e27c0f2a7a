"""Anomalies: every flagged receipt is listed (page and dashboard count) until an officer resolves it with a note."""

import re

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger import anomalies
from portal.ledger import services as ledger
from portal.ledger.models import Event, Receipt
from portal.ledger.payments import (
    FLAG_ALREADY_PAID,
    FLAG_AMOUNT_MISMATCH,
    FLAG_CANCELLED_POSITION,
    FLAG_UNKNOWN_IUV,
    CreditorRef,
    record_receipt,
)
from portal.ledger.status import PositionStatus
from tests.test_ledger_payments import receipt_for

S = PositionStatus


def record(creditor, data):
    outcome = record_receipt(db.session, CreditorRef.of(creditor), data, source="paSendRTV2", raw_xml="<receipt/>")
    db.session.commit()
    return outcome


def published(make_position, **kwargs):
    position = make_position(**kwargs)
    ledger.transition(db.session, position, S.PUBLISHED, actor="test")
    db.session.commit()
    return position


@pytest.fixture
def every_kind(creditor, make_position):
    """One flagged receipt of each kind, and one that paid normally (not an anomaly)."""
    record(creditor, receipt_for(iuv="01999999999999999", amount_cents=1234))  # unknown IUV
    short = published(make_position, amount=10000)
    record(creditor, receipt_for(short.options[0], amount_cents=9000))  # amount mismatch
    paid = published(make_position, amount=5000)
    record(creditor, receipt_for(paid.options[0]))  # paid normally: no anomaly
    cancelled = published(make_position, amount=7000)
    ledger.cancel_position(db.session, cancelled, reason="Errore", actor="test")
    db.session.commit()
    record(creditor, receipt_for(cancelled.options[0]))  # cancelled position
    return {"short": short, "paid": paid, "cancelled": cancelled}


def test_every_kind_of_flagged_receipt_is_listed_and_counted(ctx, creditor, every_kind):
    listed = anomalies.list_anomalies(db.session, creditor.id, anomalies.AnomalyFilter())
    flags = {r.flag for r in listed}
    assert {FLAG_UNKNOWN_IUV, FLAG_AMOUNT_MISMATCH, FLAG_CANCELLED_POSITION} <= flags
    assert None not in flags
    counts = anomalies.count_open(db.session, creditor.id)
    assert counts[FLAG_UNKNOWN_IUV] == 1
    assert counts[FLAG_AMOUNT_MISMATCH] == 1
    assert counts[FLAG_CANCELLED_POSITION] == 1


def test_a_second_payment_of_a_paid_notice_is_an_anomaly(ctx, creditor, make_position):
    position = published(make_position, amount=6000, installments=(3000, 3000))
    record(creditor, receipt_for(position.single_option))
    record(creditor, receipt_for(position.installments[0]))  # the other payment mode, after the first won
    [receipt] = anomalies.list_anomalies(db.session, creditor.id, anomalies.AnomalyFilter(kind=FLAG_ALREADY_PAID))
    assert receipt.position_id == position.id


def test_resolving_needs_a_note_and_goes_on_the_timeline(ctx, creditor, every_kind):
    receipt = db.session.scalar(sa.select(Receipt).where(Receipt.flag == FLAG_AMOUNT_MISMATCH))
    with pytest.raises(anomalies.AnomalyError, match="Indicare"):
        anomalies.resolve(db.session, receipt, note="   ", actor="user:1", actor_user_id=None)
    anomalies.resolve(db.session, receipt, note="Chiesta l'integrazione di 10 €", actor="user:1", actor_user_id=None)
    db.session.commit()
    with pytest.raises(anomalies.AnomalyError, match="già"):
        anomalies.resolve(db.session, receipt, note="di nuovo", actor="user:1", actor_user_id=None)
    assert receipt.resolved_at is not None
    event = db.session.scalar(sa.select(Event).where(Event.kind == "receipt_resolved"))
    assert event.details["note"] == "Chiesta l'integrazione di 10 €"
    assert FLAG_AMOUNT_MISMATCH not in anomalies.count_open(db.session, creditor.id)
    resolved = anomalies.list_anomalies(db.session, creditor.id, anomalies.AnomalyFilter(include_resolved=True))
    assert receipt in resolved


# --- The pages ---------------------------------------------------------------------------------------------------


def test_the_dashboard_counts_them_and_links_the_page(client, login, make_user, every_kind):
    login(make_user("consulta", role="viewer"))
    html = client.get("/officer/").get_data(as_text=True)
    assert re.search(r'data-testid="anomalies-count">3<', html)
    assert 'href="/officer/anomalies"' in html
    page = client.get("/officer/anomalies").get_data(as_text=True)
    for flag in (FLAG_UNKNOWN_IUV, FLAG_AMOUNT_MISMATCH, FLAG_CANCELLED_POSITION):
        assert f'data-flag="{flag}"' in page
    assert "Importo diverso dal dovuto" in page
    assert "Segna come risolta" not in page  # viewers only look


def test_an_operator_resolves_one_with_htmx_and_without(client, login, make_user, every_kind):
    login(make_user("operatore", role="operator"))
    receipt_id = db.session.scalar(sa.select(Receipt.id).where(Receipt.flag == FLAG_CANCELLED_POSITION))
    url = f"/officer/anomalies/{receipt_id}/resolve"
    assert client.post(url, data={"note": "x"}, csrf=False).status_code == 400
    missing = client.post(url, data={"note": ""}, headers={"HX-Request": "true"})
    assert missing.status_code == 422
    assert "Indicare come è stata risolta" in missing.get_data(as_text=True)
    done = client.post(url, data={"note": "Rimborsato con bonifico"}, headers={"HX-Request": "true"})
    assert done.status_code == 200
    assert "Rimborsato con bonifico" in done.get_data(as_text=True)
    assert f'id="anomaly-{receipt_id}"' in done.get_data(as_text=True)
    other = db.session.scalar(sa.select(Receipt.id).where(Receipt.flag == FLAG_UNKNOWN_IUV))
    plain = client.post(f"/officer/anomalies/{other}/resolve", data={"note": "Non nostro: segnalato al PSP"})
    assert plain.status_code == 302
    db.session.expire_all()
    assert anomalies.count_open(db.session, every_kind["short"].creditor_id) == {FLAG_AMOUNT_MISMATCH: 1}


def test_viewers_cannot_resolve_and_scoped_officers_see_only_their_services(client, login, make_user, make_service,
                                                                           every_kind, creditor, make_position):
    receipt_id = db.session.scalar(sa.select(Receipt.id).where(Receipt.flag == FLAG_AMOUNT_MISMATCH))
    mensa = make_service(code="MENSA", name="Mensa", taxonomy_code="9/0201133IM/")
    login(make_user("consulta", role="viewer"))
    assert client.post(f"/officer/anomalies/{receipt_id}/resolve", data={"note": "x"}).status_code == 403
    client.post("/officer/logout")
    login(make_user("op_mensa", role="operator", services=[mensa]))
    page = client.get("/officer/anomalies").get_data(as_text=True)
    assert "data-flag=" not in page  # TARI's receipts and the unknown ones are not theirs
    assert client.post(f"/officer/anomalies/{receipt_id}/resolve", data={"note": "x"}).status_code == 404
