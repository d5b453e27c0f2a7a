"""Public pages of the portal."""

import sqlalchemy as sa
from flask import render_template

from portal.citizen import bp
from portal.extensions import db
from portal.ledger.models import Creditor, Service


@bp.route("/")
def home():
    """The portal's front page: the Comune and the services it collects through pagoPA."""
    creditor = db.session.scalar(sa.select(Creditor).order_by(Creditor.id).limit(1))
    services = []
    if creditor is not None:
        services = db.session.scalars(
            sa.select(Service)
            .where(Service.creditor_id == creditor.id, Service.active.is_(True))
            .order_by(Service.name)
        ).all()
    return render_template("citizen/home.html", creditor=creditor, services=services)
