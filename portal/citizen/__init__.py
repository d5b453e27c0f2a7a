"""The citizens' portal (``/``): the Comune's services payable with a form, paying a notice, receipts."""

from flask import Blueprint

bp = Blueprint("citizen", __name__)

from portal.citizen import notices, payments, timings, views  # noqa: E402,F401  (routes and hooks register on bp)
