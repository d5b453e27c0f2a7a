"""Collections' tables: the legal-rate table, each service's collection policy, reminders and batches.

Every figure the digest marks as a setting (⚠️: rates, spreads, penalty percentages, costs, days) is a column here,
edited by an administrator; the engine (:mod:`portal.collections.charges`) takes them as plain values.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.collections import charges
from portal.extensions import db
from portal.ledger.models import Position, Service
from portal.ledger.types import UTCDateTime, utcnow

RESTRICT = "RESTRICT"
_BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class LegalRate(db.Model):
    """The legal interest rate (art. 1284 c.c.) in force from a date; a row is added every December."""

    __tablename__ = "legal_rates"

    id: Mapped[int] = mapped_column(primary_key=True)
    effective_from: Mapped[date] = mapped_column(sa.Date, unique=True)
    #: Yearly rate in percent (``1.600`` = 1,6%).
    percent: Mapped[Decimal] = mapped_column(sa.Numeric(6, 3))
    #: The decree that set it ("DM 10/12/2025, GU 289 del 13/12/2025").
    decree: Mapped[str] = mapped_column(sa.String(140), default="")

    __table_args__ = (sa.CheckConstraint("percent >= 0 AND percent < 100", name="percent_range"),)

    def as_rate(self) -> charges.Rate:
        return charges.Rate(self.effective_from, Decimal(self.percent), self.decree or "")


#: Delivery methods of an act and what each costs the debtor by default (DM MEF 14/04/2023, in cents).
NOTIFICATION_METHODS = {
    "raccomandata_ar": ("Raccomandata A/R", 783),
    "raccomandata": ("Raccomandata semplice", 651),
    "pec": ("PEC", 200),
    "messo": ("Messo notificatore", 1155),
    "estero": ("Notifica all'estero", 1219),
}


class CollectionPolicy(db.Model):
    """How a service collects what is overdue: grace, reminders, interest, penalties and costs (all settings)."""

    __tablename__ = "collection_policies"

    service_id: Mapped[int] = mapped_column(sa.ForeignKey("services.id", ondelete=RESTRICT), primary_key=True)
    #: Days after the due date before an unpaid option counts as expired.
    grace_days: Mapped[int] = mapped_column(default=0, server_default="0")
    #: Days the reminder gives to pay (c.795 L.160/2019: usually 30).
    reminder_days: Mapped[int] = mapped_column(default=30, server_default="30")
    #: Cost added to the position by a reminder (c.795 by ordinary mail: 1,33 €; 0: no cost, the same notice).
    reminder_cost_cents: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    #: Litigation only for positions whose reminder deadline has passed.
    requires_reminder: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    #: c.165: points added to (or taken from) the legal rate, −3..+3.
    interest_spread: Mapped[Decimal] = mapped_column(sa.Numeric(4, 2), default=Decimal(0), server_default="0")
    #: ``365`` or ``leap`` (366 in leap years).
    interest_divisor: Mapped[str] = mapped_column(sa.String(5), default="365", server_default="365")
    penalty_kind: Mapped[str] = mapped_column(sa.String(8), default="percent", server_default="percent")
    penalty_percent_before: Mapped[Decimal] = mapped_column(sa.Numeric(6, 3), default=Decimal(30),
                                                            server_default="30")
    penalty_percent_after: Mapped[Decimal] = mapped_column(sa.Numeric(6, 3), default=Decimal(25), server_default="25")
    penalty_regime_change: Mapped[date] = mapped_column(sa.Date, default=date(2024, 9, 1),
                                                        server_default="2024-09-01")
    penalty_fixed_cents: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    penalty_min_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    penalty_max_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    #: Paid late (art. 13 c.1 D.Lgs. 471/1997): the percentage halved up to ``penalty_half_within_days`` days late,
    #: and 1/N of the half per day up to N = ``penalty_daily_within_days`` (15); off: the full percentage always.
    penalty_reduce_late: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    penalty_half_within_days: Mapped[int] = mapped_column(default=90, server_default="90")
    penalty_daily_within_days: Mapped[int] = mapped_column(default=15, server_default="15")
    #: How the act is notified, and what that costs the debtor.
    notification_method: Mapped[str] = mapped_column(sa.String(20), default="raccomandata_ar",
                                                     server_default="raccomandata_ar")
    notification_cents: Mapped[int] = mapped_column(sa.BigInteger, default=783, server_default="783")
    appeal_days: Mapped[int] = mapped_column(default=60, server_default="60")
    late_spread: Mapped[Decimal] = mapped_column(sa.Numeric(4, 2), default=Decimal(2), server_default="2")
    late_delay_days: Mapped[int] = mapped_column(default=30, server_default="30")
    charges_early_percent: Mapped[Decimal] = mapped_column(sa.Numeric(5, 2), default=Decimal(3), server_default="3")
    charges_early_cap_cents: Mapped[int] = mapped_column(sa.BigInteger, default=30000, server_default="30000")
    charges_late_percent: Mapped[Decimal] = mapped_column(sa.Numeric(5, 2), default=Decimal(6), server_default="6")
    charges_late_cap_cents: Mapped[int] = mapped_column(sa.BigInteger, default=60000, server_default="60000")
    charges_window_days: Mapped[int] = mapped_column(default=60, server_default="60")
    #: Taxonomy of the re-issued tax (e.g. TARI previous years ``9/0101109IM/``); empty: the service's.
    assessment_taxonomy_code: Mapped[str | None] = mapped_column(sa.String(35))
    #: When set, penalty and interest go in a transfer of their own with this taxonomy (``9/0101106SA/``).
    penalty_taxonomy_code: Mapped[str | None] = mapped_column(sa.String(35))
    #: When set, notification costs go in a transfer of their own with this taxonomy (``9/0103100TS/``).
    costs_taxonomy_code: Mapped[str | None] = mapped_column(sa.String(35))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    service: Mapped[Service] = relationship()

    __table_args__ = (
        sa.CheckConstraint("interest_spread BETWEEN -3 AND 3", name="spread_within_3_points"),
        sa.CheckConstraint("interest_divisor IN ('365', 'leap')", name="divisor_known"),
        sa.CheckConstraint("penalty_kind IN ('percent', 'fixed', 'none')", name="penalty_kind_known"),
        sa.CheckConstraint("grace_days >= 0 AND reminder_days >= 1 AND appeal_days >= 1", name="days_positive"),
        sa.CheckConstraint("reminder_cost_cents >= 0 AND notification_cents >= 0", name="costs_not_negative"),
        sa.CheckConstraint("penalty_daily_within_days >= 0 AND penalty_half_within_days >= penalty_daily_within_days",
                           name="penalty_reductions_ordered"),
    )

    def penalty_rule(self) -> charges.PenaltyRule:
        return charges.PenaltyRule(
            kind=self.penalty_kind, percent_before=Decimal(self.penalty_percent_before),
            percent_after=Decimal(self.penalty_percent_after), regime_change=self.penalty_regime_change,
            fixed_cents=self.penalty_fixed_cents or 0, reduce_late=self.penalty_reduce_late,
            half_within_days=self.penalty_half_within_days, daily_within_days=self.penalty_daily_within_days,
            min_cents=self.penalty_min_cents, max_cents=self.penalty_max_cents)

    def assessment_policy(self) -> charges.AssessmentPolicy:
        return charges.AssessmentPolicy(
            spread=Decimal(self.interest_spread), divisor=self.interest_divisor, penalty=self.penalty_rule(),
            notification_cents=self.notification_cents, appeal_days=self.appeal_days,
            late_spread=Decimal(self.late_spread), late_delay_days=self.late_delay_days,
            charges_early_percent=Decimal(self.charges_early_percent),
            charges_early_cap_cents=self.charges_early_cap_cents,
            charges_late_percent=Decimal(self.charges_late_percent), charges_late_cap_cents=self.charges_late_cap_cents,
            charges_window_days=self.charges_window_days)


def default_policy(service: Service) -> CollectionPolicy:
    """A service's policy as the defaults say (not stored: the settings page saves it when changed)."""
    columns = CollectionPolicy.__table__.columns
    values = {c.key: c.default.arg for c in columns if c.default is not None and c.default.is_scalar}
    return CollectionPolicy(service_id=service.id, service=service, **values)


