"""The change history of the collection settings: every change of a legal rate or of a service's policy.

One row per field changed (who, when, old value, new value), written in the same transaction as the change and
never updated nor deleted (the ORM refuses it, and on PostgreSQL and SQLite a trigger does too): an officer can
always tell which figures an act was computed with. Values are kept as plain text in one canonical form per type
(cents as whole numbers, decimals without trailing zeros, ISO dates, ``true``/``false``), so a repeated save that
changes nothing writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal.extensions import db
from portal.ledger.models import Service
from portal.ledger.types import UTCDateTime, utcnow

#: What a row is about: a row of the legal-rate table (by its start date) or a service's collection policy.
SUBJECTS = ("legal_rate", "policy")
MAX_VALUE = 200


class SettingChangeIsAppendOnly(RuntimeError):
    """Raised when code tries to change or remove a row of the settings' history."""


class SettingChange(db.Model):
    """One field of a collection setting changed by someone at some time (append-only)."""

    __tablename__ = "collection_setting_changes"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Who, as the timeline names them (``user:12``), and the user when it was one (kept if the user goes).
    actor: Mapped[str] = mapped_column(sa.String(80))
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    subject: Mapped[str] = mapped_column(sa.String(10))
    #: The service whose policy changed (``policy``).
    service_id: Mapped[int | None] = mapped_column(sa.ForeignKey("services.id", ondelete="RESTRICT"))
    #: The start date of the legal-rate row that changed (``legal_rate``; after the change, when it was the date).
    rate_from: Mapped[date | None] = mapped_column(sa.Date)
    field: Mapped[str] = mapped_column(sa.String(40))
    #: ``None``: there was no value (a new row) / there is none any more (a row removed, an empty setting).
    old_value: Mapped[str | None] = mapped_column(sa.String(MAX_VALUE))
    new_value: Mapped[str | None] = mapped_column(sa.String(MAX_VALUE))

    __table_args__ = (
        sa.CheckConstraint("subject IN ('legal_rate', 'policy')", name="subject_known"),
        sa.CheckConstraint("(subject = 'legal_rate' AND rate_from IS NOT NULL AND service_id IS NULL) OR "
                           "(subject = 'policy' AND service_id IS NOT NULL)", name="subject_identified"),
        sa.Index("ix_collection_setting_changes_service", "service_id", "id"),
    )


def _refuse(mapper, connection, target):
    raise SettingChangeIsAppendOnly("the collection settings' history is append-only")


event.listen(SettingChange, "before_update", _refuse)
event.listen(SettingChange, "before_delete", _refuse)


def as_text(value) -> str | None:
    """The canonical text of a setting's value (``None`` and ``""`` are both "no value")."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)[:MAX_VALUE]


def record(session: Session, *, actor: str, user_id: int | None, subject: str, before: Mapping, after: Mapping,
           service_id: int | None = None, rate_from: date | None = None) -> list[SettingChange]:
    """Add a row for every field whose value differs between ``before`` and ``after``; returns the rows added.

    A field missing from one side counts as "no value" there (a row created or removed).
    """
    if subject not in SUBJECTS:
        raise ValueError(f"unknown subject {subject!r}")
    rows = []
    for name in dict.fromkeys([*before, *after]):
        old, new = as_text(before.get(name)), as_text(after.get(name))
        if old != new:
            rows.append(SettingChange(actor=actor, user_id=user_id, subject=subject, service_id=service_id,
                                      rate_from=rate_from, field=name, old_value=old, new_value=new))
    session.add_all(rows)
    session.flush()
    return rows


def changes(session: Session, creditor_id: int, *, limit: int = 200) -> list[SettingChange]:
    """The latest changes a creditor's admins see, newest first: the legal-rate table (one for the installation)
    and the policies of the creditor's services."""
    services = sa.select(Service.id).where(Service.creditor_id == creditor_id)
    return list(session.scalars(
        sa.select(SettingChange)
        .where(sa.or_(SettingChange.subject == "legal_rate", SettingChange.service_id.in_(services)))
        .order_by(SettingChange.id.desc()).limit(limit)))
