"""The REST API's request and response bodies (pydantic): the OpenAPI 3.1 document is generated from them.

Amounts are integer euro cents, dates ISO 8601 (``2027-03-31``). Request bodies refuse unknown fields, so a typo
in a field name is an error that names it rather than a value silently ignored.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

Text = Annotated[StrictStr, Field(max_length=140)]
ShortText = Annotated[StrictStr, Field(max_length=35)]
Cents = Annotated[StrictInt, Field(description="Importo in centesimi di euro.", ge=-(2**53), le=2**53)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DebtorIn(_In):
    """The debtor (who owes), as the notice prints it."""

    fiscal_code: Annotated[StrictStr, Field(max_length=20, description="Codice fiscale o partita IVA.")]
    name: Text
    street: Text | None = None
    civic_number: Annotated[StrictStr, Field(max_length=16)] | None = None
    postal_code: Annotated[StrictStr, Field(max_length=16)] | None = None
    city: Annotated[StrictStr, Field(max_length=60)] | None = None
    province: Annotated[StrictStr, Field(max_length=2)] | None = None
    country: Annotated[StrictStr, Field(max_length=2)] | None = "IT"
    email: Annotated[StrictStr, Field(max_length=254)] | None = None
    pec: Annotated[StrictStr, Field(max_length=254)] | None = None
    phone: Annotated[StrictStr, Field(max_length=30)] | None = None


class TransferIn(_In):
    """One beneficiary's part of an option; without beneficiary, the Comune with the service's IBAN."""

    amount_cents: Cents
    iban: Annotated[StrictStr, Field(max_length=40)] | None = None
    taxonomy_code: ShortText | None = None
    remittance: Text | None = None
    beneficiary_fiscal_code: Annotated[StrictStr, Field(max_length=16)] | None = None
    beneficiary_name: Text | None = None


class OptionIn(_In):
    """The single payment or one installment."""

    amount_cents: Cents
    due_date: date
    description: Text | None = None
    transfers: Annotated[list[TransferIn], Field(max_length=5)] = []


class PositionContent(_In):
    """What a position asks: subject, debtor, and a single payment and/or an installment plan."""

    subject: Text
    debtor: DebtorIn
    single: OptionIn | None = None
    installments: Annotated[list[OptionIn], Field(max_length=100)] = []


class PositionCreate(PositionContent):
    """A new position. ``external_id`` makes the call idempotent: the same body again returns the same position."""

    service: Annotated[StrictStr, Field(max_length=20, description="Codice del servizio (GET /services).")]
    external_id: Annotated[StrictStr, Field(max_length=100)] | None = None


class PositionUpdate(PositionContent):
    """The whole new content of a position nothing has been paid of (a new version goes to pagoPA)."""

    reason: Text | None = None


class CancelIn(_In):
    reason: Annotated[StrictStr, Field(min_length=1, max_length=500)]


class AbatementIn(_In):
    amount_cents: Cents
    reason: Annotated[StrictStr, Field(min_length=1, max_length=500)]


class PositionQuery(_In):
    """Filters of the positions list; ``cursor`` is the ``next_cursor`` of the previous page."""

    debtor_fiscal_code: Annotated[StrictStr, Field(max_length=20)] | None = None
    service: Annotated[StrictStr, Field(max_length=20)] | None = None
    status: Literal["draft", "published", "partially_paid", "paid", "reported", "expired", "cancelled",
                    "reminded", "in_litigation"] | None = None
    due_from: date | None = None
    due_to: date | None = None
    created_from: date | None = None
    created_to: date | None = None
    updated_since: datetime | None = None
    cursor: Annotated[int, Field(ge=1, le=2**62)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


# --- Responses -------------------------------------------------------------------------------------------------------


class TransferOut(BaseModel):
    index: int
    amount_cents: int
    beneficiary_fiscal_code: str
    beneficiary_name: str
    iban: str
    taxonomy_code: str
    remittance: str


class OptionOut(BaseModel):
    kind: Literal["single", "installment"]
    installment_number: int | None
    iuv: str
    notice_number: str
    amount_cents: int
    due_date: date
    description: str
    status: Literal["unpaid", "paid", "cancelled"]
    paid_at: datetime | None
    transfers: list[TransferOut]


class DebtorOut(BaseModel):
    fiscal_code: str
    kind: str | None
    name: str
    street: str | None
    civic_number: str | None
    postal_code: str | None
    city: str | None
    province: str | None
    country: str | None
    email: str | None
    pec: str | None
    phone: str | None


class PagoPAState(BaseModel):
    """What pagoPA should hold and what it was last confirmed to hold."""

    target: Literal["absent", "published", "invalid", "deleted"]
    version: int
    confirmed_target: str | None
    confirmed_version: int | None
    pending: bool
    error: str | None


class PositionOut(BaseModel):
    id: int
    iupd: str
    service: str
    source: str
    external_id: str | None
    subject: str
    status: str
    amount_cents: int
    paid_cents: int
    due_date: date
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    paid_at: datetime | None
    cancelled_at: datetime | None
    notice_issued_at: datetime | None
    notice_superseded_at: datetime | None
    replaces_id: int | None
    debtor: DebtorOut
    options: list[OptionOut]
    pagopa: PagoPAState


class PositionPage(BaseModel):
    items: list[PositionOut]
    next_cursor: int | None


class DebtorPositions(BaseModel):
    debtor: DebtorOut
    positions: list[PositionOut]
    due_cents: int
    paid_cents: int
    overdue_cents: int


class ServiceOut(BaseModel):
    code: str
    name: str
    active: bool
    taxonomy_code: str
    iban: str
    draft_first: bool


class ServiceList(BaseModel):
    items: list[ServiceOut]


class EventOut(BaseModel):
    id: int
    kind: str
    at: datetime
    actor: str
    description: str
    details: dict


class EventList(BaseModel):
    items: list[EventOut]


class FieldProblem(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details; ``errors`` lists one entry per field path (``installments[1].due_date``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldProblem] = []
    differences: list[str] = []
    position_id: int | None = None




class ImportJob(BaseModel):
    """The job working on the import now (its progress bar)."""

    step: Literal["check", "run", "cancel"]
    status: str
    progress: int
    total: int | None


class ImportPagoPA(BaseModel):
    total: int
    on_pagopa: int
    pending: int
    failing: int
    cancelled: int


class ImportOut(BaseModel):
    """An uploaded file: its dry run's figures, whether it can be confirmed, and how far it got."""

    id: int
    service: str
    filename: str
    file_size: int
    file_format: str
    status: Literal["uploaded", "checking", "checked", "importing", "done", "failed", "cancelled"]
    valid_rows_only: bool
    update_existing: bool
    rows_total: int
    rows_refused: int
    error_count: int
    positions_new: int
    positions_updated: int
    positions_unchanged: int
    positions_refused: int
    totals: dict
    imported: int
    message: str | None
    confirmable: bool
    refusal: str | None
    created_at: datetime
    checked_at: datetime | None
    confirmed_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None
    job: ImportJob | None
    pagopa: ImportPagoPA


