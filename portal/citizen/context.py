"""Which Ente a citizen page belongs to: the only creditor of the installation, or the one named in the URL
(``/<creditor-slug>/...``) when an intermediary serves several. Slugs come from the Ente's name."""

from __future__ import annotations

import re
import unicodedata

import sqlalchemy as sa
from flask import abort, url_for

from portal.extensions import db
from portal.forms_builder.models import PaymentForm
from portal.ledger.models import Creditor, Service


def slugify(name: str) -> str:
    """``Comune di Sant'Angelo`` → ``comune-di-sant-angelo`` (ASCII, at most 60 characters)."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")[:60] or "ente"


def creditors() -> list[Creditor]:
    """Every Ente of the installation, by id."""
    return list(db.session.scalars(sa.select(Creditor).order_by(Creditor.id)))


def slugs(all_creditors: list[Creditor]) -> dict[int, str]:
    """Each Ente's slug; two with the same name are told apart by their fiscal code."""
    names = [slugify(c.name) for c in all_creditors]
    return {c.id: (name if names.count(name) == 1 else f"{name}-{c.fiscal_code}")
            for c, name in zip(all_creditors, names, strict=True)}


def resolve(slug: str | None) -> tuple[Creditor, str | None]:
    """The Ente of a page and the slug its URLs carry (``None`` when the installation has one Ente).

    404 for an unknown slug, for a slug on a one-Ente installation, and for no slug when there are several.
    """
    everyone = creditors()
    if not everyone:
        abort(404)
    if slug is None:
        if len(everyone) != 1:
            abort(404)
        return everyone[0], None
    if len(everyone) == 1:
        abort(404)
    for creditor_id, name in slugs(everyone).items():
        if name == slug:
            return next(c for c in everyone if c.id == creditor_id), slug
    abort(404)


def payable_services(creditor_id: int) -> list[tuple[Service, PaymentForm]]:
    """The Ente's active services with a published payment form, by name."""
    rows = db.session.execute(
        sa.select(Service, PaymentForm).join(PaymentForm, PaymentForm.service_id == Service.id)
        .where(Service.creditor_id == creditor_id, Service.active.is_(True), Service.spontaneous.is_(True),
               PaymentForm.status == "published")
        .order_by(Service.name)).all()
    return [(service, form) for service, form in rows]


def service_with_form(creditor: Creditor, code: str) -> tuple[Service, PaymentForm]:
    """The service ``code`` of the Ente and its published form, or 404."""
    code = (code or "").strip().upper()[:35]
    for service, form in payable_services(creditor.id):
        if service.code == code:
            return service, form
    abort(404)


def creditor_url(endpoint: str, slug: str | None, **values) -> str:
    """``url_for`` of a citizen page of an Ente, with its prefix when there are several."""
    if slug:
        return url_for(f"citizen.{endpoint}_of", slug=slug, **values)
    return url_for(f"citizen.{endpoint}", **values)
