"""Users get a session version: logout, a new password or disabling the user ends every session server-side.

Revision ID: 2e8f6a1c9b47
Revises: 9c4d2f1a7e60
Create Date: 2026-12-07 12:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '2e8f6a1c9b47'
down_revision = '9c4d2f1a7e60'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), nullable=False, server_default='1'))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')
