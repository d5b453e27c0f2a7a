"""Reconciliation of reporting flows (FdR) with receipts: what is reported, what is flagged, nothing counted twice."""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger import reporting, reporting_anomalies
from portal.ledger import services as ledger
from portal.ledger.flows import ReportedPayment, ReportingAnomaly, ReportingFlow
from portal.ledger.models import Event, PaymentOption, Position
from portal.ledger.payments import CreditorRef, record_receipt
from portal.ledger.status import PositionStatus
from portal.ledger.types import utcnow
from tests.conftest import TransferInput
from tests.test_ledger_payments import receipt_for

S = PositionStatus
PSP = "BCITITMM"
CF_PROVINCIA = "80011990639"
IBAN_PROVINCIA = "IT60X0542811101000000123456"


def paid(make_position, **kwargs):
    """A published position paid in full by a receipt; returns the position and the receipt."""
    position = make_position(**kwargs)
    ledger.transition(db.session, position, S.PUBLISHED, actor="test")
    db.session.commit()
    option = position.single_option or position.installments[0]
    outcome = record_receipt(db.session, CreditorRef.of(position.service.creditor), receipt_for(option),
                             source="paSendRTV2", raw_xml="<receipt/>")
    db.session.commit()
    return position, outcome.receipt


def lines_for(*items, start=1):
    """Flow lines for (receipt, option) pairs: one per transfer of the creditor, at the transfer's amount."""
    lines = []
    for receipt, option in items:
        for transfer in option.transfers:
            if transfer.beneficiary_fiscal_code != option.position.service.creditor.fiscal_code:
                continue
            lines.append(reporting.FlowLine(index=start + len(lines), iuv=receipt.iuv, iur=receipt.receipt_id,
                                            id_transfer=transfer.index, amount_cents=transfer.amount_cents))
    return lines


def header(lines, *, fdr="2027-01-12BCITITMM-0001", revision=1, **fields):
    values = dict(fdr=fdr, revision=revision, psp_id=PSP, psp_name="Banca di Prova", regulation="SCT-0001",
                  regulation_date=date(2027, 1, 12), published_at=utcnow(), total_payments=len(lines),
                  sum_cents=sum(line.amount_cents for line in lines), raw={"fdr": fdr})
    values.update(fields)
    return reporting.FlowHeader(**values)


def record(creditor, lines, **fields):
    outcome = reporting.record_flow(db.session, creditor, header(lines, **fields), lines)
    db.session.commit()
    return outcome


def anomalies_of(kind=None):
    query = sa.select(ReportingAnomaly).where(ReportingAnomaly.resolved_at.is_(None))
    if kind:
        query = query.where(ReportingAnomaly.kind == kind)
    return db.session.scalars(query).all()


def test_a_flow_reports_paid_positions_with_its_references_on_the_timeline(ctx, creditor, make_position):
    first, r1 = paid(make_position, amount=4250)
    second, r2 = paid(make_position, amount=1000)
    outcome = record(creditor, lines_for((r1, first.single_option), (r2, second.single_option)))
    assert outcome.matched == 2
    assert sorted(outcome.reported_positions) == sorted([first.id, second.id])
    flow = outcome.flow
    assert (flow.sum_cents, flow.matched_cents, flow.difference_cents) == (5250, 5250, 0)
    db.session.expire_all()
    position = db.session.get(Position, first.id)
    assert position.status == S.REPORTED
    assert position.reported_at is not None
    assert position.single_option.reported_at is not None
    event = db.session.scalar(sa.select(Event).where(Event.position_id == first.id, Event.kind == "reported"))
    assert event.details["flow_id"] == "2027-01-12BCITITMM-0001"
    assert event.details["regulation"] == "SCT-0001"
    assert event.details["regulation_date"] == "2027-01-12"
    assert anomalies_of() == []


def test_the_same_flow_twice_changes_nothing(ctx, creditor, make_position):
    position, receipt = paid(make_position, amount=4250)
    lines = lines_for((receipt, position.single_option))
    record(creditor, lines)
    again = record(creditor, lines)
    assert again.duplicate
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ReportingFlow)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ReportedPayment)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Event).where(Event.kind == "reported")) == 1


def test_a_payment_we_have_no_receipt_for_is_an_anomaly(ctx, creditor, make_position):
    position, receipt = paid(make_position, amount=4250)
    lines = lines_for((receipt, position.single_option))
    lines.append(reporting.FlowLine(index=2, iuv="01999999999999999", iur="X" * 20, id_transfer=1, amount_cents=999))
    outcome = record(creditor, lines)
    assert outcome.matched == 1
    [anomaly] = anomalies_of(reporting.UNKNOWN_PAYMENT)
    assert anomaly.iuv == "01999999999999999"
    assert anomaly.amount_cents == 999
    assert "nessuna ricevuta" in anomaly.detail
    assert outcome.flow.difference_cents == 999
    # The rest of the flow is reconciled all the same.
    assert db.session.get(Position, position.id).status == S.REPORTED


