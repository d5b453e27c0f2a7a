"""Users of the back office and the record of login attempts."""

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.ledger.models import Creditor, Service
from portal.ledger.types import UTCDateTime, utcnow


class Role(StrEnum):
    """What an officer may do: admins configure, operators manage positions, viewers only look."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


ROLE_LABELS = {Role.ADMIN: "Amministratore", Role.OPERATOR: "Operatore", Role.VIEWER: "Consultazione"}

user_services = sa.Table(
    "user_services",
    db.metadata,
    sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("service_id", sa.ForeignKey("services.id", ondelete="CASCADE"), primary_key=True),
)


class User(db.Model):
    """An officer of one creditor.

    It speaks Flask-Login's user protocol (``is_authenticated``, ``is_active``, ``is_anonymous``, ``get_id``)
    without importing it: the accounts stay below the web layer.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete="RESTRICT"))
    username: Mapped[str] = mapped_column(sa.String(80), unique=True)
    full_name: Mapped[str] = mapped_column(sa.String(140))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    #: werkzeug scrypt/pbkdf2 hash; the password itself is never stored.
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[Role] = mapped_column(
        sa.Enum(Role, name="role", native_enum=False, create_constraint=True, length=10,
                values_callable=lambda e: [m.value for m in e])
    )
    active: Mapped[bool] = mapped_column(default=True)
    #: Part of what the session cookie holds: bumping it (logout, new password, disabled) ends every session.
    session_version: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Whether the officer gets a daily e-mail with what is overdue in the services they see.
    overdue_digest: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    creditor: Mapped[Creditor] = relationship()
    #: Services an operator or viewer is limited to; empty means every service of the creditor.
    services: Mapped[list[Service]] = relationship(secondary=user_services, order_by=Service.code)

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    #: A stored user is a signed-in one whenever Flask-Login loaded it from the session.
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        """What Flask-Login keeps in the session cookie to find the user again: the id and the session version,
        so a cookie copied before a logout or a password change no longer opens anything."""
        return f"{self.id}:{self.session_version}"

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def can_edit(self) -> bool:
        """Admins and operators change positions; viewers never do."""
        return self.role in (Role.ADMIN, Role.OPERATOR)

    def service_scope(self) -> set[int] | None:
        """Ids of the services this user may see, or ``None`` for all of them."""
        if self.role == Role.ADMIN or not self.services:
            return None
        return {s.id for s in self.services}

    @property
    def actor(self) -> str:
        """How this user is named on the timeline."""
        return f"user:{self.id}"


class LoginAttempt(db.Model):
    """One login attempt, kept in the database so throttling holds across processes and machines."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(80))
    remote_addr: Mapped[str] = mapped_column(sa.String(45))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    success: Mapped[bool] = mapped_column(default=False)

    __table_args__ = (
        sa.Index("ix_login_attempts_username_at", "username", "at"),
        sa.Index("ix_login_attempts_addr_at", "remote_addr", "at"),
    )
