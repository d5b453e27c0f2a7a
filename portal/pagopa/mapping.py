"""Our ledger rows → GPD v1 ``PaymentPositionModel`` JSON (``specs/gpd/gpd.json``).

Money stays in integer cents (GPD's unit too). Optional fields are left out rather than sent as ``null``,
which the OpenAPI types reject. ``paymentOptionMetadata``/``transferMetadata`` are sent as ``[]``: the
pagopa-api copy of the spec lists them as required.
"""

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from portal.pagopa.http import utc_timestamp

ROME = ZoneInfo("Europe/Rome")
#: GPD text limits (``maxLength`` 140 in the OpenAPI).
TEXT_MAX = 140
#: ``fullName`` has no limit in GPD, but GPD hands it to the node as ``ctSubject.fullName`` (stText70).
FULL_NAME_MAX = 70


def due_datetime(due: date) -> str:
    """The last second of ``due`` in Europe/Rome, as RFC 3339 UTC with ``Z`` (``2027-01-31T22:59:59Z``).

    Why UTC and ``Z`` rather than ``2027-01-31T23:59:59+01:00``: the OpenAPI ``date-time`` format needs an
    offset, but GPD deserialises the field into a Java ``LocalDateTime`` with Jackson's default parser, which
    accepts a trailing ``Z`` (read as UTC) and rejects a numeric offset; GPD then compares it with
    ``LocalDateTime.now(ZoneOffset.UTC)``. So the UTC instant is what GPD understands, and since Rome is ahead
    of UTC the calendar day GPD stores (and shows to PSPs) is still the due date.
    """
    end_of_day = datetime.combine(due, time(23, 59, 59), tzinfo=ROME)
    return utc_timestamp(end_of_day.astimezone(UTC))


def position_payload(position, creditor=None) -> dict:
    """The GPD v1 ``PaymentPositionModel`` for a position with its debtor, options and transfers.

    :param position: a :class:`~portal.ledger.models.Position` (or any object with the same attributes).
    :param creditor: the Ente; defaults to ``position.service.creditor``.
    """
    service = position.service
    creditor = creditor if creditor is not None else service.creditor
    debtor = position.debtor
    payload = {
        "iupd": position.iupd,
        "type": debtor.kind,
        "fiscalCode": debtor.fiscal_code,
        "fullName": _text(debtor.name, FULL_NAME_MAX),
        "companyName": _text(creditor.name),
        "switchToExpired": False,
        "payStandIn": True,
    }
    _put(payload, "officeName", _text(getattr(service, "office", None) or getattr(creditor, "department", None)))
    _put(payload, "streetName", debtor.street)
    _put(payload, "civicNumber", debtor.civic_number)
    _put(payload, "postalCode", debtor.postal_code)
    _put(payload, "city", debtor.city)
    _put(payload, "province", debtor.province)
    _put(payload, "country", (debtor.country or "").upper() or None)
    _put(payload, "email", debtor.email)
    payload["paymentOption"] = [_option_payload(option) for option in _ordered_options(position)]
    return payload


def _ordered_options(position) -> list:
    """The single payment first, then the installments in their order.

    Options cancelled by an edit (an installment dropped) or an abatement are no longer sent: pagoPA's copy loses
    them with the update. When every option is cancelled (a cancelled position) all are sent, as they were.
    """
    options = [o for o in position.options if getattr(o.status, "value", o.status) != "cancelled"]
    options = options or list(position.options)
    return sorted(options, key=lambda o: (o.kind != "single", o.installment_number or 0))


def _option_payload(option) -> dict:
    return {
        "iuv": option.iuv,
        "nav": option.notice_number,
        "amount": int(option.amount_cents),
        "description": _text(option.description) or "",
        "dueDate": due_datetime(option.due_date),
        "isPartialPayment": option.kind == "installment",
        "paymentOptionMetadata": [],
        "transfer": [_transfer_payload(t) for t in sorted(option.transfers, key=lambda t: t.index)],
    }


def _transfer_payload(transfer) -> dict:
    data = {
        "idTransfer": str(transfer.index),
        "amount": int(transfer.amount_cents),
        "organizationFiscalCode": transfer.beneficiary_fiscal_code,
        "remittanceInformation": _text(transfer.remittance) or "",
        "category": transfer.taxonomy_code,
        "iban": transfer.iban,
        "transferMetadata": [],
    }
    _put(data, "companyName", _text(transfer.beneficiary_name))
    return data


def _text(value: str | None, limit: int = TEXT_MAX) -> str | None:
    if value is None:
        return None
    value = " ".join(str(value).split())
    return value[:limit] or None


def _put(data: dict, key: str, value) -> None:
    if value not in (None, ""):
        data[key] = value
