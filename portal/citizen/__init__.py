"""The citizens' portal (``/``): where people find and pay what they owe the Comune."""

from flask import Blueprint

bp = Blueprint("citizen", __name__)

from portal.citizen import views  # noqa: E402,F401  (routes register on bp)
