"""The accounting export (ragioneria): every transfer of every payment, with its channel and the flow that reported
it.

One row per transfer of a paid option (the beneficiary apart, so TEFA goes to the Province's total), selected by
paid date or by regulation date (the day the money reached the treasury, known once a flow reported it), then
one total row per service, per beneficiary and per channel (pagoPA, or outside it: counter, bank transfer, F24).
Read with ``yield_per`` and totals summed as rows go: flat memory whatever the period. The same two layouts and
formula safety as :mod:`portal.reports.exports`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.formatting import format_date, format_datetime
from portal.ledger import offline_payments
from portal.ledger.flows import ReportedPayment, ReportingFlow
from portal.ledger.models import Debtor, OfflinePayment, PaymentOption, Position, Receipt, Service, Transfer
from portal.ledger.offline_payments import PAGOPA_CHANNEL
from portal.money import format_euro
from portal.reports.exports import ROME, Layout, _iso_date, _iso_timestamp

#: Select by the payment's date or by the regulation date of the flow that reported it.
BY = ("paid", "regulation")

COLUMNS = ("row_type", "iuv", "notice_number", "iupd", "external_id", "service_code", "debtor_fiscal_code",
           "debtor_name", "transfer_index", "amount_cents", "beneficiary_fiscal_code", "beneficiary_name", "iban",
           "taxonomy_code", "channel", "psp_id", "psp_name", "receipt_id", "payment_reference", "paid_at", "flow_id",
           "regulation", "regulation_date")
ITALIAN_HEADERS = {
    "row_type": "Riga", "iuv": "IUV", "notice_number": "Codice avviso", "iupd": "Identificativo posizione (IUPD)",
    "external_id": "Identificativo esterno", "service_code": "Servizio",
    "debtor_fiscal_code": "Codice fiscale debitore",
    "debtor_name": "Debitore", "transfer_index": "Versamento n.", "amount_cents": "Importo (euro)",
    "beneficiary_fiscal_code": "Codice fiscale beneficiario", "beneficiary_name": "Beneficiario", "iban": "IBAN",
    "taxonomy_code": "Codice tassonomico", "channel": "Canale", "psp_id": "Codice PSP", "psp_name": "PSP",
    "receipt_id": "Ricevuta", "payment_reference": "Riferimento del pagamento fuori pagoPA", "paid_at": "Pagato il",
    "flow_id": "Flusso di rendicontazione", "regulation": "Identificativo bonifico",
    "regulation_date": "Data regolamento",
}
ROW_TYPES = {"payment": "Pagamento", "service_total": "Totale servizio", "beneficiary_total": "Totale beneficiario",
             "channel_total": "Totale canale"}
#: How the channels read in the Italian layout.
CHANNELS = {PAGOPA_CHANNEL: "pagoPA", **{code: label.lower() for code, label in offline_payments.CHANNELS.items()}}


def _italian_value(column: str, value, spreadsheet: bool):
    if value in ("", None):
        return ""
    if column == "amount_cents":
        return Decimal(value) / 100 if spreadsheet else format_euro(value, symbol=False)
    if column == "regulation_date":
        day = date.fromisoformat(value)
        return day if spreadsheet else format_date(day)
    if column == "paid_at":
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=None) if spreadsheet else format_datetime(moment)
    if column == "row_type":
        return ROW_TYPES.get(value, value)
    if column == "channel":
        return CHANNELS.get(value, value)
    return value


MACHINE = Layout("machine", COLUMNS, ",", lambda row, spreadsheet: row)
ITALIAN = Layout("it", tuple(ITALIAN_HEADERS[c] for c in COLUMNS), ";",
                 lambda row, spreadsheet: tuple(_italian_value(c, v, spreadsheet)
                                                for c, v in zip(COLUMNS, row, strict=True)))
LAYOUTS = {layout.name: layout for layout in (ITALIAN, MACHINE)}


def _bounds(day_from: date, day_to: date) -> tuple[datetime, datetime]:
    """The Rome days ``day_from``..``day_to`` (inclusive) as an aware half-open interval."""
    return (datetime.combine(day_from, time.min, tzinfo=ROME),
            datetime.combine(day_to + timedelta(days=1), time.min, tzinfo=ROME))


def payment_rows(session: Session, creditor_id: int, day_from: date, day_to: date, *, by: str = "paid",
                 service_ids: set[int] | None = None, flow_id: int | None = None) -> Iterator[tuple]:
    """Rows in :data:`COLUMNS` order: one per transfer, then the totals per service, beneficiary and channel.

    Payments through pagoPA first (their receipts), then, by paid date only, those made outside pagoPA (at the
    counter, bank transfer, F24; reversed ones left out): no flow reports them, so they have no regulation date.
    """
    if by not in BY:
        raise ValueError(f"by must be one of {BY}")
    totals = _Totals()
    for row in _receipt_rows(session, creditor_id, day_from, day_to, by=by, service_ids=service_ids,
                             flow_id=flow_id):
        yield totals.add(row)
    if by == "paid" and flow_id is None:
        for row in _offline_rows(session, creditor_id, day_from, day_to, service_ids=service_ids):
            yield totals.add(row)
    yield from totals.rows()


def _payment_row(values: dict) -> tuple:
    return tuple(values.get(column, "") for column in COLUMNS)


class _Totals:
    """Sums per service, beneficiary and channel, added as the payment rows go by (flat memory)."""

    #: Each total row's kind and the columns it is summed by.
    KEYS = {"service_total": ("service_code",), "beneficiary_total": ("beneficiary_fiscal_code", "beneficiary_name"),
            "channel_total": ("channel",)}

    def __init__(self):
        self.sums: dict[str, dict[tuple, int]] = {kind: {} for kind in self.KEYS}
        self.at = {kind: tuple(COLUMNS.index(c) for c in columns) for kind, columns in self.KEYS.items()}
        self.amount_at = COLUMNS.index("amount_cents")

    def add(self, row: tuple) -> tuple:
        amount = row[self.amount_at]
        for kind, positions in self.at.items():
            key = tuple(row[i] for i in positions)
            self.sums[kind][key] = self.sums[kind].get(key, 0) + amount
        return row

    def rows(self) -> Iterator[tuple]:
        for kind, columns in self.KEYS.items():
            for key, total in sorted(self.sums[kind].items()):
                yield _payment_row({"row_type": kind, "amount_cents": total, **dict(zip(columns, key, strict=True))})


def _transfer_columns():
    return (PaymentOption.iuv, PaymentOption.notice_number, Position.iupd, Position.external_id, Service.code,
            Debtor.fiscal_code, Debtor.name, Transfer.index, Transfer.amount_cents, Transfer.beneficiary_fiscal_code,
            Transfer.beneficiary_name, Transfer.iban, Transfer.taxonomy_code)


def _joined(query: sa.Select, option_id) -> sa.Select:
    return (query.join(PaymentOption, PaymentOption.id == option_id)
            .join(Position, Position.id == PaymentOption.position_id)
            .join(Service, Service.id == Position.service_id)
            .join(Debtor, Debtor.id == Position.debtor_id)
            .join(Transfer, Transfer.option_id == PaymentOption.id))


def _transfer_values(row) -> dict:
    (iuv, nav, iupd, external_id, service, debtor_cf, debtor_name, index, amount, ben_cf, ben_name, iban,
     taxonomy) = row[:13]
    return {"row_type": "payment", "iuv": iuv, "notice_number": nav, "iupd": iupd, "external_id": external_id or "",
            "service_code": service, "debtor_fiscal_code": debtor_cf, "debtor_name": debtor_name,
            "transfer_index": index, "amount_cents": amount, "beneficiary_fiscal_code": ben_cf,
            "beneficiary_name": ben_name, "iban": iban, "taxonomy_code": taxonomy}


def _receipt_rows(session: Session, creditor_id: int, day_from: date, day_to: date, *, by: str,
                  service_ids: set[int] | None, flow_id: int | None) -> Iterator[tuple]:
    line = sa.orm.aliased(ReportedPayment)
    query = (
        _joined(sa.select(*_transfer_columns(), Receipt.psp_id, Receipt.psp_name, Receipt.receipt_id,
                          Receipt.payment_at, ReportingFlow.fdr, ReportingFlow.regulation,
                          ReportingFlow.regulation_date), Receipt.option_id)
        .outerjoin(line, sa.and_(line.transfer_id == Transfer.id, line.active))
        .outerjoin(ReportingFlow, ReportingFlow.id == line.flow_id)
        .where(Receipt.creditor_id == creditor_id)
        .order_by(Receipt.id, Transfer.index)
        .execution_options(yield_per=1000)
    )
    if by == "paid":
        start, end = _bounds(day_from, day_to)
        paid = sa.func.coalesce(Receipt.payment_at, Receipt.received_at)
        query = query.where(paid >= start, paid < end)
    else:
        query = query.where(ReportingFlow.regulation_date >= day_from, ReportingFlow.regulation_date <= day_to)
    if service_ids is not None:
        query = query.where(Position.service_id.in_(service_ids or {-1}))
    if flow_id is not None:
        query = query.where(ReportingFlow.id == flow_id)
    for row in session.execute(query):
        psp_id, psp_name, receipt_id, paid_at, fdr, regulation, regulation_date = row[13:]
        yield _payment_row({**_transfer_values(row), "channel": PAGOPA_CHANNEL, "psp_id": psp_id or "",
                            "psp_name": psp_name or "", "receipt_id": receipt_id, "paid_at": _iso_timestamp(paid_at),
                            "flow_id": fdr or "", "regulation": regulation or "",
                            "regulation_date": _iso_date(regulation_date)})


def _offline_rows(session: Session, creditor_id: int, day_from: date, day_to: date, *,
                  service_ids: set[int] | None) -> Iterator[tuple]:
    query = (
        _joined(sa.select(*_transfer_columns(), OfflinePayment.channel, OfflinePayment.reference,
                          PaymentOption.paid_at), OfflinePayment.option_id)
        .where(OfflinePayment.creditor_id == creditor_id, OfflinePayment.reversed_at.is_(None),
               OfflinePayment.paid_on >= day_from, OfflinePayment.paid_on <= day_to)
        .order_by(OfflinePayment.id, Transfer.index)
        .execution_options(yield_per=1000)
    )
    if service_ids is not None:
        query = query.where(Position.service_id.in_(service_ids or {-1}))
    for row in session.execute(query):
        channel, reference, paid_at = row[13:]
        yield _payment_row({**_transfer_values(row), "channel": channel, "payment_reference": reference,
                            "paid_at": _iso_timestamp(paid_at)})
