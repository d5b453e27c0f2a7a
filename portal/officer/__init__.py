"""The back office of the Comune's officers (``/officer``)."""

from flask import Blueprint

bp = Blueprint("officer", __name__)

from portal.officer import views  # noqa: E402,F401  (routes register on bp)
