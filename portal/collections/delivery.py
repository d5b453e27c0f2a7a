"""How a finished batch's letters leave: by PEC or e-mail where the debtor has an address, the rest in a print
package with the bill run's ZIP layout (``avvisi/<CF>_<IUV>.pdf``, ``indice.csv`` sorted by CAP, ``dati.csv``,
``senza_indirizzo.csv`` + ``senza_indirizzo/``, ``LEGGIMI.txt``), so the same print vendor takes it.

Reminders carry their own delivery state (``queued`` → ``sent``/``failed``/``printed``): finishing a batch again
sends only what is not sent yet and writes the package again with the same letters.
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import date
from email.message import EmailMessage
from email.utils import formataddr
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.collections import letters
from portal.collections.models import CollectionBatch, CollectionBatchItem, Reminder
from portal.collections.settings import policies_by_service
from portal.formatting import format_date
from portal.ledger import services as ledger
from portal.ledger.models import Creditor, Event, Position
from portal.ledger.types import utcnow
from portal.mail import Mailer, MailError
from portal.money import format_euro
from portal.notices.envelopes import postal_address, sheets
from portal.notices.package import DATA_COLUMNS, INDEX_COLUMNS, NO_ADDRESS_COLUMNS, data_rows, index_row, no_address_row
from portal.notices.render import notice_filename, unpaid_options
from portal.notices.zipwriter import StoredZipWriter
from portal.reports.exports import csv_safe

log = logging.getLogger(__name__)

README = """{title} (lotto n. {batch.id})
Ente: {creditor.name} (C.F. {creditor.fiscal_code})

avvisi/              un PDF per busta, <CF>_<IUV>.pdf: la lettera e l'avviso pagoPA
indice.csv           una riga per busta, ordinate per CAP: file, pagine, fogli e righe dell'indirizzo (standard Poste)
dati.csv             una riga per avviso con tutti i dati
senza_indirizzo.csv  destinatari senza indirizzo postale completo: {without}
senza_indirizzo/     le loro lettere in PDF

Buste: {envelopes}. File CSV: UTF-8, separatore ";", importi in centesimi.
"""


def reminder_letter(session: Session, reminder: Reminder, creditor: Creditor) -> bytes:
    """The reminder's PDF as it was issued (deadline, cost) with the position's current notice."""
    return letters.reminder_pdf(reminder.position, creditor, on=reminder.issued_at.date(), due_date=reminder.due_date,
                                deadline=reminder.deadline, cost_cents=reminder.cost_cents,
                                sequence=reminder.sequence)


def assessment_letter(session: Session, position: Position, creditor: Creditor) -> bytes:
    """The act of a re-issued position, with the breakdown stored when it was created."""
    event = session.scalar(sa.select(Event).where(Event.position_id == position.id, Event.kind == "reissue_of")
                           .order_by(Event.id.desc()).limit(1))
    if event is None or position.replaces_id is None:
        raise ValueError("La posizione non è un atto di accertamento.")
    old = session.get(Position, position.replaces_id)
    return letters.assessment_pdf(position, old, creditor, on=event.at.date(),
                                  deadline=date.fromisoformat(event.details["deadline"]),
                                  breakdown=event.details["breakdown"])


def _message(to_name: str, address: str, subject: str, body: list[str], pdf: bytes, filename: str,
             creditor: Creditor) -> EmailMessage:
    message = EmailMessage()
    message["To"] = formataddr((to_name, address))
    message["Subject"] = subject[:200]
    if creditor.email:
        message["Reply-To"] = creditor.email
    message.set_content("\n".join(body))
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=filename)
    return message


def finish(session: Session, batch_id: int, *, storage_dir: Path, mailer: Mailer) -> str:
    """Send the batch's letters that have an address and write the print package of the others."""
    batch = session.get(CollectionBatch, batch_id)
    creditor = session.get(Creditor, batch.creditor_id)
    if batch.kind == "reminder":
        envelopes = _reminder_letters(session, batch, creditor, mailer)
    else:
        envelopes = _assessment_letters(session, batch, creditor, mailer)
    sent = sum(1 for e in envelopes if e[0] == "sent")
    failed = sum(1 for e in envelopes if e[0] == "failed")
    printed = [e for e in envelopes if e[0] == "print"]
    if printed:
        storage_dir.mkdir(parents=True, exist_ok=True)
        target = storage_dir / f"lotto-{batch.id}.zip"
        _write_package(target, batch, creditor, [(p, pdf) for _, p, pdf in printed])
        batch.package_path = str(target)
    session.flush()
    return f"{sent} lettere inviate per PEC o e-mail, {failed} invii non riusciti, {len(printed)} da stampare"


