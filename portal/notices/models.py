"""Bill runs (bollettazioni) and notice deliveries.

A bill run freezes its selection in ``bill_run_items`` (one row per position, in envelope order: by CAP) and
splits it into ``bill_run_chunks``; each chunk is rendered by one job and marked done once its files are on disk,
so a restarted run renders only what is missing and never issues a notice twice.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.ledger.models import RESTRICT
from portal.ledger.types import UTCDateTime, utcnow

#: Output modes: one PDF per envelope, or one PDF per chunk with the envelopes' pages listed in the index.
MODES = ("envelopes", "merged")
#: Life of a bill run.
STATUSES = ("preparing", "rendering", "assembling", "done", "failed", "cancelled")
#: Statuses in which jobs are still working on the run.
ACTIVE_STATUSES = ("preparing", "rendering", "assembling")


class BillRun(db.Model):
    """One bill run: what was selected, how it is delivered, and how far it got."""

    __tablename__ = "bill_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT), index=True)
    service_id: Mapped[int | None] = mapped_column(sa.ForeignKey("services.id", ondelete=RESTRICT))
    title: Mapped[str] = mapped_column(sa.String(140))
    mode: Mapped[str] = mapped_column(sa.String(10))
    #: The positions filter of the run (preparing re-applies it: what is printed is what matches then).
    selection: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    #: Whether positions whose notice was already issued are printed again.
    include_issued: Mapped[bool] = mapped_column(default=False)
    #: Whether each notice is also sent to the debtor's e-mail address once the run is done.
    send_email: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(sa.String(12), default="preparing")
    chunk_size: Mapped[int] = mapped_column()
    #: Notices selected, of which without a postal address (listed apart for e-mail/PEC).
    total: Mapped[int] = mapped_column(default=0)
    without_address: Mapped[int] = mapped_column(default=0)
    #: Notices rendered so far (chunks add theirs when done), and those left out (paid in the meantime).
    rendered: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    pages: Mapped[int] = mapped_column(default=0)
    chunks: Mapped[int] = mapped_column(default=0)
    #: The package, relative to the notices storage directory, once assembled.
    file_name: Mapped[str | None] = mapped_column(sa.String(200))
    file_size: Mapped[int | None] = mapped_column(sa.BigInteger)
    message: Mapped[str | None] = mapped_column(sa.Text)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    service = relationship("Service")

    __table_args__ = (
        sa.CheckConstraint("mode IN ('envelopes', 'merged')", name="mode_known"),
        sa.CheckConstraint(
            "status IN ('preparing', 'rendering', 'assembling', 'done', 'failed', 'cancelled')", name="status_known"),
        sa.CheckConstraint("chunk_size > 0", name="chunk_size_positive"),
    )

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def percent(self) -> int:
        """Progress for the bar: rendering is 95 %, assembling the package the rest."""
        if self.status == "done":
            return 100
        if not self.total:
            return 0
        return min(95, (self.rendered + self.skipped) * 95 // self.total)


class BillRunChunk(db.Model):
    """A slice of a run rendered by one job: ``pending`` until its files are written, then ``done``."""

    __tablename__ = "bill_run_chunks"

    bill_run_id: Mapped[int] = mapped_column(sa.ForeignKey("bill_runs.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True)
    #: Whether its envelopes have a postal address (the print batch) or not (listed apart).
    postal: Mapped[bool] = mapped_column()
    status: Mapped[str] = mapped_column(sa.String(8), default="pending")
    notices: Mapped[int] = mapped_column(default=0)
    pages: Mapped[int] = mapped_column(default=0)
    rendered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (sa.CheckConstraint("status IN ('pending', 'done')", name="status_known"),)


class BillRunItem(db.Model):
    """One envelope of a run: a position, its place in the print order (``seq``) and its chunk."""

    __tablename__ = "bill_run_items"

    bill_run_id: Mapped[int] = mapped_column(sa.ForeignKey("bill_runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    position_id: Mapped[int] = mapped_column(sa.ForeignKey("positions.id", ondelete=RESTRICT), index=True)
    chunk: Mapped[int] = mapped_column()
    postal: Mapped[bool] = mapped_column()
    #: Set when the position had nothing left to pay at rendering time (no notice, not issued).
    skipped: Mapped[bool] = mapped_column(default=False)

    __table_args__ = (sa.Index("ix_bill_run_items_chunk", "bill_run_id", "chunk", "seq"),)


class NoticeDelivery(db.Model):
    """One attempt to deliver a notice to its debtor (e-mail), kept as the position's delivery log."""

    __tablename__ = "notice_deliveries"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    position_id: Mapped[int] = mapped_column(sa.ForeignKey("positions.id", ondelete=RESTRICT), index=True)
    bill_run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("bill_runs.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(sa.String(10), default="email")
    recipient: Mapped[str] = mapped_column(sa.String(254))
    #: ``queued`` (asked for), ``sent`` (accepted by the mail server), ``failed`` (with the server's answer).
    status: Mapped[str] = mapped_column(sa.String(8), default="queued")
    error: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(default=0)
    requested_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint("channel IN ('email')", name="channel_known"),
        sa.CheckConstraint("status IN ('queued', 'sent', 'failed')", name="status_known"),
        # A bill run delivers each position's notice once, however often its mail job runs.
        sa.Index("ux_notice_deliveries_run_position", "bill_run_id", "position_id", "channel", unique=True,
                 postgresql_where=sa.text("bill_run_id IS NOT NULL"),
                 sqlite_where=sa.text("bill_run_id IS NOT NULL")),
    )
