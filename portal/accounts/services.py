"""Creating users and checking passwords, with login throttling kept in the database."""

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from portal.accounts.models import LoginAttempt, Role, User
from portal.ledger.models import Creditor, Service
from portal.ledger.types import utcnow

MIN_PASSWORD_LENGTH = 10


class LoginThrottled(Exception):
    """Too many failed attempts: the account (or the address) is locked for a while."""


class AccountError(ValueError):
    """A user cannot be created or changed as asked; the message is Italian."""


def hash_password(password: str) -> str:
    """A salted hash (werkzeug scrypt)."""
    return generate_password_hash(password)


def create_user(session: Session, creditor: Creditor, *, username: str, full_name: str, password: str,
                role: Role | str, email: str | None = None, services: list[Service] | None = None) -> User:
    """Create an officer.

    :raise AccountError: if the username is taken or the password is too short.
    """
    username = username.strip().lower()
    if not username:
        raise AccountError("Indicare il nome utente.")
    if session.scalar(sa.select(User.id).where(User.username == username)):
        raise AccountError(f"Il nome utente {username} è già in uso.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"La password deve avere almeno {MIN_PASSWORD_LENGTH} caratteri.")
    user = User(creditor_id=creditor.id, username=username, full_name=full_name.strip(), email=email,
                password_hash=hash_password(password), role=Role(role), services=list(services or []))
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str, remote_addr: str, *, max_failures: int,
                 lockout_minutes: int, max_failures_per_ip: int, now: datetime | None = None) -> User | None:
    """Check a login and record the attempt.

    :return: the user on success, ``None`` on a wrong username or password.
    :raise LoginThrottled: when the username or the address has too many recent failures; the password is
        then not even checked, so guessing gains nothing.
    """
    now = now or utcnow()
    username = (username or "").strip().lower()
    since = now - timedelta(minutes=lockout_minutes)
    failures = sa.select(sa.func.count()).select_from(LoginAttempt).where(
        LoginAttempt.at >= since, LoginAttempt.success.is_(False)
    )
    if (session.scalar(failures.where(LoginAttempt.username == username)) >= max_failures
            or session.scalar(failures.where(LoginAttempt.remote_addr == remote_addr)) >= max_failures_per_ip):
        raise LoginThrottled(username)
    user = session.scalar(sa.select(User).where(User.username == username))
    ok = user is not None and user.active and check_password_hash(user.password_hash, password or "")
    session.add(LoginAttempt(username=username[:80], remote_addr=remote_addr[:45], at=now, success=ok))
    if not ok:
        return None
    user.last_login_at = now
    return user