def _reminder_letters(session: Session, batch: CollectionBatch, creditor: Creditor, mailer: Mailer) -> list:
    out = []
    reminders = session.scalars(sa.select(Reminder).where(Reminder.batch_id == batch.id).order_by(Reminder.id)).all()
    for reminder in reminders:
        position = reminder.position
        if not unpaid_options(position):
            continue  # paid since: no letter
        if reminder.channel == "print":
            out.append(("print", position, reminder_letter(session, reminder, creditor)))
            reminder.delivery_status = "printed"
            continue
        if reminder.delivery_status == "sent":
            continue
        pdf = reminder_letter(session, reminder, creditor)
        body = [f"Gentile {position.debtor.name},", "",
                f"in allegato il sollecito di pagamento di {creditor.name} per: {position.subject}.",
                f"Importo da pagare entro il {format_date(reminder.deadline)}: {format_euro(reminder.amount_cents)}.",
                "Nell'allegato trova l'avviso pagoPA per pagare.", "",
                "Se ha già pagato, non tenga conto di questo messaggio.", ""]
        out.append(_send(mailer, reminder, position, creditor, f"Sollecito di pagamento - {creditor.name}: "
                         f"{position.subject}", body, pdf))
    return out


def _send(mailer: Mailer, reminder: Reminder, position: Position, creditor: Creditor, subject: str, body: list[str],
          pdf: bytes) -> tuple:
    try:
        mailer.send(_message(position.debtor.name, reminder.address, subject, body, pdf, notice_filename(position),
                             creditor))
    except MailError as exc:
        reminder.delivery_status, reminder.delivery_error = "failed", str(exc)[:2000]
        return ("failed", position, None)
    reminder.delivery_status, reminder.delivery_error = "sent", None
    return ("sent", position, None)


def _assessment_letters(session: Session, batch: CollectionBatch, creditor: Creditor, mailer: Mailer) -> list:
    out = []
    now = utcnow()
    policies = policies_by_service(session, creditor.id)
    new_ids = session.scalars(sa.select(CollectionBatchItem.new_position_id).where(
        CollectionBatchItem.batch_id == batch.id, CollectionBatchItem.new_position_id.is_not(None))
        .order_by(CollectionBatchItem.id)).all()
    for position in session.scalars(sa.select(Position).where(Position.id.in_(new_ids or [-1]))
                                    .order_by(Position.id)):
        if not unpaid_options(position):
            continue
        pdf = assessment_letter(session, position, creditor)
        already = position.notice_issued_at is not None
        if position.debtor.pec and not already:
            try:
                mailer.send(_message(position.debtor.name, position.debtor.pec,
                                     f"Avviso di accertamento esecutivo - {creditor.name}",
                                     [f"Gentile {position.debtor.name},", "",
                                      "si notifica in allegato l'avviso di accertamento esecutivo: "
                                      f"{position.subject}.",
                                      ""], pdf, notice_filename(position), creditor))
                channel = "PEC"
                out.append(("sent", position, None))
            except MailError as exc:
                log.warning("assessment %s: PEC failed: %s", position.iupd, exc)
                out.append(("failed", position, None))
                continue
        else:
            channel = policies[position.service_id].notification_method
            out.append(("print", position, pdf))
        if not already:
            position.notice_issued_at = now
            ledger.record_event(session, position, "notice_issued", actor="system", at=now, channel=channel,
                                batch_id=batch.id)
    return out


def _write_package(target: Path, batch: CollectionBatch, creditor: Creditor, letters_: list) -> None:
    """The ZIP of a bill run's layout for ``letters_`` ((position, pdf) pairs), envelopes sorted by CAP."""
    from pypdf import PdfReader

    def cap_key(item):
        d = item[0].debtor
        return ((d.country or "IT") != "IT", d.postal_code or "", d.city or "", d.street or "", d.name)

    index, no_address, data = io.StringIO(), io.StringIO(), io.StringIO()
    writers = {name: csv.writer(buf, delimiter=";") for name, buf in
               (("index", index), ("none", no_address), ("data", data))}
    writers["index"].writerow(INDEX_COLUMNS)
    writers["none"].writerow(NO_ADDRESS_COLUMNS)
    writers["data"].writerow(DATA_COLUMNS)
    envelopes = without = 0
    with StoredZipWriter(target) as package:
        for number, (position, pdf) in enumerate(sorted(letters_, key=cap_key), start=1):
            name = notice_filename(position)
            address = postal_address(position.debtor)
            options = unpaid_options(position)
            if address is None:
                without += 1
                package.write_bytes(f"senza_indirizzo/{name}", pdf)
                writers["none"].writerow([csv_safe(v) for v in no_address_row(envelope_id=number, file=name,
                                                                              position=position)])
            else:
                envelopes += 1
                pages = len(PdfReader(io.BytesIO(pdf)).pages)
                package.write_bytes(f"avvisi/{name}", pdf)
                writers["index"].writerow([csv_safe(v) for v in index_row(
                    envelope_id=number, file=name, page_from=1, pages=pages, sheets=sheets(pages, duplex=False),
                    position=position, address=address, product="RACCOMANDATA_AR" if batch.kind == "litigation"
                    else "POSTA_MASSIVA", navs=[o.notice_number for o in options])])
            for row in data_rows(envelope_id=number, position=position, creditor=creditor, address=address,
                                 options=options):
                writers["data"].writerow([csv_safe(v) for v in row])
        package.write_bytes("indice.csv", index.getvalue().encode("utf-8"))
        package.write_bytes("dati.csv", data.getvalue().encode("utf-8"))
        package.write_bytes("senza_indirizzo.csv", no_address.getvalue().encode("utf-8"))
        package.write_bytes("LEGGIMI.txt", README.format(title=batch.title, batch=batch, creditor=creditor,
                                                         without=without, envelopes=envelopes).encode("utf-8"))
