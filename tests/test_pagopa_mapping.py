"""Ledger rows → GPD payloads, from real ORM objects on PostgreSQL, each checked against the official specs."""

from datetime import date, timedelta
from types import SimpleNamespace

import pytest

from portal.extensions import db
from portal.pagopa.gpd import GPDClient
from portal.pagopa.mapping import due_datetime, position_payload
from tests.conftest import CF_COMUNE, CF_PERSON, IBAN_COMUNE, TransferInput
from tests.test_pagopa_clients import API_KEY, GPD_BASE, GPD_V1, GPD_V2, Canned, assert_conforms, recording_session

CF_PROVINCIA = "80002870923"
IBAN_PROVINCIA = "IT25O0306909606100000012345"
DUE = date.today() + timedelta(days=30)


def assert_gpd_accepts(*payloads: dict) -> None:
    """Send the payloads through the real client (create, update, bulk) and validate every request."""
    session, adapter = recording_session(lambda r: Canned(201 if r.method == "POST" else 200, {}))
    client = GPDClient(GPD_BASE, API_KEY, session=session)
    for payload in payloads:
        client.create(CF_COMUNE, payload)
        assert_conforms(adapter.last, GPD_BASE + "/v1", *GPD_V1)
        client.update(CF_COMUNE, payload["iupd"], payload)
        assert_conforms(adapter.last, GPD_BASE + "/v1", *GPD_V1)
    client.bulk_create(CF_COMUNE, list(payloads))
    assert_conforms(adapter.last, GPD_BASE + "/v2", *GPD_V2)


def test_single_payment_payload(make_position):
    position = make_position(amount=12345, due=DUE)
    option = position.options[0]

    payload = position_payload(position)

    assert payload == {
        "iupd": position.iupd,
        "type": "F",
        "fiscalCode": CF_PERSON,
        "fullName": "Mario Rossi",
        "companyName": "Comune di Prova",
        "officeName": "Settore Tributi",
        "streetName": "Via Roma",
        "civicNumber": "1",
        "postalCode": "00100",
        "city": "Roma",
        "province": "RM",
        "country": "IT",
        "switchToExpired": False,
        "payStandIn": True,
        "paymentOption": [{
            "iuv": option.iuv,
            "nav": option.notice_number,
            "amount": 12345,
            "description": "TARI 2027",
            "dueDate": due_datetime(DUE),
            "isPartialPayment": False,
            "paymentOptionMetadata": [],
            "transfer": [{
                "idTransfer": "1",
                "amount": 12345,
                "organizationFiscalCode": CF_COMUNE,
                "companyName": "Comune di Prova",
                "iban": IBAN_COMUNE,
                "remittanceInformation": "TARI 2027",
                "category": "9/0101101IM/",
                "transferMetadata": [],
            }],
        }],
    }
    assert len(option.iuv) == 17
    assert option.notice_number == "3" + option.iuv
    assert_gpd_accepts(payload)


def test_installment_plan_payload(make_position):
    position = make_position(amount=0, installments=(5000, 5000, 2500), due=DUE)

    payload = position_payload(position)

    options = payload["paymentOption"]
    assert [o["amount"] for o in options] == [5000, 5000, 2500]
    assert all(o["isPartialPayment"] for o in options)
    assert [o["description"] for o in options] == [f"TARI 2027 - rata {n} di 3" for n in (1, 2, 3)]
    assert [o["dueDate"] for o in options] == [due_datetime(DUE + timedelta(days=30 * n)) for n in range(3)]
    assert len({o["iuv"] for o in options}) == 3
    assert all(o["transfer"][0]["amount"] == o["amount"] for o in options)
    assert_gpd_accepts(payload)


def test_single_payment_and_plan_payload_lists_the_single_payment_first(make_position):
    position = make_position(amount=10000, installments=(5000, 5000), due=DUE)

    payload = position_payload(position)

    assert [(o["amount"], o["isPartialPayment"]) for o in payload["paymentOption"]] == [
        (10000, False), (5000, True), (5000, True)]
    assert_gpd_accepts(payload)


def test_tari_with_tefa_has_two_transfers_each_naming_its_beneficiary(make_position):
    position = make_position(amount=10500, due=DUE, transfers=[
        TransferInput(amount_cents=10000),
        TransferInput(amount_cents=500, beneficiary_fiscal_code=CF_PROVINCIA, beneficiary_name="Provincia di Prova",
                      iban=IBAN_PROVINCIA, remittance="TEFA 2027"),
    ])

    payload = position_payload(position)

    (option,) = payload["paymentOption"]
    assert option["amount"] == 10500
    assert option["transfer"] == [
        {"idTransfer": "1", "amount": 10000, "organizationFiscalCode": CF_COMUNE, "companyName": "Comune di Prova",
         "iban": IBAN_COMUNE, "remittanceInformation": "TARI 2027", "category": "9/0101101IM/",
         "transferMetadata": []},
        {"idTransfer": "2", "amount": 500, "organizationFiscalCode": CF_PROVINCIA, "companyName": "Provincia di Prova",
         "iban": IBAN_PROVINCIA, "remittanceInformation": "TEFA 2027", "category": "9/0101101IM/",
         "transferMetadata": []},
    ]
    assert sum(t["amount"] for t in option["transfer"]) == option["amount"]
    assert_gpd_accepts(payload)


def test_company_debtor_without_address_and_office_of_the_service(creditor, make_service, make_position):
    service = make_service(code="CUP", name="Canone unico", taxonomy_code="9/0101107TS/", office="Ufficio Canone")
    position = make_position(service=service, fiscal_code="12345678903", name="Rossi S.r.l. " + "x" * 100, due=DUE)
    debtor = position.debtor
    debtor.street = debtor.civic_number = debtor.postal_code = debtor.city = debtor.province = None
    debtor.email = "amministrazione@rossi.example.it"
    db.session.flush()

    payload = position_payload(position)

    assert payload["type"] == "G"
    assert payload["fiscalCode"] == "12345678903"
    assert payload["fullName"] == ("Rossi S.r.l. " + "x" * 100)[:70]
    assert payload["officeName"] == "Ufficio Canone"
    assert payload["email"] == "amministrazione@rossi.example.it"
    for absent in ("streetName", "civicNumber", "postalCode", "city", "province"):
        assert absent not in payload
    assert payload["paymentOption"][0]["transfer"][0]["category"] == "9/0101107TS/"
    assert_gpd_accepts(payload)


def test_creditor_can_be_passed_explicitly(make_position):
    position = make_position(due=DUE)
    other = SimpleNamespace(name="Unione dei Comuni di Prova", department=None)
    payload = position_payload(position, other)
    assert payload["companyName"] == "Unione dei Comuni di Prova"
    assert "officeName" not in payload  # the service has no office and this creditor no department


@pytest.mark.parametrize(("due", "expected"), [
    (date(2027, 1, 31), "2027-01-31T22:59:59Z"),   # CET, UTC+1
    (date(2027, 7, 31), "2027-07-31T21:59:59Z"),   # CEST, UTC+2
    (date(2027, 3, 28), "2027-03-28T21:59:59Z"),   # the day clocks go forward
    (date(2027, 10, 31), "2027-10-31T22:59:59Z"),  # the day clocks go back
    (date(2027, 12, 31), "2027-12-31T22:59:59Z"),
])
def test_due_date_is_the_last_second_of_the_rome_day_in_utc(due, expected):
    value = due_datetime(due)
    assert value == expected
    # GPD drops the "Z" into a UTC LocalDateTime: the calendar day it keeps is still the due date.
    assert value[:10] == due.isoformat()
