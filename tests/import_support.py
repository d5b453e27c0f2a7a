"""Helpers for the bulk-upload tests: files in the default layout, and the whole flow run inline."""

import csv
import io
from datetime import date, timedelta

from portal.extensions import db
from portal.imports import services as imports

HEADER = ["chiave", "codice_fiscale", "nominativo", "causale", "tipo_pagamento", "numero_rata", "importo",
          "scadenza"]
CF_OTHER = "VRDLSU75C41F205B"


def due(days: int = 60) -> str:
    """A future due date as gg/mm/aaaa."""
    return (date.today() + timedelta(days=days)).strftime("%d/%m/%Y")


def rows_csv(rows, *, header=HEADER, delimiter=";", encoding="utf-8", bom=False) -> bytes:
    """A CSV file of ``rows`` (lists, or dicts by column)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(h, "") for h in header] if isinstance(row, dict) else row)
    data = out.getvalue().encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data


def single(key, amount="100,00", *, cf="RSSMRA80A01H501U", name="Mario Rossi", when=None, subject="TARI 2027"):
    return {"chiave": key, "codice_fiscale": cf, "nominativo": name, "causale": subject, "tipo_pagamento": "unica",
            "importo": amount, "scadenza": when or due()}


def settings(tmp_path) -> imports.ImportSettings:
    return imports.ImportSettings(storage_dir=tmp_path / "imports", max_bytes=64 * 1024 * 1024)


def upload(creditor, service, data: bytes, tmp_path, *, filename="file.csv", actor="user:1", **options):
    """Upload ``data`` and run its dry run inline; returns the import (committed)."""
    imp = imports.create_import(db.session, creditor, service, filename, io.BytesIO(data),
                                imports.ImportOptions(**options), actor=actor, settings=settings(tmp_path),
                                enqueue=False)
    db.session.commit()
    imports.run_dry_run(db.session, imp.id, settings=settings(tmp_path))
    db.session.commit()
    return imp


def confirm_and_run(imp, tmp_path):
    imports.confirm(db.session, imp.id, actor="user:1", enqueue=False)
    db.session.commit()
    imports.run_import(db.session, imp.id, settings=settings(tmp_path), enqueue=False)
    db.session.commit()
    return imp


def errors(imp):
    """``(row, column, message)`` of the row report."""
    return [(e.row_number, e.column, e.message) for e in imports.report_rows(db.session, imp.id, limit=10_000)]
