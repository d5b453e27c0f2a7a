"""Stored payment forms: one row per version of a service's form, never changed once published.

A service has at most one draft (what the officer is building) and at most one published version (what citizens
fill in). Publishing retires the previous version; a payment keeps the id of the version it was made with, so its
answers are always read with the fields they were given for.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.ledger.models import RESTRICT, Service
from portal.ledger.types import UTCDateTime, utcnow

#: Values of ``PaymentForm.status``.
FORM_STATUSES = ("draft", "published", "retired")


class PaymentForm(db.Model):
    """One version of the payment form of a service."""

    __tablename__ = "payment_forms"

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT))
    service_id: Mapped[int] = mapped_column(sa.ForeignKey("services.id", ondelete=RESTRICT), index=True)
    #: 1, 2, 3... per service, in order of creation.
    version: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(sa.String(10), default="draft")
    #: The form as :meth:`portal.forms_builder.definition.FormDefinition.to_dict` writes it.
    definition: Mapped[dict] = mapped_column(sa.JSON)
    #: The ready template it started from, if any.
    template_key: Mapped[str | None] = mapped_column(sa.String(30))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    service: Mapped[Service] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("service_id", "version"),
        sa.CheckConstraint("status IN ('draft', 'published', 'retired')", name="status_known"),
        sa.CheckConstraint("version >= 1", name="version_positive"),
        # At most one draft and one published version per service.
        sa.Index("uq_payment_forms_one_draft", "service_id", unique=True,
                 postgresql_where=sa.text("status = 'draft'"), sqlite_where=sa.text("status = 'draft'")),
        sa.Index("uq_payment_forms_one_published", "service_id", unique=True,
                 postgresql_where=sa.text("status = 'published'"), sqlite_where=sa.text("status = 'published'")),
    )
