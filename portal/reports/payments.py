"""The accounting export (ragioneria): every transfer of every receipt, with the flow that reported it.

One row per transfer of a paid option (the beneficiary apart, so TEFA goes to the Province's total), selected by
paid date or by regulation date (the day the money reached the treasury, known once a flow reported it), then
one total row per service and per beneficiary. Read with ``yield_per`` and totals summed as rows go: flat memory
whatever the period. The same two layouts and formula safety as :mod:`portal.reports.exports`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.formatting import format_date, format_datetime
from portal.ledger.flows import ReportedPayment, ReportingFlow
from portal.ledger.models import Debtor, PaymentOption, Position, Receipt, Service, Transfer
from portal.money import format_euro
from portal.reports.exports import ROME, Layout, _iso_date, _iso_timestamp

#: Select by the payment's date or by the regulation date of the flow that reported it.
BY = ("paid", "regulation")

COLUMNS = ("row_type", "iuv", "notice_number", "iupd", "external_id", "service_code", "debtor_fiscal_code",
           "debtor_name", "transfer_index", "amount_cents", "beneficiary_fiscal_code", "beneficiary_name", "iban",
           "taxonomy_code", "psp_id", "psp_name", "receipt_id", "paid_at", "flow_id", "regulation",
           "regulation_date")
ITALIAN_HEADERS = {
    "row_type": "Riga", "iuv": "IUV", "notice_number": "Codice avviso", "iupd": "Identificativo posizione (IUPD)",
    "external_id": "Identificativo esterno", "service_code": "Servizio",
    "debtor_fiscal_code": "Codice fiscale debitore",
    "debtor_name": "Debitore", "transfer_index": "Versamento n.", "amount_cents": "Importo (euro)",
    "beneficiary_fiscal_code": "Codice fiscale beneficiario", "beneficiary_name": "Beneficiario", "iban": "IBAN",
    "taxonomy_code": "Codice tassonomico", "psp_id": "Codice PSP", "psp_name": "PSP", "receipt_id": "Ricevuta",
    "paid_at": "Pagato il", "flow_id": "Flusso di rendicontazione", "regulation": "Identificativo bonifico",
    "regulation_date": "Data regolamento",
}
ROW_TYPES = {"payment": "Pagamento", "service_total": "Totale servizio", "beneficiary_total": "Totale beneficiario"}


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
    """Rows in :data:`COLUMNS` order: one per transfer, then the totals per service and per beneficiary."""
    if by not in BY:
        raise ValueError(f"by must be one of {BY}")
    line = sa.orm.aliased(ReportedPayment)
    query = (
        sa.select(Receipt.iuv, PaymentOption.notice_number, Position.iupd, Position.external_id, Service.code,
                  Debtor.fiscal_code, Debtor.name, Transfer.index, Transfer.amount_cents,
                  Transfer.beneficiary_fiscal_code, Transfer.beneficiary_name, Transfer.iban, Transfer.taxonomy_code,
                  Receipt.psp_id, Receipt.psp_name, Receipt.receipt_id, Receipt.payment_at, ReportingFlow.fdr,
                  ReportingFlow.regulation, ReportingFlow.regulation_date)
        .join(PaymentOption, PaymentOption.id == Receipt.option_id)
        .join(Position, Position.id == PaymentOption.position_id)
        .join(Service, Service.id == Position.service_id)
        .join(Debtor, Debtor.id == Position.debtor_id)
        .join(Transfer, Transfer.option_id == PaymentOption.id)
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
    per_service: dict[str, int] = {}
    per_beneficiary: dict[tuple[str, str], int] = {}
    for row in session.execute(query):
        (iuv, nav, iupd, external_id, service, debtor_cf, debtor_name, index, amount, ben_cf, ben_name, iban,
         taxonomy, psp_id, psp_name, receipt_id, paid_at, fdr, regulation, regulation_date) = row
        per_service[service] = per_service.get(service, 0) + amount
        per_beneficiary[(ben_cf, ben_name)] = per_beneficiary.get((ben_cf, ben_name), 0) + amount
        yield ("payment", iuv, nav, iupd, external_id or "", service, debtor_cf, debtor_name, index, amount, ben_cf,
               ben_name, iban, taxonomy, psp_id or "", psp_name or "", receipt_id, _iso_timestamp(paid_at),
               fdr or "", regulation or "", _iso_date(regulation_date))
    blank = ("",) * 20
    for service, total in sorted(per_service.items()):
        row = list(blank)
        row[4], row[8] = service, total
        yield ("service_total", *row)
    for (ben_cf, ben_name), total in sorted(per_beneficiary.items()):
        row = list(blank)
        row[8], row[9], row[10] = total, ben_cf, ben_name
        yield ("beneficiary_total", *row)
