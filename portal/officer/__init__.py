"""The back office of the Comune's officers (``/officer``)."""

from flask import Blueprint

bp = Blueprint("officer", __name__)

# Routes register on bp when their modules are imported.
from portal.officer import entry, positions, settings, views  # noqa: E402,F401
