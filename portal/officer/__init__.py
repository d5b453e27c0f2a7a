"""The back office of the Comune's officers (``/officer``)."""

from flask import Blueprint

bp = Blueprint("officer", __name__)

# Routes register on bp when their modules are imported.
from portal.officer import (  # noqa: E402,F401
    anomalies,
    billruns,
    collection_settings,
    collections,
    editing,
    entry,
    form_builder,
    imports,
    jobs,  # noqa: E402,F401
    notices,
    offline_payments,
    positions,
    publishing,
    reporting,
    settings,
    views,
    webhooks,
)
