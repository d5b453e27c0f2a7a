"""The reporting flows' tables (FdR, *flussi di rendicontazione*): which euros of which receipts a PSP credited.

A PSP transfers the money it collected for the Ente in one bank credit (SCT, the *regolamento*) and publishes a
flow listing every payment it covers, line by line: IUV, IUR (the PSP's collection id, our receipt id) and the
transfer index. We keep each flow revision as received (header, raw payload and lines); a later revision of the
same flow replaces the earlier one, which stays stored as ``superseded``.

A transfer is *reported* while an ``active`` line points at it: a partial unique index lets one line at most be
active per transfer, so two flows (or two revisions) can never count the same money twice.
"""

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.ledger.models import RESTRICT, Position, Receipt, Transfer
from portal.ledger.types import UTCDateTime, utcnow

BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")

#: ``ReportingFlow.status``: the revision that counts, one a later revision replaced, one we could not read.
FLOW_CURRENT = "current"
FLOW_SUPERSEDED = "superseded"
FLOW_REJECTED = "rejected"

#: ``ReportedPayment.outcome``: what matching a flow line to our receipts found.
LINE_MATCHED = "matched"
LINE_UNKNOWN = "unknown"
LINE_AMOUNT_MISMATCH = "amount_mismatch"
LINE_ALREADY_REPORTED = "already_reported"
LINE_SUPERSEDED = "superseded"


class ReportingFlow(db.Model):
    """One revision of a reporting flow, as the FdR API gave it."""

    __tablename__ = "reporting_flows"

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT))
    #: The flow's name (``<date><PSP id>-<progressive>``); unique per PSP together with the revision.
    fdr: Mapped[str] = mapped_column(sa.String(70))
    revision: Mapped[int] = mapped_column()
    psp_id: Mapped[str] = mapped_column(sa.String(35))
    psp_name: Mapped[str | None] = mapped_column(sa.String(140))
    #: ``current``, ``superseded`` (a later revision replaced it) or ``rejected`` (unreadable, see ``error``).
    status: Mapped[str] = mapped_column(sa.String(12), default=FLOW_CURRENT)
    #: Identifier of the bank credit (``identificativoUnivocoRegolamento``) and its date.
    regulation: Mapped[str | None] = mapped_column(sa.String(35))
    regulation_date: Mapped[date | None] = mapped_column(sa.Date)
    flow_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: What the flow's header declares.
    total_payments: Mapped[int] = mapped_column(default=0)
    sum_cents: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    #: What matching found: the lines and cents that reported a receipt of ours.
    matched_payments: Mapped[int] = mapped_column(default=0)
    matched_cents: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    #: The header exactly as received (amounts as decimal strings).
    raw: Mapped[dict | None] = mapped_column(sa.JSON)
    error: Mapped[str | None] = mapped_column(sa.Text)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    payments: Mapped[list["ReportedPayment"]] = relationship(back_populates="flow",
                                                             order_by="ReportedPayment.index")

    __table_args__ = (
        sa.UniqueConstraint("creditor_id", "fdr", "psp_id", "revision"),
        sa.CheckConstraint("status IN ('current', 'superseded', 'rejected')", name="status_known"),
        sa.CheckConstraint("sum_cents >= 0", name="sum_not_negative"),
        sa.Index("ix_reporting_flows_creditor_published", "creditor_id", "published_at"),
        sa.Index("ix_reporting_flows_creditor_regulation", "creditor_id", "regulation_date"),
    )

    @property
    def difference_cents(self) -> int:
        """Flow total minus the receipts it matched: not zero means money we cannot place (or a wrong flow)."""
        return self.sum_cents - self.matched_cents