class Reminder(db.Model):
    """A sollecito sent for one due date of a position: the deadline it gives, its cost, how it went out."""

    __tablename__ = "reminders"

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT))
    position_id: Mapped[int] = mapped_column(sa.ForeignKey("positions.id", ondelete=RESTRICT), index=True)
    batch_id: Mapped[int | None] = mapped_column(sa.ForeignKey("collection_batches.id", ondelete=RESTRICT))
    #: The due date reminded: one reminder per due date unless a second one is asked for explicitly.
    due_date: Mapped[date] = mapped_column(sa.Date)
    sequence: Mapped[int] = mapped_column(sa.SmallInteger, default=1)
    #: Last day to pay given by the reminder.
    deadline: Mapped[date] = mapped_column(sa.Date)
    #: What the letter asks (the position's amount after the reminder cost).
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    cost_cents: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    #: ``email``, ``pec`` or ``print``.
    channel: Mapped[str] = mapped_column(sa.String(10))
    #: The address the letter went to (e-mail or PEC), empty for print.
    address: Mapped[str | None] = mapped_column(sa.String(254))
    #: ``queued`` → ``sent`` / ``failed`` for mail; ``printed`` once in a print package.
    delivery_status: Mapped[str] = mapped_column(sa.String(10), default="queued")
    delivery_error: Mapped[str | None] = mapped_column(sa.Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    issued_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    position: Mapped[Position] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("position_id", "due_date", "sequence"),
        sa.CheckConstraint("channel IN ('email', 'pec', 'print')", name="channel_known"),
        sa.CheckConstraint("sequence >= 1", name="sequence_positive"),
    )


