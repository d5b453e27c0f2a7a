"""Flagged receipts can be resolved by an officer: when, by whom, and with which note.

Revision ID: 9c4d2f1a7e60
Revises: 5b1e0c7d2a93
Create Date: 2026-12-07 11:55:00

"""
from alembic import op
import sqlalchemy as sa

import portal.ledger.types


# revision identifiers, used by Alembic.
revision = '9c4d2f1a7e60'
down_revision = '5b1e0c7d2a93'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('receipts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resolved_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resolved_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('resolution_note', sa.Text(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_receipts_resolved_by_id_users'), 'users', ['resolved_by_id'],
                                    ['id'], ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('receipts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_receipts_resolved_by_id_users'), type_='foreignkey')
        batch_op.drop_column('resolution_note')
        batch_op.drop_column('resolved_by_id')
        batch_op.drop_column('resolved_at')
