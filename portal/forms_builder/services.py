"""Building, versioning and publishing a service's payment form. Plain Python: take the session and the actor,
flush, never commit (like :mod:`portal.ledger.services`)."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.forms_builder.definition import FormDefinition, check_definition
from portal.forms_builder.models import PaymentForm
from portal.ledger.errors import FieldError, ValidationFailed
from portal.ledger.models import Service
from portal.ledger.types import utcnow

log = logging.getLogger(__name__)


def published_form(session: Session, service_id: int) -> PaymentForm | None:
    """The version citizens fill in now, if the service has one."""
    return session.scalar(sa.select(PaymentForm).where(PaymentForm.service_id == service_id,
                                                       PaymentForm.status == "published"))


def draft_form(session: Session, service_id: int) -> PaymentForm | None:
    """The version being built, if any."""
    return session.scalar(sa.select(PaymentForm).where(PaymentForm.service_id == service_id,
                                                       PaymentForm.status == "draft"))


def versions(session: Session, service_id: int) -> list[PaymentForm]:
    """Every version of the service's form, newest first."""
    return list(session.scalars(sa.select(PaymentForm).where(PaymentForm.service_id == service_id)
                                .order_by(PaymentForm.version.desc())))


def save_draft(session: Session, service: Service, definition: FormDefinition, *, actor_user_id: int | None,
               template_key: str | None = None) -> PaymentForm:
    """Store ``definition`` as the service's draft (a new version number if there was no draft).

    :raise ValidationFailed: the form is not complete or not consistent; nothing is stored.
    """
    check_definition(definition)
    draft = draft_form(session, service.id)
    if draft is None:
        last = session.scalar(sa.select(sa.func.max(PaymentForm.version)).where(PaymentForm.service_id == service.id))
        draft = PaymentForm(creditor_id=service.creditor_id, service_id=service.id, version=(last or 0) + 1,
                            status="draft", created_by_id=actor_user_id, template_key=template_key)
        session.add(draft)
    elif template_key:
        draft.template_key = template_key
    draft.definition = definition.to_dict()
    session.flush()
    log.info("service %s: payment form draft v%d saved by user %s", service.code, draft.version, actor_user_id)
    return draft


def publish(session: Session, service: Service, *, actor_user_id: int | None) -> PaymentForm:
    """Make the draft the form citizens fill in; the version published until now is retired (payments made with
    it keep it). The service becomes payable spontaneously.

    :raise ValidationFailed: there is no draft, or it is not valid any more.
    """
    draft = draft_form(session, service.id)
    if draft is None:
        raise ValidationFailed([FieldError("form", "Non c'è una bozza da pubblicare: salvare prima il modulo.")])
    check_definition(FormDefinition.from_dict(draft.definition))
    current = published_form(session, service.id)
    if current is not None:
        current.status = "retired"
        session.flush()  # the partial unique index allows one published version at a time
    draft.status = "published"
    draft.published_at = utcnow()
    draft.published_by_id = actor_user_id
    service.spontaneous = True
    session.flush()
    log.info("service %s: payment form v%d published by user %s", service.code, draft.version, actor_user_id)
    return draft


def withdraw(session: Session, service: Service, *, actor_user_id: int | None) -> bool:
    """Take the published form off the portal (citizens can no longer start a payment of this service).

    :return: whether there was a published form.
    """
    current = published_form(session, service.id)
    if current is None:
        return False
    current.status = "retired"
    session.flush()
    log.info("service %s: payment form v%d withdrawn by user %s", service.code, current.version, actor_user_id)
    return True
