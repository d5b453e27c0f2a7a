"""Whether pagoPA can collect a position now, and if not, why (in Italian): a notice is offered only then."""

from portal.i18n import _
from portal.ledger.models import Position
from portal.ledger.status import PAYABLE_STATUSES, OptionStatus, PositionStatus


def not_payable_reason(position: Position) -> str | None:
    """``None`` when the citizen can pay the position on pagoPA now; otherwise the sentence an officer reads."""
    status = position.status
    if status == PositionStatus.DRAFT:
        if position.pagopa_target == "published":
            return _("La posizione è in corso di caricamento su pagoPA: l'avviso sarà disponibile appena confermata.")
        return _("La posizione è una bozza: l'avviso sarà disponibile dopo la pubblicazione su pagoPA.")
    if status in (PositionStatus.CANCELLED, PositionStatus.IN_LITIGATION):
        return _("La posizione è annullata: l'avviso non è più pagabile.")
    if status in (PositionStatus.PAID, PositionStatus.REPORTED):
        return _("La posizione è pagata: non c'è nulla da pagare.")
    if status not in PAYABLE_STATUSES or position.pagopa_target != "published":
        return _("La posizione non è pagabile su pagoPA.")
    if not any(o.status == OptionStatus.UNPAID for o in position.options):
        return _("Non ci sono importi da pagare: nessun avviso da stampare.")
    return None
