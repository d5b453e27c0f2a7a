"""Creating users and checking passwords, with login throttling kept in the database."""

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from portal.accounts.models import LoginAttempt, Role, User
from portal.ledger.models import Creditor, Service
from portal.ledger.types import utcnow

MIN_PASSWORD_LENGTH = 10

log = logging.getLogger(__name__)


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


# --- Administration of users (settings area) -----------------------------------------------------------------


class UserFieldError(AccountError):
    """An :class:`AccountError` that belongs to one input field (``field``), for forms."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _check_password(password: str | None) -> str:
    password = password or ""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserFieldError("password", f"La password deve avere almeno {MIN_PASSWORD_LENGTH} caratteri.")
    return password


def _scope_of(user_creditor_id: int, services: list[Service] | None) -> list[Service]:
    services = list(services or [])
    if any(s.creditor_id != user_creditor_id for s in services):
        raise UserFieldError("services", "Si possono scegliere solo servizi dell'ente.")
    return services


def add_user(session: Session, creditor: Creditor, *, by: User, username: str, full_name: str, password: str,
             role: Role | str, email: str | None = None, services: list[Service] | None = None) -> User:
    """Create an officer from the settings area: :func:`create_user` plus field-level checks and a log line.

    :param by: the admin creating the user.
    :raise AccountError: if the username is taken, the password too short, a service of another creditor, ...
    """
    if not (full_name or "").strip():
        raise UserFieldError("full_name", "Indicare nome e cognome.")
    _check_password(password)
    services = _scope_of(creditor.id, services)
    try:
        user = create_user(session, creditor, username=username, full_name=full_name, password=password, role=role,
                           email=(email or "").strip().lower() or None, services=services)
    except AccountError as exc:  # the only other causes left: a missing or taken username
        raise UserFieldError("username", str(exc)) from exc
    log.info("user %s (%s) created by %s (role=%s, services=%s)", user.id, user.username, by.actor,
             user.role.value, ",".join(s.code for s in user.services) or "all")
    return user


def update_user(session: Session, user: User, *, by: User, full_name: str, email: str | None, role: Role | str,
                services: list[Service] | None, active: bool) -> list[str]:
    """Change an officer's name, e-mail, role, service scope (empty = every service) and active flag.

    An admin can neither demote nor deactivate themselves, so the creditor is never left without one by mistake.

    :param by: the admin making the change (logged, and checked against lock-out).
    :return: the names of the fields that changed.
    :raise AccountError: (a :class:`UserFieldError`) on invalid input; the user is left untouched.
    """
    role = Role(role)
    full_name = (full_name or "").strip()
    email = (email or "").strip().lower() or None
    if not full_name:
        raise UserFieldError("full_name", "Indicare nome e cognome.")
    if user.id == by.id and role != Role.ADMIN:
        raise UserFieldError("role", "Non è possibile togliere a sé stessi il ruolo di amministratore.")
    if user.id == by.id and not active:
        raise UserFieldError("active", "Non è possibile disattivare la propria utenza.")
    services = _scope_of(user.creditor_id, services)
    changed = []
    for name, value in (("full_name", full_name), ("email", email), ("role", role), ("active", bool(active))):
        if getattr(user, name) != value:
            setattr(user, name, value)
            changed.append(name)
    if {s.id for s in user.services} != {s.id for s in services}:
        user.services = services
        changed.append("services")
    if "active" in changed and not user.active:
        end_sessions(user)
    if changed:
        session.flush()
        log.info("user %s (%s): %s changed by %s (role=%s, active=%s, services=%s)", user.id, user.username,
                 ", ".join(changed), by.actor, user.role.value, user.active,
                 ",".join(s.code for s in user.services) or "all")
    return changed


def end_sessions(user: User) -> None:
    """End every open session of ``user`` (all browsers): their cookies carry the old session version."""
    user.session_version = (user.session_version or 1) + 1


def user_for_session(session: Session, session_id: str) -> User | None:
    """The active user a session cookie names (``"<id>:<version>"``), or ``None`` when it was ended or is malformed."""
    user_id, _, version = (session_id or "").partition(":")
    if not (user_id.isdigit() and version.isdigit()) or len(user_id) > 18 or len(version) > 18:
        return None
    user = session.get(User, int(user_id))
    if user is None or not user.active or user.session_version != int(version):
        return None
    return user


def set_password(session: Session, user: User, password: str, *, by: User | None = None) -> None:
    """Replace a user's password with the hash of a new one (the password itself is never stored or logged).

    :param by: who set it (``None``: the user themselves or a command-line tool).
    :raise AccountError: (a :class:`UserFieldError` on ``password``) if it is too short.
    """
    user.password_hash = hash_password(_check_password(password))
    end_sessions(user)
    session.flush()
    log.info("user %s (%s): password set by %s", user.id, user.username, by.actor if by else "system")