def test_an_amount_that_differs_from_the_transfer_is_an_anomaly(ctx, creditor, make_position):
    position, receipt = paid(make_position, amount=4250)
    [line] = lines_for((receipt, position.single_option))
    wrong = reporting.FlowLine(index=1, iuv=line.iuv, iur=line.iur, id_transfer=1, amount_cents=4200)
    outcome = record(creditor, [wrong])
    [anomaly] = anomalies_of(reporting.AMOUNT_MISMATCH)
    assert (anomaly.amount_cents, anomaly.expected_cents, anomaly.position_id) == (4200, 4250, position.id)
    assert outcome.flow.difference_cents == -50
    flagged = db.session.scalar(sa.select(Event).where(Event.position_id == position.id,
                                                       Event.kind == "report_flagged"))
    assert flagged.details["anomaly"] == reporting.AMOUNT_MISMATCH


def test_money_reported_by_two_flows_counts_once(ctx, creditor, make_position):
    position, receipt = paid(make_position, amount=4250)
    lines = lines_for((receipt, position.single_option))
    record(creditor, lines)
    other = record(creditor, lines, fdr="2027-01-13BCITITMM-0001")
    assert other.matched == 0
    assert other.flow.matched_cents == 0
    [anomaly] = anomalies_of(reporting.ALREADY_REPORTED)
    assert anomaly.flow_id == other.flow.id
    active = db.session.scalar(sa.select(sa.func.count()).select_from(ReportedPayment).where(ReportedPayment.active))
    assert active == 1


def test_a_later_revision_replaces_the_earlier_without_double_counting(ctx, creditor, make_position):
    a, ra = paid(make_position, amount=1000)
    b, rb = paid(make_position, amount=2000)
    first = record(creditor, lines_for((ra, a.single_option)))
    assert db.session.get(Position, a.id).status == S.REPORTED
    second = record(creditor, lines_for((ra, a.single_option), (rb, b.single_option)), revision=2)
    db.session.expire_all()
    assert db.session.get(ReportingFlow, first.flow.id).status == "superseded"
    assert second.flow.matched_cents == 3000
    assert db.session.get(Position, b.id).status == S.REPORTED
    active = db.session.scalars(sa.select(ReportedPayment).where(ReportedPayment.active)).all()
    assert {p.flow_id for p in active} == {second.flow.id}
    assert len(active) == 2
    # The list shows the current revision only (superseded ones on request).
    assert [f.id for f in reporting.list_flows(db.session, creditor.id)] == [second.flow.id]
    assert len(reporting.list_flows(db.session, creditor.id, include_superseded=True)) == 2
    # An older revision arriving late is kept, superseded, and changes nothing.
    late = record(creditor, lines_for((ra, a.single_option)), revision=1, fdr="2027-01-12BCITITMM-0001")
    assert late.duplicate


def test_a_revision_with_fewer_payments_withdraws_the_report(ctx, creditor, make_position):
    a, ra = paid(make_position, amount=1000)
    b, rb = paid(make_position, amount=2000)
    record(creditor, lines_for((ra, a.single_option), (rb, b.single_option)))
    outcome = record(creditor, lines_for((ra, a.single_option)), revision=2)
    assert outcome.flow.matched_cents == 1000
    db.session.expire_all()
    assert db.session.get(PaymentOption, b.single_option.id).reported_at is None
    assert db.session.get(PaymentOption, a.single_option.id).reported_at is not None
    [anomaly] = anomalies_of(reporting.REPORT_WITHDRAWN)
    assert anomaly.position_id == b.id
    assert db.session.scalar(sa.select(Event).where(Event.position_id == b.id, Event.kind == "report_withdrawn"))


def test_a_flow_whose_lines_do_not_add_up_to_its_header_is_flagged(ctx, creditor, make_position):
    position, receipt = paid(make_position, amount=4250)
    lines = lines_for((receipt, position.single_option))
    record(creditor, lines, sum_cents=5000, total_payments=2)
    [anomaly] = anomalies_of(reporting.FLOW_TOTALS)
    assert (anomaly.amount_cents, anomaly.expected_cents) == (5000, 4250)


def test_only_the_creditors_own_transfers_need_reporting(ctx, creditor, make_position):
    transfers = [TransferInput(amount_cents=9000),
                 TransferInput(amount_cents=1000, beneficiary_fiscal_code=CF_PROVINCIA, iban=IBAN_PROVINCIA,
                               beneficiary_name="Provincia", taxonomy_code="9/0101101IM/")]
    position, receipt = paid(make_position, amount=10000, transfers=transfers)
    lines = lines_for((receipt, position.single_option))
    assert [line.amount_cents for line in lines] == [9000]  # the Province's share is in the Province's flow
    outcome = record(creditor, lines)
    assert outcome.reported_positions == [position.id]


