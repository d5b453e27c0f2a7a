"""Bulk uploads: one row per uploaded file with its settings, figures and state, its row errors, and the column
mapping each service saved for the files its billing software writes."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.ledger.models import RESTRICT
from portal.ledger.types import UTCDateTime, utcnow

#: Life of an import: checked by a dry run, confirmed, imported (or refused, failed, cancelled).
STATUSES = ("uploaded", "checking", "checked", "importing", "done", "failed", "cancelled")
#: Statuses in which a job is working on the import.
ACTIVE_STATUSES = ("uploaded", "checking", "importing")
#: Formats a file can be read as.
FORMATS = ("csv", "xlsx")


class Import(db.Model):
    """One uploaded file: where it is kept, how it is read, what its dry run found and what was imported."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(sa.ForeignKey("creditors.id", ondelete=RESTRICT), index=True)
    #: The service chosen on upload: rows without a service column belong to it.
    service_id: Mapped[int] = mapped_column(sa.ForeignKey("services.id", ondelete=RESTRICT))
    #: The name the file had on the officer's computer (shown, never used as a path).
    filename: Mapped[str] = mapped_column(sa.String(255))
    #: Where the file is kept, relative to ``IMPORTS_DIR``.
    stored_name: Mapped[str] = mapped_column(sa.String(200))
    file_size: Mapped[int] = mapped_column(sa.BigInteger)
    #: SHA-256 of the file's bytes: the same file uploaded again is recognised.
    content_sha256: Mapped[str] = mapped_column(sa.String(64))
    #: ``csv`` or ``xlsx``, and for a CSV the encoding and separator found on upload.
    file_format: Mapped[str] = mapped_column(sa.String(4))
    encoding: Mapped[str | None] = mapped_column(sa.String(12))
    delimiter: Mapped[str | None] = mapped_column(sa.String(1))
    #: The column mapping the file is read with (a copy: a later change of the service's mapping does not
    #: change what this import meant).
    mapping: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    #: Import the positions whose rows are all valid even if other rows have errors.
    valid_rows_only: Mapped[bool] = mapped_column(default=False)
    #: Positions already imported (same key) are updated when unpaid; otherwise they are left as they are.
    update_existing: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(sa.String(10), default="uploaded")
    #: Data rows read (the header excluded), rows with at least one error, and the errors found.
    rows_total: Mapped[int] = mapped_column(default=0)
    rows_refused: Mapped[int] = mapped_column(default=0)
    error_count: Mapped[int] = mapped_column(default=0)
    #: Positions of the file: new, to update (or updated), unchanged (already there as the file says, or left as
    #: they are without "update existing"), and refused (one of their rows has an error).
    positions_new: Mapped[int] = mapped_column(default=0)
    positions_updated: Mapped[int] = mapped_column(default=0)
    positions_unchanged: Mapped[int] = mapped_column(default=0)
    positions_refused: Mapped[int] = mapped_column(default=0)
    #: Per service code: ``{"positions": n, "options": n, "amount_cents": n}`` of the valid positions.
    totals: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    #: Positions written by the import (created and updated).
    imported: Mapped[int] = mapped_column(default=0)
    message: Mapped[str | None] = mapped_column(sa.Text)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    #: Who uploaded it, as the timeline names actors (``user:3``, ``api:tari``, ``cli``).
    actor: Mapped[str] = mapped_column(sa.String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    service = relationship("Service")
    created_by = relationship("User", foreign_keys=[created_by_id])

    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('uploaded', 'checking', 'checked', 'importing', 'done', 'failed', 'cancelled')",
            name="status_known"),
        sa.CheckConstraint("file_format IN ('csv', 'xlsx')", name="format_known"),
        sa.Index("ix_imports_creditor_sha", "creditor_id", "content_sha256"),
    )

    @property
    def active(self) -> bool:
        """Whether a job is (or should be) working on it: its page polls."""
        return self.status in ACTIVE_STATUSES

    @property
    def positions_valid(self) -> int:
        """Positions the import writes or leaves as they are (every row valid)."""
        return self.positions_new + self.positions_updated + self.positions_unchanged

    @property
    def confirmable(self) -> bool:
        """Checked, with something to write, and either without errors or importing only the valid rows."""
        return (self.status == "checked" and self.positions_new + self.positions_updated > 0
                and (self.error_count == 0 or self.valid_rows_only))


class ImportRowError(db.Model):
    """One problem of one row of an import's file: row number, column, Italian message (the row report)."""

    __tablename__ = "import_row_errors"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    import_id: Mapped[int] = mapped_column(sa.ForeignKey("imports.id", ondelete="CASCADE"))
    #: The row as a spreadsheet numbers it (the header is row 1); 0 for a problem of the whole file.
    row_number: Mapped[int] = mapped_column()
    #: The column's header in the file ("" when the problem is not in one column).
    column: Mapped[str] = mapped_column(sa.String(100), default="")
    #: The field of the layout (``importo``, ``iban_2``) or the ledger's path (``installments.2.due_date``).
    field: Mapped[str] = mapped_column(sa.String(60), default="")
    #: The position key of the row, when it has one.
    key: Mapped[str | None] = mapped_column(sa.String(100))
    message: Mapped[str] = mapped_column(sa.Text)

    __table_args__ = (sa.Index("ix_import_row_errors_import_row", "import_id", "row_number", "id"),)


class ImportMapping(db.Model):
    """How one service's files are read: header name for each field, fixed values, date and decimal format."""

    __tablename__ = "import_mappings"

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(sa.ForeignKey("services.id", ondelete="CASCADE"), unique=True)
    #: ``{field: header in the file}`` for the fields whose column is not called as in the default layout.
    columns: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    #: ``{field: value}`` for fields the file does not have (the same for every row: "causale": "TARI 2027").
    fixed: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    #: ``auto`` or a strftime pattern such as ``%d.%m.%Y``.
    date_format: Mapped[str] = mapped_column(sa.String(20), default="auto")
    #: ``auto``, ``,`` or ``.``: the decimal separator of amounts.
    decimal: Mapped[str] = mapped_column(sa.String(4), default="auto")
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