class CollectionBatch(db.Model):
    """A reminder or litigation batch: its frozen selection, progress, and what happened to each position."""

    __tablename__ = "collection_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT))
    #: ``reminder`` or ``litigation``.
    kind: Mapped[str] = mapped_column(sa.String(12))
    #: ``running``, ``stopped`` (an officer stopped it; it can be resumed) or ``done``.
    status: Mapped[str] = mapped_column(sa.String(10), default="running")
    title: Mapped[str] = mapped_column(sa.String(140))
    #: A second reminder for a due date already reminded (an explicit choice).
    repeat: Mapped[bool] = mapped_column(default=False)
    total: Mapped[int] = mapped_column(default=0)
    done: Mapped[int] = mapped_column(default=0)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The print package (ZIP) of letters without an e-mail or PEC address, once written.
    package_path: Mapped[str | None] = mapped_column(sa.String(400))

    items: Mapped[list[CollectionBatchItem]] = relationship(back_populates="batch",
                                                            order_by="CollectionBatchItem.id")

    __table_args__ = (
        sa.CheckConstraint("kind IN ('reminder', 'litigation')", name="kind_known"),
        sa.CheckConstraint("status IN ('running', 'stopped', 'done')", name="status_known"),
    )


class CollectionBatchItem(db.Model):
    """One position of a batch and its outcome (``None`` until processed: a resumed batch starts from these)."""

    __tablename__ = "collection_batch_items"

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("collection_batches.id", ondelete=RESTRICT))
    position_id: Mapped[int] = mapped_column(sa.ForeignKey("positions.id", ondelete=RESTRICT))
    #: ``reminded``, ``litigated``, ``skipped``, ``paid`` (found paid on pagoPA), ``retry`` (pagoPA unreachable).
    outcome: Mapped[str | None] = mapped_column(sa.String(10))
    message: Mapped[str | None] = mapped_column(sa.String(500))
    reminder_id: Mapped[int | None] = mapped_column(sa.ForeignKey("reminders.id", ondelete=RESTRICT))
    new_position_id: Mapped[int | None] = mapped_column(sa.ForeignKey("positions.id", ondelete=RESTRICT))

    batch: Mapped[CollectionBatch] = relationship(back_populates="items")
    position: Mapped[Position] = relationship(foreign_keys=[position_id])

    __table_args__ = (
        sa.UniqueConstraint("batch_id", "position_id"),
        sa.Index("ix_collection_batch_items_pending", "batch_id", "outcome", "id"),
    )
