"""Officers read Italian only: every event kind, detail and coded value of the timeline, and every job result."""

import re
from datetime import UTC, datetime

import pytest

from portal.ledger.models import Event
from portal.ledger.status import PositionStatus
from portal.ledger.sync_state import SweepResult
from portal.officer.timeline import SENTENCES, VALUES, describe_event
from portal.pagopa.sync import BatchOutcome, SyncOutcome

#: Words that betray untranslated text (English, or a raw code).
ENGLISH = re.compile(r"\b(position|synced|noop|busy|missing|retry|rejected|create|update|invalidate|delete|"
                     r"manual|gpd|invalidated|deleted|absent|single|installment|unknown|mismatch|already|"
                     r"cancelled|paid|flagged|receipt|published|draft|none|true|false)\b", re.IGNORECASE)
RAW_CODE = re.compile(r"\b([a-z]+_[a-z_]+|[A-Z]+_[A-Z_]+)\b")

#: Every event kind the code writes, with the details it writes.
EVENTS = {
    "created": {"source": "api:tari-software", "external_id": "TARI-1", "amount_cents": 12000,
                "notice_numbers": ["301000000000000144"]},
    **{status.value: {"previous": "draft", "channel": "gpd", "reason": "receipt", "option_kind": "installment",
                      "installment_number": 2, "payment_method": "CP", "psp_name": "Banca", "stand_in": True,
                      "payment_at": "2027-01-10T10:00:00+00:00", "fee_cents": 150, "source": "paSendRTV2"}
       for status in PositionStatus},
    # The flow's references (portal.ledger.reporting) override the generic status details.
    "reported": {"previous": "paid", "flow_id": "2027-01-12BCITITMM-0001", "revision": 1, "regulation": "SCT-0001",
                 "regulation_date": "2027-01-12", "psp_id": "BCITITMM", "psp_name": "Banca",
                 "iuvs": ["01000000000000014"]},
    "installment_paid": {"option_kind": "installment", "payment_method": "BBT", "source": "receipts-api",
                         "payment_channel": "bank_transfer", "reference": "TRN 0002", "payment_date": "2027-01-10",
                         "offline_payment_id": 4},
    "receipt_flagged": {"flag": "amount_mismatch", "option_amount_cents": 10000, "position_status": "paid"},
    "receipt_resolved": {"flag": "unknown_iuv", "note": "Rimborsato"},
    "notice_issued": {"bill_run_id": 3, "mode": "envelopes"},
    "reissued": {"reason": "Contenzioso", "new_position_id": 8, "new_iupd": "80015010723-abc", "amount_cents": 35206},
    "reissue_of": {"old_position_id": 7, "old_iupd": "80015010723-def", "deadline": "2027-05-01", "batch_id": 2,
                   "breakdown": [{"code": "tax", "label": "Imposta non versata", "cents": 25000,
                                  "explanation": "scaduta il 31/05/2023"},
                                 {"code": "notification", "label": "Spese di notifica", "cents": 783,
                                  "explanation": "DM MEF 14/04/2023"}]},

    "sync_failed": {"action": "create", "status": 400, "title": "DEBT_POSITION_REQUEST_DATA_ERROR",
                    "message": "Rifiutata"},
    "pagopa_updated": {"version": 2},
    "pagopa_invalidated": {"how": "invalidated"},
    "pagopa_deleted": {},
    "option_reported": {"iuv": "01000000000000014", "notice_number": "301000000000000144",
                        "flow_id": "2027-01-12BCITITMM-0001", "revision": 2, "regulation": "SCT-0001",
                        "regulation_date": "2027-01-12", "psp_id": "BCITITMM", "psp_name": "Banca"},
    "report_flagged": {"anomaly": "amount_mismatch", "flow_id": "2027-01-12BCITITMM-0001", "iuv": "01000000000000014",
                       "amount_cents": 4200, "expected_cents": 4250},
    "report_withdrawn": {"flow_id": "2027-01-12BCITITMM-0001", "revision": 2, "iuv": "01000000000000014",
                         "amount_cents": 4250},
    "report_resolved": {"anomaly": "report_withdrawn", "flow_id": "2027-01-12BCITITMM-0001", "note": "Verificato"},
    "publish_requested": {"selection": True},
    # A payment outside pagoPA (portal.ledger.offline_payments), its anomaly, its reversal, pagoPA told.
    "offline_payment_flagged": {"flag": "amount_mismatch", "option_amount_cents": 10000, "payment_channel": "cash",
                                "reference": "Quietanza 12", "amount_cents": 9000, "payment_date": "2027-01-10",
                                "notice_number": "301000000000000144", "iuv": "01000000000000014",
                                "offline_payment_id": 3},
    "offline_payment_reversed": {"reason": "Registrato sulla posizione sbagliata", "previous": "paid",
                                 "position_status": "published", "payment_channel": "bank_transfer",
                                 "reference": "TRN 0001", "amount_cents": 10000, "payment_date": "2027-01-10",
                                 "notice_number": "301000000000000144", "offline_payment_id": 3},
    "offline_payment_resolved": {"flag": "amount_mismatch", "offline_payment_id": 3, "note": "Differenza incassata"},
    "pagopa_paid_marked": {"payment_channel": "f24", "reference": "F24 prot. 7",
                           "notice_number": "301000000000000144", "offline_payment_id": 3},
    "updated": {"reason": "Superficie corretta", "version": 3, "notice_superseded": True, "changes": [
        ["subject", "TARI 2027", "TARI 2027 - rettifica"], ["debtor.postal_code", "00100", "00185"],
        ["single.amount_cents", 10000, 8000], ["installments.2.due_date", "2027-03-31", "2027-04-30"],
        ["single.transfers.2.iban", "IT60X0542811101000000123456", "IT02L1234512345123456789012"],
        ["installments.3", None, {"amount_cents": 5000, "due_date": "2027-05-31"}]]},
    "abated": {"amount_cents": 2000, "owed_before_cents": 10000, "owed_after_cents": 8000, "reason": "Compostaggio",
               "pagopa": "not_updatable", "changes": [["installments.3", {"amount_cents": 5000,
                                                                          "due_date": "2027-05-31"}, None],
                                                      ["owed_cents", 10000, 0]]},
}

