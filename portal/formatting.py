"""How money, dates, numbers and statuses look in the UI (Italian conventions, Europe/Rome time)."""

from datetime import date, datetime

from portal.ledger.notice_numbers import format_nav
from portal.ledger.offline_payments import CHANNELS, PAGOPA_CHANNEL
from portal.ledger.status import BADGES, LABELS, PositionStatus
from portal.ledger.types import ROME
from portal.money import format_euro


def format_date(value: date | datetime | None) -> str:
    """``31/01/2027``; a timestamp is first converted to Rome time."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(ROME).date()
    return value.strftime("%d/%m/%Y")


def format_datetime(value: datetime | None) -> str:
    """``31/01/2027 14:05`` in Rome time."""
    if value is None:
        return ""
    return value.astimezone(ROME).strftime("%d/%m/%Y %H:%M")


def parse_date_input(text: str | None) -> date | None:
    """A date as a date input sends it (``2027-01-31``) or as a person types it (``31/01/2027``); else ``None``."""
    text = (text or "").strip()
    for pattern in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return None


def status_label(status: PositionStatus | str) -> str:
    """The Italian name of a status."""
    return LABELS.get(PositionStatus(status), str(status))


def status_badge(status: PositionStatus | str) -> str:
    """The Bootstrap badge colour of a status."""
    return BADGES.get(PositionStatus(status), "secondary")


def channel_label(channel: str | None) -> str:
    """How a payment was made: pagoPA, or outside it (counter, bank transfer, F24); the Italian source text
    (templates translate it)."""
    if channel == PAGOPA_CHANNEL:
        return "pagoPA"
    return CHANNELS.get(channel or "", channel or "")


def format_size(size: int | None) -> str:
    """A file size the Italian way: ``512 byte``, ``500,8 kB``, ``1,2 GB`` (decimal units)."""
    value = float(size or 0)
    if value < 1000:
        return f"{int(value)} byte"
    units = ["kB", "MB", "GB"]
    value /= 1000
    while value >= 1000 and len(units) > 1:
        value /= 1000
        units.pop(0)
    return f"{value:.1f} {units[0]}".replace(".", ",")


def register(app) -> None:
    """Install the filters on a Flask app."""
    app.add_template_filter(format_euro, "euro")
    app.add_template_filter(format_date, "date_it")
    app.add_template_filter(format_datetime, "datetime_it")
    app.add_template_filter(format_nav, "nav")
    app.add_template_filter(status_label, "status_label")
    app.add_template_filter(status_badge, "status_badge")
    app.add_template_filter(format_size, "size_it")
    app.add_template_filter(channel_label, "channel_label")
