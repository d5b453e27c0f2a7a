"""A citizen's payment from the portal, reached only through its random token (never by a guessable id)."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.forms_builder.models import PaymentForm
from portal.ledger.models import RESTRICT, PaymentOption, Position
from portal.ledger.types import UTCDateTime, utcnow

#: ``spontaneous`` (a service's form) or ``notices`` (a cart of notices looked up by number).
KINDS = ("spontaneous", "notices")
#: ``draft`` (summary shown), ``publishing`` (waiting for pagoPA), ``checkout`` (cart opened), ``paid``.
STATUSES = ("draft", "publishing", "checkout", "paid")


class CitizenPayment(db.Model):
    """One payment a citizen started on the portal: what is paid, with which form answers, and how it went."""

    __tablename__ = "citizen_payments"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT))
    #: Random (256 bits, URL-safe): the only handle the citizen's pages use. Also the position's ``external_id``,
    #: so paying twice from the same summary creates one position.
    token: Mapped[str] = mapped_column(sa.String(64), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(12))
    status: Mapped[str] = mapped_column(sa.String(12), default="draft")
    #: The form version the answers were given with (spontaneous payments).
    form_id: Mapped[int | None] = mapped_column(sa.ForeignKey("payment_forms.id", ondelete=RESTRICT))
    answers: Mapped[dict | None] = mapped_column(sa.JSON)
    subject: Mapped[str] = mapped_column(sa.String(140))
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    #: How the amount was reached ("In bollo", "3 × 5,00 €"), for the summary.
    amount_note: Mapped[str | None] = mapped_column(sa.String(200))
    debtor_fiscal_code: Mapped[str | None] = mapped_column(sa.String(16))
    debtor_name: Mapped[str | None] = mapped_column(sa.String(140))
    #: Where the receipt link goes (optional).
    email: Mapped[str | None] = mapped_column(sa.String(254))
    #: The Checkout page of the last cart opened, and what Checkout said when the citizen came back.
    checkout_url: Mapped[str | None] = mapped_column(sa.Text)
    outcome: Mapped[str | None] = mapped_column(sa.String(10))
    receipt_mailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    form: Mapped[PaymentForm | None] = relationship()
    items: Mapped[list["CitizenPaymentItem"]] = relationship(back_populates="payment",
                                                             order_by="CitizenPaymentItem.id")

    __table_args__ = (
        sa.CheckConstraint("kind IN ('spontaneous', 'notices')", name="kind_known"),
        sa.CheckConstraint("status IN ('draft', 'publishing', 'checkout', 'paid')", name="status_known"),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
        # The e-mail sweep looks only at payments with an address whose receipt has not been mailed.
        sa.Index("ix_citizen_payments_mail_pending", "receipt_mailed_at", "status"),
    )


class CitizenPaymentItem(db.Model):
    """One notice of a citizen payment (a spontaneous payment has one; a cart up to five)."""

    __tablename__ = "citizen_payment_items"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    payment_id: Mapped[int] = mapped_column(sa.ForeignKey("citizen_payments.id", ondelete=RESTRICT), index=True)
    position_id: Mapped[int] = mapped_column(sa.ForeignKey("positions.id", ondelete=RESTRICT), index=True)
    option_id: Mapped[int] = mapped_column(sa.ForeignKey("payment_options.id", ondelete=RESTRICT))
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)

    payment: Mapped[CitizenPayment] = relationship(back_populates="items")
    position: Mapped[Position] = relationship()
    option: Mapped[PaymentOption] = relationship()

    __table_args__ = (sa.UniqueConstraint("payment_id", "option_id"),
                      sa.CheckConstraint("amount_cents > 0", name="amount_positive"))
