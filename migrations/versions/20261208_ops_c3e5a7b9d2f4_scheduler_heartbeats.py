"""The periodic scheduler's heartbeat (``scheduler_heartbeats``), read by ``/readyz`` and the metrics.

Revision ID: c3e5a7b9d2f4
Revises: 4e7b9a2c6d15
Create Date: 2026-12-07 14:20:00

"""
from alembic import op
import sqlalchemy as sa
import portal.ledger.types


# revision identifiers, used by Alembic.
revision = 'c3e5a7b9d2f4'
down_revision = '4e7b9a2c6d15'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'scheduler_heartbeats',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('holder', sa.String(length=64), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('beat_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_scheduler_heartbeats')),
    )


def downgrade():
    op.drop_table('scheduler_heartbeats')
