"""Positions record when their printed notice was superseded by an edit or an abatement.

Revision ID: b41d7e2c9a15
Revises: 7a3c5e9d1f20
Create Date: 2026-12-07 14:30:00

"""
from alembic import op
import sqlalchemy as sa

from portal.ledger.types import UTCDateTime


# revision identifiers, used by Alembic.
revision = 'b41d7e2c9a15'
down_revision = '7a3c5e9d1f20'
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN (no batch copy on SQLite: the positions table keeps its triggers).
    op.add_column('positions', sa.Column('notice_superseded_at', UTCDateTime(timezone=True), nullable=True))


def downgrade():
    # SQLite 3.35+ drops a column in place, so the triggers of position_totals stay.
    op.drop_column('positions', 'notice_superseded_at')
