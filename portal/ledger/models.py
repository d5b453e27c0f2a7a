"""The ledger's tables. What must always hold is a constraint in the schema, not only a check in code."""

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.ledger.status import OptionStatus, PositionStatus
from portal.ledger.types import UTCDateTime, utcnow

#: Financial rows are never removed through a parent: deleting a creditor with positions must fail.
RESTRICT = "RESTRICT"


class Creditor(db.Model):
    """An Ente creditore (a Comune): the owner of every other row."""

    __tablename__ = "creditors"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: 11-digit fiscal code of the Ente (``idPA`` / ``organizationFiscalCode`` on pagoPA).
    fiscal_code: Mapped[str] = mapped_column(sa.String(11), unique=True)
    name: Mapped[str] = mapped_column(sa.String(140))
    #: Sector or office shown on the notice ("Settore Tributi").
    department: Mapped[str | None] = mapped_column(sa.String(140))
    #: Two digits assigned by pagoPA to our IUV generation point; part of every IUV.
    segregation_code: Mapped[str] = mapped_column(sa.String(2))
    cbill_code: Mapped[str | None] = mapped_column(sa.String(5))
    #: Conto corrente postale: when present, notices carry the Poste "Bollettino PA" part.
    postal_account: Mapped[str | None] = mapped_column(sa.String(12))
    postal_authorization: Mapped[str | None] = mapped_column(sa.String(140))
    broker_id: Mapped[str | None] = mapped_column(sa.String(35))
    station_id: Mapped[str | None] = mapped_column(sa.String(35))
    address: Mapped[str | None] = mapped_column(sa.String(140))
    city: Mapped[str | None] = mapped_column(sa.String(70))
    province: Mapped[str | None] = mapped_column(sa.String(2))
    postal_code: Mapped[str | None] = mapped_column(sa.String(5))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    pec: Mapped[str | None] = mapped_column(sa.String(254))
    phone: Mapped[str | None] = mapped_column(sa.String(30))
    website: Mapped[str | None] = mapped_column(sa.String(200))
    #: Notices in Italian and German for bilingual areas.
    bilingual_notices: Mapped[bool] = mapped_column(default=False)
    #: The logo printed in the notice header: a PNG re-encoded on upload (see portal.notices.logo).
    logo_png: Mapped[bytes | None] = mapped_column(sa.LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    accounts: Mapped[list["Account"]] = relationship(back_populates="creditor", order_by="Account.id")
    services: Mapped[list["Service"]] = relationship(back_populates="creditor", order_by="Service.code")

    __table_args__ = (
        sa.CheckConstraint("length(fiscal_code) = 11", name="fiscal_code_length"),
        sa.CheckConstraint(
            "length(segregation_code) = 2 AND segregation_code <> '47' AND segregation_code < '81'",
            name="segregation_code_allowed",
        ),
    )


class Account(db.Model):
    """An IBAN of the creditor registered on pagoPA, where transfers are credited."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT), index=True)
    iban: Mapped[str] = mapped_column(sa.String(34))
    label: Mapped[str] = mapped_column(sa.String(70))
    #: A postal IBAN (Poste), which GPD takes as ``postalIban``.
    is_postal: Mapped[bool] = mapped_column(default=False)

    creditor: Mapped[Creditor] = relationship(back_populates="accounts")

    __table_args__ = (sa.UniqueConstraint("creditor_id", "iban"),)


class Service(db.Model):
    """A tax or fee the creditor collects (TARI, mensa scolastica, ...), with its defaults."""

    __tablename__ = "services"

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT), index=True)
    code: Mapped[str] = mapped_column(sa.String(35))
    name: Mapped[str] = mapped_column(sa.String(140))
    description: Mapped[str | None] = mapped_column(sa.Text)
    #: pagoPA taxonomy code of the main transfer (``9/0101101IM/``).
    taxonomy_code: Mapped[str] = mapped_column(sa.String(35))
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete=RESTRICT))
    office: Mapped[str | None] = mapped_column(sa.String(140))
    #: Default days between creation and due date for new positions.
    default_due_days: Mapped[int] = mapped_column(default=30)
    #: New positions stay drafts until an officer publishes them.
    draft_first: Mapped[bool] = mapped_column(default=False)
    #: Citizens may start a spontaneous payment of this service from the portal.
    spontaneous: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)

    creditor: Mapped[Creditor] = relationship(back_populates="services")
    account: Mapped[Account] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("creditor_id", "code"),
        sa.CheckConstraint("default_due_days >= 0", name="due_days_not_negative"),
    )


class Debtor(db.Model):
    """A person or company owing money to the creditor, with the postal address notices go to.

    One row per fiscal code is shared by every service (``version_of_id`` empty). An officer who cannot see every
    service the debtor has positions in does not change it: what they typed is kept on a version of the debtor
    (a row of its own, ``version_of_id`` pointing to the shared row) used by the new position alone, for its
    notice and on pagoPA. Versions are never changed afterwards.
    """

    __tablename__ = "debtors"

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT))
    #: ``F`` natural person, ``G`` legal person (GPD ``type``).
    kind: Mapped[str] = mapped_column(sa.String(1))
    fiscal_code: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(140))
    street: Mapped[str | None] = mapped_column(sa.String(140))
    civic_number: Mapped[str | None] = mapped_column(sa.String(16))
    postal_code: Mapped[str | None] = mapped_column(sa.String(16))
    city: Mapped[str | None] = mapped_column(sa.String(70))
    province: Mapped[str | None] = mapped_column(sa.String(2))
    country: Mapped[str] = mapped_column(sa.String(2), default="IT")
    email: Mapped[str | None] = mapped_column(sa.String(254))
    pec: Mapped[str | None] = mapped_column(sa.String(254))
    phone: Mapped[str | None] = mapped_column(sa.String(30))
    #: The shared row this one is a version of (``None``: this is the shared row).
    version_of_id: Mapped[int | None] = mapped_column(sa.ForeignKey("debtors.id", ondelete=RESTRICT))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    version_of: Mapped["Debtor | None"] = relationship(remote_side=[id])

    __table_args__ = (
        # One shared row per fiscal code; its versions repeat the code.
        sa.Index("uq_debtors_shared_fiscal_code", "creditor_id", "fiscal_code", unique=True,
                 postgresql_where=sa.text("version_of_id IS NULL"), sqlite_where=sa.text("version_of_id IS NULL")),
        # Searches by fiscal code find the shared row and its versions.
        sa.Index("ix_debtors_creditor_fiscal_code", "creditor_id", "fiscal_code"),
        sa.CheckConstraint("kind IN ('F', 'G')", name="kind_f_or_g"),
        # text_pattern_ops: the name-prefix filter (LIKE 'abc%') can use it whatever the database collation.
        sa.Index("ix_debtors_creditor_name", "creditor_id", sa.func.lower(sa.column("name")).label("lower_name"),
                 postgresql_ops={"lower_name": "text_pattern_ops"}),
        # Trigrams: officers type a surname ("rossi") that sits anywhere in "Mario Rossi".
        sa.Index("ix_debtors_name_trgm", sa.func.lower(sa.column("name")).label("lower_name_trgm"),
                 postgresql_using="gin", postgresql_ops={"lower_name_trgm": "gin_trgm_ops"}),
    )


class Position(db.Model):
    """One credit towards one debtor for one service (GPD debt position), with its whole life as columns."""

    __tablename__ = "positions"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT))
    service_id: Mapped[int] = mapped_column(sa.ForeignKey("services.id", ondelete=RESTRICT))
    debtor_id: Mapped[int] = mapped_column(sa.ForeignKey("debtors.id", ondelete=RESTRICT), index=True)
    #: GPD position id: unique and stable for the whole life of the position.
    iupd: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: Which channel fed the position (``manual``, ``api:<system>``, ``import``) and its id there.
    source: Mapped[str] = mapped_column(sa.String(40), default="manual")
    external_id: Mapped[str | None] = mapped_column(sa.String(100))
    subject: Mapped[str] = mapped_column(sa.String(140))
    status: Mapped[PositionStatus] = mapped_column(
        sa.Enum(PositionStatus, name="position_status", native_enum=False, create_constraint=True, length=20,
                values_callable=lambda e: [m.value for m in e]),
        default=PositionStatus.DRAFT,
    )
    #: Amount due: the single payment's amount, or the plan's total when there is only a plan.
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    paid_cents: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    #: Earliest due date among the unpaid options: what "overdue" is measured against.
    due_date: Mapped[date] = mapped_column(sa.Date)
    #: Position this one replaces (litigation re-issue).
    replaces_id: Mapped[int | None] = mapped_column(sa.ForeignKey("positions.id", ondelete=RESTRICT))
    #: The bulk upload that created the position (the positions list filters on it; see portal.imports).
    import_id: Mapped[int | None] = mapped_column(sa.ForeignKey("imports.id", ondelete=RESTRICT))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notice_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Set when the position changed after its notice was printed: that notice shows old data (print it again).
    notice_superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    # --- pagoPA synchronisation: what pagoPA should have, and what it was last confirmed to have. ---
    #: Desired state on GPD: ``absent`` (draft first / never sent), ``published``, ``invalid`` or ``deleted``.
    pagopa_target: Mapped[str] = mapped_column(sa.String(10), default="absent", server_default="absent")
    #: Bumped whenever the content pagoPA holds must change (amounts, dates, debtor): an update is then due.
    pagopa_version: Mapped[int] = mapped_column(default=1, server_default="1")
    #: Last state and version pagoPA confirmed (``None``: nothing confirmed yet).
    pagopa_synced_target: Mapped[str | None] = mapped_column(sa.String(10))
    pagopa_synced_version: Mapped[int | None] = mapped_column()
    #: An option was paid outside pagoPA (at the counter, by bank transfer, F24) and GPD has not been told yet
    #: (see :mod:`portal.ledger.offline_payments`): a sync is due even when target and version agree.
    pagopa_paid_pending: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    #: True while target/version differ from what was confirmed: the sync sweep looks only at these rows.
    sync_pending: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    sync_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    #: Earliest time of the next attempt (exponential backoff after a failure).
    sync_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: pagoPA's message for the last failed attempt (shown on the position and the dashboard).
    sync_error: Mapped[str | None] = mapped_column(sa.Text)
    sync_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    service: Mapped[Service] = relationship()
    debtor: Mapped[Debtor] = relationship()
    options: Mapped[list["PaymentOption"]] = relationship(
        back_populates="position",
        # Creation order: the single payment first, then the installments in their order.
        order_by="PaymentOption.id",
    )
    events: Mapped[list["Event"]] = relationship(back_populates="position", order_by="Event.id")

    __table_args__ = (
        sa.UniqueConstraint("creditor_id", "source", "external_id"),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
        sa.CheckConstraint("paid_cents >= 0", name="paid_not_negative"),
        sa.CheckConstraint("pagopa_target IN ('absent', 'published', 'invalid', 'deleted')",
                           name="pagopa_target_known"),
        # The sync sweep: positions whose pagoPA state has not converged, by next attempt time.
        sa.Index("ix_positions_sync_pending", "sync_pending", "sync_next_at"),
        # Keyset pages of one status or one service (scanned backwards for newest first).
        sa.Index("ix_positions_creditor_status", "creditor_id", "status", "id"),
        sa.Index("ix_positions_creditor_service", "creditor_id", "service_id", "id"),
        sa.Index("ix_positions_creditor_due", "creditor_id", "due_date"),
        # Narrow amount ranges of the officer list.
        sa.Index("ix_positions_creditor_amount", "creditor_id", "amount_cents"),
        # Keyset order plus the filtered columns: a backwards scan tests the filters inside the index.
        sa.Index("ix_positions_creditor_list", "creditor_id", "id", "service_id", "status", "due_date", "amount_cents"),
        # The positions of one import (list filter, batch cancel); only imported rows are in it.
        sa.Index("ix_positions_import", "import_id", "id", postgresql_where=sa.text("import_id IS NOT NULL"),
                 sqlite_where=sa.text("import_id IS NOT NULL")),
        # What the daily overdue scan may expire, per service and due date (a small part of a large ledger).
        sa.Index("ix_positions_expirable", "service_id", "due_date",
                 postgresql_where=sa.text("status IN ('published', 'partially_paid')"),
                 sqlite_where=sa.text("status IN ('published', 'partially_paid')")),
    )

    @property
    def single_option(self) -> "PaymentOption | None":
        """The single-payment option, if the position has one."""
        return next((o for o in self.options if o.kind == "single"), None)

    @property
    def installments(self) -> list["PaymentOption"]:
        """The installment plan, in order (empty if there is none)."""
        return [o for o in self.options if o.kind == "installment"]


class PaymentOption(db.Model):
    """A way to pay the position: the single payment or one installment, each with its own IUV and NAV."""

    __tablename__ = "payment_options"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    position_id: Mapped[int] = mapped_column(sa.ForeignKey("positions.id", ondelete=RESTRICT), index=True)
    #: Denormalised so IUV and NAV are unique per creditor in the schema itself.
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT))
    #: ``single`` or ``installment``: the two are mutually exclusive once one is paid.
    kind: Mapped[str] = mapped_column(sa.String(12))
    installment_number: Mapped[int | None] = mapped_column(sa.SmallInteger)
    iuv: Mapped[str] = mapped_column(sa.String(17))
    notice_number: Mapped[str] = mapped_column(sa.String(18))
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    due_date: Mapped[date] = mapped_column(sa.Date)
    description: Mapped[str] = mapped_column(sa.String(140))
    status: Mapped[OptionStatus] = mapped_column(
        sa.Enum(OptionStatus, name="option_status", native_enum=False, create_constraint=True, length=12,
                values_callable=lambda e: [m.value for m in e]),
        default=OptionStatus.UNPAID,
    )
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When a reporting flow (FdR) last covered every transfer of this option to the creditor itself (a
    #: beneficiary's share, e.g. TEFA, is reported to that beneficiary, not to us); ``None`` while not reported.
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    position: Mapped[Position] = relationship(back_populates="options")
    transfers: Mapped[list["Transfer"]] = relationship(back_populates="option", order_by="Transfer.index")

    __table_args__ = (
        sa.UniqueConstraint("creditor_id", "iuv"),
        sa.UniqueConstraint("creditor_id", "notice_number"),
        sa.UniqueConstraint("position_id", "installment_number"),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
        sa.CheckConstraint("kind IN ('single', 'installment')", name="kind_known"),
        sa.CheckConstraint(
            "(kind = 'single' AND installment_number IS NULL) OR "
            "(kind = 'installment' AND installment_number >= 1)",
            name="installment_number_matches_kind",
        ),
        sa.CheckConstraint("length(iuv) = 17 AND length(notice_number) = 18", name="number_lengths"),
        sa.Index("ix_payment_options_notice_number", "notice_number"),
        sa.Index("ix_payment_options_iuv", "iuv"),
    )


class Transfer(db.Model):
    """One of 1..5 parts of an option credited to a beneficiary's IBAN (TEFA goes to the Province)."""

    __tablename__ = "transfers"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    option_id: Mapped[int] = mapped_column(sa.ForeignKey("payment_options.id", ondelete=RESTRICT), index=True)
    #: GPD ``idTransfer``: 1..5 within the option.
    index: Mapped[int] = mapped_column(sa.SmallInteger)
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    beneficiary_fiscal_code: Mapped[str] = mapped_column(sa.String(11))
    beneficiary_name: Mapped[str] = mapped_column(sa.String(140))
    iban: Mapped[str] = mapped_column(sa.String(34))
    taxonomy_code: Mapped[str] = mapped_column(sa.String(35))
    remittance: Mapped[str] = mapped_column(sa.String(140))

    option: Mapped[PaymentOption] = relationship(back_populates="transfers")

    __table_args__ = (
        sa.UniqueConstraint("option_id", "index"),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
        sa.CheckConstraint('"index" BETWEEN 1 AND 5', name="index_1_to_5"),
    )


class Event(db.Model):
    """An append-only entry of a position's timeline: what happened, when, and who did it."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    position_id: Mapped[int] = mapped_column(sa.ForeignKey("positions.id", ondelete=RESTRICT), index=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Who acted: ``user:<id>``, ``api:<system>``, ``pagopa`` or ``system``.
    actor: Mapped[str] = mapped_column(sa.String(80))
    actor_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    #: Status before and after, references (receipt id, PSP, ...) and anything else worth keeping.
    details: Mapped[dict] = mapped_column(sa.JSON, default=dict)

    position: Mapped[Position] = relationship(back_populates="events")


class Receipt(db.Model):
    """A payment receipt from pagoPA (paSendRT/paSendRTV2 or the receipts API), stored before it is acknowledged.

    Kept even when it matches no payable option (cancelled position, unknown IUV, double payment): money arrived,
    so it is recorded and flagged for refund or offset.
    """

    __tablename__ = "receipts"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT))
    position_id: Mapped[int | None] = mapped_column(sa.ForeignKey("positions.id", ondelete=RESTRICT), index=True)
    option_id: Mapped[int | None] = mapped_column(sa.ForeignKey("payment_options.id", ondelete=RESTRICT))
    #: ``receiptId`` of the node (it contains the payment token).
    receipt_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    iuv: Mapped[str] = mapped_column(sa.String(35))
    notice_number: Mapped[str | None] = mapped_column(sa.String(18))
    outcome: Mapped[str] = mapped_column(sa.String(2))
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    fee_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    psp_id: Mapped[str | None] = mapped_column(sa.String(35))
    psp_name: Mapped[str | None] = mapped_column(sa.String(140))
    channel_id: Mapped[str | None] = mapped_column(sa.String(35))
    payment_method: Mapped[str | None] = mapped_column(sa.String(35))
    payment_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    application_date: Mapped[date | None] = mapped_column(sa.Date)
    transfer_date: Mapped[date | None] = mapped_column(sa.Date)
    debtor_fiscal_code: Mapped[str | None] = mapped_column(sa.String(35))
    payer_fiscal_code: Mapped[str | None] = mapped_column(sa.String(35))
    stand_in: Mapped[bool] = mapped_column(default=False)
    #: How it reached us: ``paSendRT``, ``paSendRTV2`` or ``receipts-api``.
    source: Mapped[str] = mapped_column(sa.String(20))
    #: The message exactly as received (the SOAP body's receipt, or the XML of the receipts API).
    raw_xml: Mapped[str] = mapped_column(sa.Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Why this receipt needs an officer: ``cancelled_position``, ``unknown_iuv``, ``already_paid``,
    #: ``amount_mismatch`` (``None`` when it paid an open option normally).
    flag: Mapped[str | None] = mapped_column(sa.String(20))
    #: A flagged receipt an officer has dealt with (refund, offset, …): when, who, and what was done.
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    resolution_note: Mapped[str | None] = mapped_column(sa.Text)

    position: Mapped[Position | None] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("creditor_id", "iuv"),
        sa.CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
        sa.CheckConstraint("outcome IN ('OK', 'KO')", name="outcome_ok_ko"),
        sa.Index("ix_receipts_flag", "creditor_id", "flag"),
    )


class OfflinePayment(db.Model):
    """A payment of an option made outside pagoPA (cash at the counter, bank transfer, F24), recorded by an officer
    or a municipal system; pagoPA is told through the sync (GPD ``paymentoptions/paids``).

    Never deleted: a payment recorded by mistake is *reversed* (when, who, why), and only while pagoPA has not been
    told, which the schema holds too. One payment at most is active (not reversed) per option.
    """

    __tablename__ = "offline_payments"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT))
    position_id: Mapped[int] = mapped_column(sa.ForeignKey("positions.id", ondelete=RESTRICT), index=True)
    option_id: Mapped[int] = mapped_column(sa.ForeignKey("payment_options.id", ondelete=RESTRICT))
    #: ``cash`` (at the counter), ``bank_transfer`` or ``f24``.
    channel: Mapped[str] = mapped_column(sa.String(20))
    #: The payment's own reference: receipt number of the till, CRO/TRN of the transfer, F24 protocol.
    reference: Mapped[str] = mapped_column(sa.String(140))
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    #: What the option asked when the payment was recorded (an amount that differs is flagged).
    option_amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    #: The day the debtor paid (Europe/Rome).
    paid_on: Mapped[date] = mapped_column(sa.Date)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Who recorded it: ``user:<id>`` or ``api:<system>`` (and the user, when one did).
    recorded_by: Mapped[str] = mapped_column(sa.String(80))
    recorded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    #: The position's status before this payment, and the options of the other payment mode it cancelled: what a
    #: reversal puts back.
    previous_status: Mapped[str] = mapped_column(sa.String(20))
    cancelled_option_ids: Mapped[list] = mapped_column(sa.JSON, default=list)
    #: When GPD confirmed the option paid; from then on the payment can no longer be reversed.
    pagopa_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reversed_by: Mapped[str | None] = mapped_column(sa.String(80))
    reversed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    reversal_reason: Mapped[str | None] = mapped_column(sa.Text)
    #: ``amount_mismatch`` when the amount differs from the option's (``None`` otherwise), until an officer resolves
    #: it, as for a receipt (:attr:`Receipt.flag`).
    flag: Mapped[str | None] = mapped_column(sa.String(20))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    resolution_note: Mapped[str | None] = mapped_column(sa.Text)

    position: Mapped[Position] = relationship()
    option: Mapped[PaymentOption] = relationship()

    __table_args__ = (
        sa.CheckConstraint("channel IN ('cash', 'bank_transfer', 'f24')", name="channel_known"),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
        sa.CheckConstraint("flag IS NULL OR flag = 'amount_mismatch'", name="flag_known"),
        # What pagoPA was told stays: a payment it knows of is never reversed here.
        sa.CheckConstraint("reversed_at IS NULL OR pagopa_notified_at IS NULL", name="reversed_only_before_pagopa"),
        sa.CheckConstraint("(reversed_at IS NULL) = (reversal_reason IS NULL)", name="reversal_has_reason"),
        sa.Index("uq_offline_payments_active_option", "option_id", unique=True,
                 postgresql_where=sa.text("reversed_at IS NULL"), sqlite_where=sa.text("reversed_at IS NULL")),
        # The accounting export by paid date.
        sa.Index("ix_offline_payments_creditor_paid_on", "creditor_id", "paid_on"),
        sa.Index("ix_offline_payments_flag", "creditor_id", "flag"),
    )


class PositionTotal(db.Model):
    """Count and amounts of positions per (creditor, service, status, due date), for the dashboard.

    Written only by database triggers on ``positions`` (migration ``7a3c5e9d1f20``): each change appends a delta
    row, so writers never contend for a summary row; :func:`portal.ledger.totals.compact` folds them. A key's
    figures are the sum of its rows.
    """

    __tablename__ = "position_totals"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    creditor_id: Mapped[int] = mapped_column()
    service_id: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(sa.String(20))
    due_date: Mapped[date] = mapped_column(sa.Date)
    count: Mapped[int] = mapped_column(sa.BigInteger)
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    paid_cents: Mapped[int] = mapped_column(sa.BigInteger)

    __table_args__ = (sa.Index("ix_position_totals_key", "creditor_id", "service_id", "status", "due_date"),)


class CashflowTotal(db.Model):
    """Money per (creditor, service, basis, day) for the dashboard's collections chart: what fell due on a day
    (``due``), what was paid on a day in Rome (``paid``), what the PSPs' flows credited with that regulation date
    (``regulation``).

    Written only by database triggers on ``payment_options`` and ``reported_payments`` (migration
    ``2e38df6531af``; what each basis counts is in :mod:`portal.ledger.cashflow`): delta rows, like
    :class:`PositionTotal`, folded by :func:`portal.ledger.cashflow.compact`.
    """

    __tablename__ = "cashflow_totals"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    creditor_id: Mapped[int] = mapped_column()
    service_id: Mapped[int] = mapped_column()
    #: ``due``, ``paid`` or ``regulation``.
    basis: Mapped[str] = mapped_column(sa.String(10))
    day: Mapped[date] = mapped_column(sa.Date)
    #: Options due or paid, or flow lines credited.
    count: Mapped[int] = mapped_column(sa.BigInteger)
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.Index("ix_cashflow_totals_key", "creditor_id", "day", "basis", "service_id"),
        sa.CheckConstraint("basis IN ('due', 'paid', 'regulation')", name="basis_known"),
    )


class NumberCounter(db.Model):
    """The next 13-digit IUV base per creditor; allocation moves it forward and never back."""

    __tablename__ = "number_counters"

    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT), primary_key=True)
    next_value: Mapped[int] = mapped_column(sa.BigInteger, default=1)

    __table_args__ = (sa.CheckConstraint("next_value >= 1", name="next_value_positive"),)


class EventIsAppendOnly(RuntimeError):
    """Raised when code tries to change or remove a timeline event."""


@event.listens_for(Event, "before_update")
def _refuse_event_update(mapper, connection, target):
    raise EventIsAppendOnly("events are append-only")


@event.listens_for(Event, "before_delete")
def _refuse_event_delete(mapper, connection, target):
    raise EventIsAppendOnly("events are append-only")
