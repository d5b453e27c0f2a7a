"""The pagoPA integration: GPD, Checkout and FdR clients, the SOAP endpoint for the node, and the sandbox.

``specs/`` holds verbatim copies of the official pagoPA files we implement (same relative layout as
``specs/pagopa/`` of the project's shared folder, see ``specs/SOURCES.md``); a test checks they are unchanged.
"""

from pathlib import Path

SPECS_DIR = Path(__file__).parent / "specs"
