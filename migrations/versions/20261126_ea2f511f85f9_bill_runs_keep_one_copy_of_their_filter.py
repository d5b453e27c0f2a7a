"""Bill runs keep one copy of their filter: ``selection`` (the typed copy in ``filters`` said the same).

Revision ID: ea2f511f85f9
Revises: 42d355adf0ef
Create Date: 2026-11-26 04:02:33.892340

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'ea2f511f85f9'
down_revision = '42d355adf0ef'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('bill_runs', schema=None) as batch_op:
        batch_op.drop_column('filters')


def downgrade():
    with op.batch_alter_table('bill_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('filters', sa.JSON(), nullable=False, server_default='{}'))
