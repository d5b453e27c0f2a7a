"""Bulk upload of bill runs (CSV/XLSX): read a file, check it in a dry run, import it in bulk.

Plain Python without Flask, like the ledger: the back office, the REST API and ``flask imports run`` call
:mod:`portal.imports.services`; jobs run the dry run and the import.
"""