#: What the collections write on the status events they cause.
EVENTS["expired"] = {"previous": "published", "due_date": "2027-01-31", "grace_days": 5}
EVENTS["reminded"] = {"deadline": "2027-03-02", "due_date": "2027-01-31", "channel": "pec", "cost_cents": 133,
                      "sequence": 2, "batch_id": 3, "reminder_id": 9, "previous": "expired"}
EVENTS["in_litigation"] = {"previous": "reminded", "batch_id": 3, "new_position_id": 12,
                           "reason": "Avviso di accertamento esecutivo"}
EVENTS["notice_issued"] = {**EVENTS["notice_issued"], "channel": "raccomandata_ar", "batch_id": 3}


def text_of(entry) -> str:
    return " ".join([entry.label, entry.actor, *(f"{label}: {value}" for label, value in entry.details)])


@pytest.mark.parametrize("kind", sorted(EVENTS))
def test_every_event_reads_as_an_italian_sentence(kind):
    event = Event(kind=kind, actor="pagopa", at=datetime(2027, 1, 10, tzinfo=UTC), details=EVENTS[kind])
    entry = describe_event(event, {})
    assert kind in SENTENCES
    assert entry.label.endswith(".")
    text = text_of(entry)
    assert not ENGLISH.search(text), text
    assert not RAW_CODE.search(text), text


@pytest.mark.parametrize(("key", "code"), [(k, c) for k, values in VALUES.items() for c in values])
def test_every_coded_value_has_an_italian_text(key, code):
    event = Event(kind="created", actor="system", at=datetime(2027, 1, 10, tzinfo=UTC), details={key: code})
    text = text_of(describe_event(event, {}))
    assert not RAW_CODE.search(text), text


def test_an_unknown_payment_method_says_so_in_italian():
    event = Event(kind="paid", actor="pagopa", at=datetime(2027, 1, 10, tzinfo=UTC), details={"payment_method": "XYZ"})
    assert ("Metodo di pagamento", "altro metodo (XYZ)") in describe_event(event, {}).details


@pytest.mark.parametrize("result", [
    *(SyncOutcome(1002, r, ("create", "update", "invalidate", "delete")) for r in
      ("synced", "noop", "busy", "missing", "retry", "rejected")),
    SyncOutcome(1003, "synced", ("mark_paid",)),
    BatchOutcome(published=[1, 2], retry=[3]), SweepResult(batches=[[1, 2]], singles=[3]),
])
def test_every_job_result_reads_in_italian(result):
    text = str(result)
    assert not ENGLISH.search(text), text
    assert not RAW_CODE.search(text), text
