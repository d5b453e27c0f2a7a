"""Partial index of the positions the daily overdue scan may expire (published or partly paid), by service and due
date: the scan reads a range of it per service instead of the whole table (measured with bench/overdue.py on 1M
positions: the scan with nothing to do went from 2.3 s, a full scan per service, to milliseconds).

Revision ID: 30709a6aca57
Revises: 2e38df6531af
Create Date: 2026-12-07 21:07:38.786759

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '30709a6aca57'
down_revision = '2e38df6531af'
branch_labels = None
depends_on = None

EXPIRABLE = sa.text("status IN ('published', 'partially_paid')")


def upgrade():
    op.create_index('ix_positions_expirable', 'positions', ['service_id', 'due_date'], unique=False,
                    postgresql_where=EXPIRABLE, sqlite_where=EXPIRABLE)


def downgrade():
    op.drop_index('ix_positions_expirable', table_name='positions')