class ImportRowErrorOut(BaseModel):
    row: int
    column: str
    key: str | None
    message: str


class ImportErrors(BaseModel):
    items: list[ImportRowErrorOut]
    next_cursor: int | None


class ErrorsQuery(_In):
    cursor: Annotated[int, Field(ge=1, le=2**62)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 200


class ImportCancelPositions(_In):
    reason: Annotated[StrictStr, Field(min_length=1, max_length=400)]


class Accepted(BaseModel):
    """Work asked for: it runs as a job (follow it on the import)."""

    import_id: int
    positions: int


# --- Payments outside pagoPA, the webhook delivery log, the accounting export -----------------------------------------

OfflineChannel = Literal["cash", "bank_transfer", "f24"]


class OfflinePaymentIn(_In):
    """A payment made outside pagoPA: cash at the counter (``cash``), a bank transfer to the treasury
    (``bank_transfer``) or an F24 (``f24``), on one option of the position (its notice number)."""

    notice_number: Annotated[StrictStr, Field(min_length=1, max_length=20,
                                              description="Codice avviso (18 cifre) della rata o dell'unica "
                                                          "soluzione pagata.")]
    channel: OfflineChannel
    reference: Annotated[StrictStr, Field(min_length=1, max_length=140,
                                          description="Numero di quietanza, CRO/TRN del bonifico, protocollo F24.")]
    amount_cents: Cents
    paid_on: Annotated[date, Field(description="Giorno del pagamento (AAAA-MM-GG), non futuro.")]
    accept_amount_mismatch: Annotated[bool, Field(strict=True, description=(
        "Registra anche un importo diverso da quello dell'opzione (il pagamento resta tra le anomalie). Senza, un "
        "importo diverso è un 422."))] = False


class ReverseIn(_In):
    reason: Annotated[StrictStr, Field(min_length=1, max_length=500)]


class OfflinePaymentOut(BaseModel):
    """A payment outside pagoPA; ``reversible`` while pagoPA has not been told of it (``pagopa_notified_at``)."""

    id: int
    position_id: int
    notice_number: str
    installment_number: int | None
    channel: OfflineChannel
    reference: str
    amount_cents: int
    option_amount_cents: int
    paid_on: date
    recorded_at: datetime
    recorded_by: str
    flag: Literal["amount_mismatch"] | None
    pagopa_notified_at: datetime | None
    reversible: bool
    reversed_at: datetime | None
    reversed_by: str | None
    reversal_reason: str | None
    position_status: str


class OfflinePaymentList(BaseModel):
    items: list[OfflinePaymentOut]


class DeliveryQuery(_In):
    """Filters of the delivery log, newest first; ``cursor`` is the ``next_cursor`` of the previous page."""

    subscriber_id: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    position_id: Annotated[int, Field(ge=1, le=2**62)] | None = None
    status: Literal["pending", "delivered", "failed"] | None = None
    cursor: Annotated[int, Field(ge=1, le=2**62)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class DeliveryOut(BaseModel):
    """One event to one subscriber: the attempts, the last answer (status code, an excerpt) and when."""

    id: int
    subscriber_id: int
    subscriber_url: str
    event_id: str
    event: str
    position_id: int | None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    response_excerpt: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: int | None


class PaymentsExportQuery(_In):
    """The accounting export's period and shape (the same as the back office's *Esportazione per la ragioneria*)."""

    day_from: Annotated[date, Field(alias="from", description="Primo giorno (AAAA-MM-GG).")]
    day_to: Annotated[date, Field(alias="to", description="Ultimo giorno (AAAA-MM-GG), incluso.")]
    by: Annotated[Literal["paid", "regulation"], Field(
        description="Per data di pagamento o di regolamento (il bonifico al tesoriere, noto dal flusso).")] = "paid"
    layout: Annotated[Literal["it", "machine"], Field(
        description="``it``: ``;``, intestazioni in italiano, euro con la virgola; ``machine``: ``,``, nomi delle "
                    "colonne, centesimi, date ISO.")] = "it"
    format: Literal["csv", "xlsx"] = "csv"


__all__ = [name for name in dir() if name[0].isupper()]
