"""Finding a notice by its number (codice avviso) and the debtor's fiscal code, and saying in plain Italian what
can be done with it: pay it, or why not (paid, cancelled, expired, replaced by a new notice).

No enumeration: an unknown number and a wrong fiscal code get the same answer, after the same single query, so
nobody learns which notice numbers exist or whose they are.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload

from portal.i18n import N_, _
from portal.ledger.identifiers import normalize_fiscal_code
from portal.ledger.models import Creditor, PaymentOption, Position
from portal.ledger.notice_numbers import format_nav
from portal.ledger.status import OptionStatus, PositionStatus

NOT_FOUND = N_("Nessun avviso corrisponde al codice avviso e al codice fiscale indicati. Controlli i dati: il codice "
             "avviso ha 18 cifre ed è stampato sull'avviso; il codice fiscale è quello dell'intestatario.")
#: The most notices one Checkout cart takes.
CART_MAX = 5


@dataclass(frozen=True)
class NoticeView:
    """What the citizen sees of one notice; ``payable`` says whether it can go in the cart."""

    option_id: int
    creditor_id: int
    creditor_name: str
    creditor_fiscal_code: str
    subject: str
    notice_number: str
    amount_cents: int
    due_date: date
    installment: str | None
    payable: bool
    explanation: str | None = None
    #: When the notice was replaced: the new one (payable, or explained in turn).
    replacement: NoticeView | None = None

    @property
    def nav_display(self) -> str:
        """The notice number grouped in fours, as printed."""
        return format_nav(self.notice_number)


def normalize_nav(text: str | None) -> str | None:
    """The 18 digits of a notice number as typed (spaces and dashes allowed), or ``None``."""
    raw = (text or "")[:40]
    digits = "".join(ch for ch in raw if ch.isdigit() and ch.isascii())
    if len(digits) != 18 or any(not (ch.isdigit() or ch in " -.") for ch in raw.strip()):
        return None
    return digits


def lookup(session: Session, nav: str | None, fiscal_code: str | None, *,
           creditor_ids: list[int] | None = None, today: date) -> NoticeView | None:
    """The notice ``nav`` of debtor ``fiscal_code`` (among ``creditor_ids`` when given), or ``None``: the same
    ``None`` whether the number is unknown or the fiscal code is not its debtor's."""
    nav = normalize_nav(nav)
    code = normalize_fiscal_code(fiscal_code or "")[:16]
    query = (sa.select(PaymentOption).where(PaymentOption.notice_number == (nav or "0" * 18))
             .options(joinedload(PaymentOption.position).joinedload(Position.debtor)).limit(5))
    if creditor_ids is not None:
        query = query.where(PaymentOption.creditor_id.in_(creditor_ids))
    options = session.scalars(query).unique().all()
    match = None
    for option in options:
        # Compared in constant time, and every candidate is compared: no early exit tells anything.
        same = hmac.compare_digest(option.position.debtor.fiscal_code.encode(), (code or "-").encode())
        if same and nav is not None and match is None:
            match = option
    if match is None:
        return None
    return describe(session, match, today=today)


def describe(session: Session, option: PaymentOption, *, today: date, depth: int = 0) -> NoticeView:
    """A notice's view with the explanation that applies to it."""
    position = option.position
    creditor = session.get(Creditor, position.creditor_id)
    installment = None
    if option.kind == "installment":
        total = session.scalar(sa.select(sa.func.count()).where(PaymentOption.position_id == position.id,
                                                                PaymentOption.kind == "installment"))
        installment = _("Rata %(n)s di %(total)s", n=option.installment_number, total=total)
    explanation, replacement = _explain(session, position, option, today=today, depth=depth)
    return NoticeView(option_id=option.id, creditor_id=creditor.id, creditor_name=creditor.name,
                      creditor_fiscal_code=creditor.fiscal_code, subject=position.subject,
                      notice_number=option.notice_number, amount_cents=option.amount_cents,
                      due_date=option.due_date, installment=installment, payable=explanation is None,
                      explanation=explanation, replacement=replacement)


def _explain(session: Session, position: Position, option: PaymentOption, *, today: date,
             depth: int) -> tuple[str | None, NoticeView | None]:
    status = position.status
    if option.status == OptionStatus.PAID:
        if option.paid_at:
            return _("Questo avviso risulta già pagato il %(date)s: non deve pagarlo di nuovo.",
                     date=f"{option.paid_at:%d/%m/%Y}"), None
        return _("Questo avviso risulta già pagato: non deve pagarlo di nuovo."), None
    if status == PositionStatus.IN_LITIGATION or (status == PositionStatus.CANCELLED and depth == 0):
        newer = session.scalar(sa.select(Position).where(Position.replaces_id == position.id)
                               .order_by(Position.id.desc()).limit(1))
        if newer is not None and depth < 3:
            nxt = next((o for o in newer.options if o.status == OptionStatus.UNPAID), newer.options[0])
            replacement = describe(session, nxt, today=today, depth=depth + 1)
            return _("Questo avviso è stato sostituito da un nuovo avviso con l'importo aggiornato (codice avviso "
                     "%(nav)s): paghi il nuovo avviso, non questo.", nav=replacement.nav_display), replacement
    if status in (PositionStatus.CANCELLED, PositionStatus.IN_LITIGATION) or option.status == OptionStatus.CANCELLED:
        return _("Questo avviso è stato annullato dal Comune: non deve essere pagato."), None
    if status in (PositionStatus.PAID, PositionStatus.REPORTED):
        return _("Questo avviso risulta già pagato: non deve pagarlo di nuovo."), None
    if status == PositionStatus.DRAFT or position.pagopa_synced_target != "published":
        return _("Questo avviso non è ancora pagabile online: riprovi più tardi."), None
    if status == PositionStatus.EXPIRED or option.due_date < today and position.status != PositionStatus.REMINDED:
        return _("Questo avviso è scaduto il %(date)s e non è più pagabile online: si rivolga all'ufficio del "
                 "Comune per un nuovo avviso.", date=f"{option.due_date:%d/%m/%Y}"), None
    if option.kind == "single" and status == PositionStatus.PARTIALLY_PAID:
        return _("È già stata pagata almeno una rata: il pagamento in unica soluzione non è più possibile. Paghi "
                 "le rate restanti con i loro codici avviso."), None
    return None, None