class ReportedPayment(db.Model):
    """One line of a flow revision and what it matched: our receipt and the transfer it reports."""

    __tablename__ = "reported_payments"

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    flow_id: Mapped[int] = mapped_column(sa.ForeignKey("reporting_flows.id", ondelete=RESTRICT), index=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT))
    index: Mapped[int] = mapped_column()
    iuv: Mapped[str] = mapped_column(sa.String(35))
    iur: Mapped[str] = mapped_column(sa.String(64))
    id_transfer: Mapped[int] = mapped_column(sa.SmallInteger)
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    #: FdR ``payStatus``: ``EXECUTED``, ``STAND_IN``, ``STAND_IN_NO_RPT``, ``NO_RPT``.
    pay_status: Mapped[str] = mapped_column(sa.String(20))
    pay_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: ``matched``, ``unknown``, ``amount_mismatch``, ``already_reported``, ``superseded``.
    outcome: Mapped[str] = mapped_column(sa.String(20))
    receipt_id: Mapped[int | None] = mapped_column(sa.ForeignKey("receipts.id", ondelete=RESTRICT))
    transfer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("transfers.id", ondelete=RESTRICT))
    position_id: Mapped[int | None] = mapped_column(sa.ForeignKey("positions.id", ondelete=RESTRICT), index=True)
    #: Whether this line is the one that reports its transfer (at most one per transfer).
    active: Mapped[bool] = mapped_column(default=False)

    flow: Mapped[ReportingFlow] = relationship(back_populates="payments")
    receipt: Mapped[Receipt | None] = relationship()
    transfer: Mapped[Transfer | None] = relationship()
    position: Mapped[Position | None] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("flow_id", "index"),
        sa.Index("uq_reported_payments_active_transfer", "transfer_id", unique=True,
                 postgresql_where=sa.text("active"), sqlite_where=sa.text("active")),
        sa.Index("ix_reported_payments_receipt", "receipt_id"),
        sa.CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
        sa.CheckConstraint("NOT active OR transfer_id IS NOT NULL", name="active_has_transfer"),
    )


class ReportingAnomaly(db.Model):
    """Something reconciliation could not square, listed until an officer resolves it with a note.

    Kinds: a flow line with no receipt of ours (``unknown_payment``), a line whose amount differs from the
    transfer (``amount_mismatch``), money reported twice (``already_reported``), a flow whose lines do not add
    up to its header (``flow_totals``), a flow we could not read (``flow_rejected``), a receipt no flow covered
    in time (``not_reported``), and a revision that no longer reports a payment (``report_withdrawn``).
    """

    __tablename__ = "reporting_anomalies"

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT))
    kind: Mapped[str] = mapped_column(sa.String(20))
    flow_id: Mapped[int | None] = mapped_column(sa.ForeignKey("reporting_flows.id", ondelete=RESTRICT), index=True)
    reported_payment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("reported_payments.id",
                                                                          ondelete=RESTRICT))
    receipt_id: Mapped[int | None] = mapped_column(sa.ForeignKey("receipts.id", ondelete=RESTRICT))
    position_id: Mapped[int | None] = mapped_column(sa.ForeignKey("positions.id", ondelete=RESTRICT), index=True)
    iuv: Mapped[str | None] = mapped_column(sa.String(35))
    #: What the flow says, and what we expected (cents).
    amount_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    expected_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    detail: Mapped[str | None] = mapped_column(sa.Text)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: ``None`` with ``resolved_at`` set: it resolved itself (a later flow reported the receipt).
    resolved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    resolution_note: Mapped[str | None] = mapped_column(sa.Text)

    flow: Mapped[ReportingFlow | None] = relationship()
    position: Mapped[Position | None] = relationship()
    receipt: Mapped[Receipt | None] = relationship()

    __table_args__ = (
        sa.CheckConstraint("kind IN ('unknown_payment', 'amount_mismatch', 'already_reported', 'flow_totals', "
                           "'flow_rejected', 'not_reported', 'report_withdrawn')", name="kind_known"),
        sa.Index("ix_reporting_anomalies_open", "creditor_id", "resolved_at", "kind"),
        # One open "not reported" anomaly per receipt: the daily check never piles up copies.
        sa.Index("uq_reporting_anomalies_open_not_reported", "receipt_id", unique=True,
                 postgresql_where=sa.text("kind = 'not_reported' AND resolved_at IS NULL"),
                 sqlite_where=sa.text("kind = 'not_reported' AND resolved_at IS NULL")),
    )
