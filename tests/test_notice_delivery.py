"""Notices by e-mail through a real SMTP server (aiosmtpd): the message, the officer's button, bill runs, failures."""

import socket
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.jobs.queue import get_backend
from portal.mail import Mailer, MailError, MailSettings
from portal.notices import billrun
from portal.notices.delivery import notice_email
from portal.notices.models import BillRun, NoticeDelivery
from portal.notices.render import render_notice

aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd provides the test SMTP server")


class Inbox:
    """Keeps every message the SMTP server accepted."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(app, monkeypatch):
    """A real SMTP server on a free port, and the app configured to use it."""
    inbox = Inbox()
    port = free_port()
    controller = aiosmtpd.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_PORT", port)
    monkeypatch.setitem(app.config, "MAIL_FROM", "Comune di Prova <tributi@comune.example.it>")
    yield inbox
    controller.stop()


def test_the_message_says_what_is_due_and_carries_the_notice(billable, creditor):
    position = billable[1]  # single payment and 3 installments
    pdf = render_notice(position, creditor=creditor)
    message = notice_email(position, creditor, pdf)
    assert message["To"] == "Laura Bianchi <laura@example.org>"
    assert message["Subject"].startswith("Avviso di pagamento pagoPA - Comune di Prova: TARI 2027")
    body = message.get_body(("plain",)).get_content()
    single = position.single_option
    assert "Gentile Laura Bianchi" in body
    assert f"codice avviso {single.notice_number[:4]} " in body
    assert "In alternativa, a rate:" in body
    assert body.count("rata ") == 3
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == f"{position.debtor.fiscal_code}_{single.iuv}.pdf"
    assert attachment.get_content() == pdf


def test_officer_sends_a_notice_and_sees_the_delivery_log(app, client, login, make_user, billable, smtp):
    login(make_user())
    position = billable[0]
    page = client.get(f"/officer/positions/{position.id}").get_data(as_text=True)
    assert "Invia l'avviso a mario@example.org" in page
    response = client.post(f"/officer/positions/{position.id}/notice/email")
    assert response.status_code == 303
    delivery = db.session.scalars(sa.select(NoticeDelivery)).one()
    assert delivery.status == "queued"
    get_backend(app).run_pending()
    db.session.refresh(delivery)
    assert delivery.status == "sent"
    assert delivery.sent_at is not None
    ((recipients, message),) = smtp.messages
    assert recipients == ["mario@example.org"]
    assert message["From"] == "Comune di Prova <tributi@comune.example.it>"
    page = client.get(f"/officer/positions/{position.id}").get_data(as_text=True)
    assert "Invii dell" in page
    assert "Inviato" in page


def test_viewer_cannot_send_and_debtor_without_email_is_refused(app, client, login, make_user, billable, smtp):
    login(make_user("consulta", role="viewer"))
    assert client.post(f"/officer/positions/{billable[0].id}/notice/email").status_code == 403
    client.post("/officer/logout")
    login(make_user())
    position = billable[2]
    position.debtor.email = None
    db.session.commit()
    response = client.post(f"/officer/positions/{position.id}/notice/email", follow_redirects=True)
    assert "Il debitore non ha un indirizzo e-mail." in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(NoticeDelivery)) == 0


def test_a_server_that_is_down_leaves_a_failed_delivery_with_the_reason(app, client, login, make_user, billable,
                                                                        monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_PORT", free_port())  # nobody listens there
    login(make_user())
    client.post(f"/officer/positions/{billable[0].id}/notice/email")
    get_backend(app).run_pending()
    delivery = db.session.scalars(sa.select(NoticeDelivery)).one()
    assert delivery.status == "failed"
    assert "Server di posta non raggiungibile" in delivery.error
    page = client.get(f"/officer/positions/{billable[0].id}").get_data(as_text=True)
    assert "Non riuscito" in page


def test_bill_run_emails_each_notice_once(app, billable, creditor, settings, smtp):
    from portal.ledger.queries import PositionFilter

    run = billrun.start_bill_run(db.session, creditor, PositionFilter(), title="TARI", mode="merged",
                                 send_email=True, settings=settings)
    db.session.commit()
    get_backend(app).run_pending()
    assert sorted(r[0] for r, _ in smtp.messages) == sorted(p.debtor.email for p in billable)
    deliveries = db.session.scalars(sa.select(NoticeDelivery).where(NoticeDelivery.bill_run_id == run.id)).all()
    assert len(deliveries) == 6
    assert {d.status for d in deliveries} == {"sent"}
    # The mail job runs again (a retry): nothing is sent twice.
    for number in range(db.session.get(BillRun, run.id).chunks):
        billrun._enqueue(db.session, "billrun_mail", db.session.get(BillRun, run.id), f"again-{number}", number)
    db.session.commit()
    get_backend(app).run_pending()
    assert len(smtp.messages) == 6


def test_development_outbox_writes_eml_files(tmp_path):
    from email.message import EmailMessage

    message = EmailMessage()
    message["To"] = "mario@example.org"
    message["Subject"] = "Prova"
    message.set_content("Testo")
    with Mailer(MailSettings(server=None, outbox_dir=tmp_path / "outbox", sender="Pay Box <a@b.it>")) as mailer:
        mailer.send(message)
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    assert b"Subject: Prova" in eml.read_bytes()
    with pytest.raises(MailError, match="MAIL_SERVER"), Mailer(MailSettings(server=None)) as mailer:
        mailer.send(message)
