"""Outgoing e-mail over SMTP (standard library), or into an outbox directory on a laptop without a mail server.

The outbox is a development convenience, like Django's file backend: each message is written as an ``.eml`` file
that any mail client opens. Production has no outbox (see ``MAIL_OUTBOX_DIR`` in :mod:`portal.config`), so a
missing ``MAIL_SERVER`` there is an error, never a silent drop.
"""

import contextlib
import smtplib
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path


class MailError(RuntimeError):
    """The message could not be handed over (the text says why, as the server said it)."""


@dataclass(frozen=True)
class MailSettings:
    server: str | None
    port: int = 25
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    use_ssl: bool = False
    timeout: float = 30.0
    sender: str = "Pay Box <noreply@paybox.localhost>"
    outbox_dir: Path | None = None

    @classmethod
    def from_config(cls, config) -> "MailSettings":
        outbox = config.get("MAIL_OUTBOX_DIR")
        return cls(server=config.get("MAIL_SERVER"), port=int(config.get("MAIL_PORT") or 25),
                   username=config.get("MAIL_USERNAME"), password=config.get("MAIL_PASSWORD"),
                   use_tls=bool(config.get("MAIL_USE_TLS")), use_ssl=bool(config.get("MAIL_USE_SSL")),
                   timeout=float(config.get("MAIL_TIMEOUT_SECONDS") or 30), sender=config["MAIL_FROM"],
                   outbox_dir=Path(outbox) if outbox else None)

    @property
    def configured(self) -> bool:
        """Whether messages can go anywhere (a server, or the development outbox)."""
        return bool(self.server or self.outbox_dir)


class Mailer:
    """Sends messages, reusing one SMTP connection for a batch: ``with Mailer(settings) as m: m.send(msg)``."""

    def __init__(self, settings: MailSettings):
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> "Mailer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()
            self._smtp = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            if s.use_ssl:
                smtp = smtplib.SMTP_SSL(s.server, s.port, timeout=s.timeout, context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(s.server, s.port, timeout=s.timeout)
                if s.use_tls:
                    smtp.starttls(context=ssl.create_default_context())
            if s.username:
                smtp.login(s.username, s.password or "")
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"Server di posta non raggiungibile ({s.server}:{s.port}): {exc}") from exc
        return smtp

    def send(self, message: EmailMessage) -> str:
        """Hand ``message`` over; returns its Message-ID.

        :raise MailError: no server configured, the server refused the message or could not be reached.
        """
        s = self.settings
        if "From" not in message:
            message["From"] = s.sender
        if "Message-ID" not in message:
            domain = s.sender.rsplit("@", 1)[-1].rstrip(">") or "paybox.localhost"
            message["Message-ID"] = f"<{uuid.uuid4().hex}@{domain}>"
        if not s.server:
            if s.outbox_dir is None:
                raise MailError("Nessun server di posta configurato (MAIL_SERVER).")
            s.outbox_dir.mkdir(parents=True, exist_ok=True)
            name = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.eml"
            (s.outbox_dir / name).write_bytes(message.as_bytes())
            return message["Message-ID"]
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise MailError(f"Indirizzo rifiutato dal server di posta: {exc.recipients}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise MailError(f"Invio non riuscito: {exc}") from exc
        return message["Message-ID"]