def test_an_installment_reported_before_the_plan_is_paid(ctx, creditor, make_position):
    position, receipt = paid(make_position, amount=None, installments=(3000, 3000))
    record(creditor, lines_for((receipt, position.installments[0])))
    db.session.expire_all()
    position = db.session.get(Position, position.id)
    assert position.status == S.PARTIALLY_PAID
    assert position.installments[0].reported_at is not None
    assert db.session.scalar(sa.select(Event).where(Event.position_id == position.id,
                                                    Event.kind == "option_reported"))


def test_a_receipt_no_flow_covers_in_time_is_flagged_once_and_clears_when_reported(ctx, creditor, make_position):
    position, receipt = paid(make_position, amount=4250)  # paid on 2027-01-10 (receipt_for)
    too_soon = reporting.flag_unreported(db.session, creditor, older_than=timedelta(days=10),
                                         now=receipt.payment_at + timedelta(days=5))
    assert too_soon == 0
    later = receipt.payment_at + timedelta(days=11)
    assert reporting.flag_unreported(db.session, creditor, older_than=timedelta(days=10), now=later) == 1
    assert reporting.flag_unreported(db.session, creditor, older_than=timedelta(days=10), now=later) == 0
    db.session.commit()
    [anomaly] = anomalies_of(reporting.NOT_REPORTED)
    assert anomaly.receipt_id == receipt.id
    record(creditor, lines_for((receipt, position.single_option)))
    assert anomalies_of(reporting.NOT_REPORTED) == []
    db.session.refresh(anomaly)
    assert "Rendicontata nel flusso" in anomaly.resolution_note


def test_a_flow_we_cannot_read_is_kept_and_flagged_once(ctx, creditor):
    assert reporting.record_rejected_flow(db.session, creditor, fdr="2027-01-12BCITITMM-0009", psp_id=PSP,
                                          revision=1, error="Importo non valido (amount '10.001')")
    assert reporting.record_rejected_flow(db.session, creditor, fdr="2027-01-12BCITITMM-0009", psp_id=PSP,
                                          revision=1, error="again") is None
    db.session.commit()
    [anomaly] = anomalies_of(reporting.FLOW_UNREADABLE)
    assert "10.001" in anomaly.detail


def test_resolving_an_anomaly_needs_a_note_and_goes_on_the_timeline(ctx, creditor, make_position):
    position, receipt = paid(make_position, amount=4250)
    [line] = lines_for((receipt, position.single_option))
    record(creditor, [reporting.FlowLine(index=1, iuv=line.iuv, iur=line.iur, id_transfer=1, amount_cents=4000)])
    [anomaly] = reporting_anomalies.list_anomalies(db.session, creditor.id, reporting_anomalies.AnomalyFilter())
    with pytest.raises(reporting_anomalies.AnomalyError, match="Indicare"):
        reporting_anomalies.resolve(db.session, anomaly, note=" ", actor="user:1", actor_user_id=None)
    reporting_anomalies.resolve(db.session, anomaly, note="Il PSP ha trattenuto 2,50 €", actor="user:1",
                                actor_user_id=None)
    db.session.commit()
    assert reporting_anomalies.count_open(db.session, creditor.id) == {}
    event = db.session.scalar(sa.select(Event).where(Event.kind == "report_resolved"))
    assert event.details["note"] == "Il PSP ha trattenuto 2,50 €"
    flt = reporting_anomalies.AnomalyFilter(include_resolved=True, kind=reporting.AMOUNT_MISMATCH)
    assert reporting_anomalies.list_anomalies(db.session, creditor.id, flt) == [anomaly]


def test_the_accounting_export_is_formula_safe_and_totals_per_service(ctx, creditor, make_position):
    import io

    from portal.reports import exports, payments

    position, receipt = paid(make_position, amount=4250, name="=HYPERLINK(\"http://x\")")
    day = receipt.payment_at.astimezone(exports.ROME).date()
    out = io.StringIO()
    count = exports.write_csv(out, payments.payment_rows(db.session, creditor.id, day, day), layout=payments.ITALIAN)
    assert count == 4  # the payment, its service total, its beneficiary total, its channel total
    text = out.getvalue()
    assert "'=HYPERLINK" in text
    assert "42,50" in text
    assert "Totale servizio" in text
    assert "Totale canale;" in text
    assert ";pagoPA;" in text
    assert list(payments.payment_rows(db.session, creditor.id, day, day, by="regulation")) == []  # not reported yet
