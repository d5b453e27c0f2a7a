"""Job records say whether a run found nothing to do (``idle``), so the jobs page can hide periodic no-op runs.

Revision ID: 5b1e0c7d2a93
Revises: ea2f511f85f9
Create Date: 2026-12-07 11:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5b1e0c7d2a93'
down_revision = 'ea2f511f85f9'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idle', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index('ix_jobs_kind_id', ['kind', 'id'])


def downgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_kind_id')
        batch_op.drop_column('idle')
