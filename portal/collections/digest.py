"""The daily e-mail to officers who asked for it: what is overdue in the services they see, by age."""

from __future__ import annotations

import logging
from datetime import date
from email.message import EmailMessage
from email.utils import formataddr

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import User
from portal.collections import overdue
from portal.ledger.models import Creditor, Service
from portal.mail import Mailer, MailError
from portal.money import format_euro

log = logging.getLogger(__name__)


def digest_message(session: Session, user: User, *, today: date, dashboard_url: str) -> EmailMessage | None:
    """The officer's digest, or ``None`` when nothing in their services is overdue (no empty mail)."""
    rows = overdue.aging(session, user.creditor_id, today=today, scope=user.service_scope())
    if not rows:
        return None
    names = {sid: name for sid, name in session.execute(
        sa.select(Service.id, Service.name).where(Service.creditor_id == user.creditor_id))}
    creditor = session.get(Creditor, user.creditor_id)
    lines = [f"Buongiorno {user.full_name},", "", f"ecco le posizioni scadute e non pagate al {today:%d/%m/%Y} nei "
             "servizi che segue:", ""]
    for row in rows:
        lines.append(f"{names.get(row.service_id, row.service_id)}: {row.count} posizioni, "
                     f"{format_euro(row.owed_cents)} da incassare")
        lines += [f"  scadute da {b.label}: {b.count} ({format_euro(b.owed_cents)})" for b in row.buckets if b.count]
        lines.append("")
    lines += [f"Cruscotto: {dashboard_url}", "",
              "Ricevi questo messaggio perché lo hai chiesto nel tuo profilo; puoi disattivarlo da lì.", ""]
    message = EmailMessage()
    message["To"] = formataddr((user.full_name, user.email))
    message["Subject"] = f"{creditor.name}: posizioni scadute al {today:%d/%m/%Y}"
    message.set_content("\n".join(lines))
    return message


def send_digests(session: Session, mailer: Mailer, *, today: date, dashboard_url: str) -> str:
    """Send every digest due today; a failed address is logged and the others still go."""
    users = session.scalars(sa.select(User).where(User.overdue_digest.is_(True), User.active.is_(True),
                                                  User.email.is_not(None)).order_by(User.id)).all()
    sent = failed = 0
    for user in users:
        message = digest_message(session, user, today=today, dashboard_url=dashboard_url)
        if message is None:
            continue
        try:
            mailer.send(message)
            sent += 1
        except MailError as exc:
            failed += 1
            log.warning("overdue digest to user %s failed: %s", user.id, exc)
    return f"{sent} riepiloghi delle posizioni scadute inviati, {failed} non riusciti"
