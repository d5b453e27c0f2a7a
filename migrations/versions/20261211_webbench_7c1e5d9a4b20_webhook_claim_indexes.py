"""Webhook deliveries: the claim's two indexes on pending rows only, the due one in the claim's order.

``ix_webhook_deliveries_due`` becomes ``(next_attempt_at, id) WHERE status = 'pending'`` (was ``(status,
next_attempt_at)`` over every row) and ``ix_webhook_deliveries_order`` ``(subscriber_id, position_id, id) WHERE
status = 'pending'``. With the old ones and statistics that say "pending" is rare (true, until a receiver is down),
PostgreSQL probed the older-pending-delivery condition through the status index and sorted every due row: 1,000
pending rows took 400-600 ms per claim, growing with the square of the backlog.

Revision ID: 7c1e5d9a4b20
Revises: 30709a6aca57
Create Date: 2026-12-11 21:15:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7c1e5d9a4b20'
down_revision = '30709a6aca57'
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade():
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_due')
        batch_op.drop_index('ix_webhook_deliveries_order')
        batch_op.create_index('ix_webhook_deliveries_due', ['next_attempt_at', 'id'], unique=False,
                              postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.create_index('ix_webhook_deliveries_order', ['subscriber_id', 'position_id', 'id'], unique=False,
                              postgresql_where=PENDING, sqlite_where=PENDING)


def downgrade():
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_order')
        batch_op.drop_index('ix_webhook_deliveries_due')
        batch_op.create_index('ix_webhook_deliveries_order', ['subscriber_id', 'position_id', 'id'], unique=False)
        batch_op.create_index('ix_webhook_deliveries_due', ['status', 'next_attempt_at'], unique=False)
