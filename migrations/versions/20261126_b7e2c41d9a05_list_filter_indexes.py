"""Indexes for the officer list filters on large ledgers (measured with bench/positions_list.py on 1M positions).

* ``ix_debtors_creditor_name`` is rebuilt with ``text_pattern_ops`` on PostgreSQL: a plain b-tree on
  ``lower(name)`` cannot serve ``LIKE 'prefix%'`` unless the database collation is ``C``, so the name-prefix
  filter was a sequential scan of every debtor.
* ``ix_positions_creditor_amount``: a narrow amount range (or an exact amount) no longer scans the table.
* ``ix_positions_creditor_list``: the keyset order (creditor, id) followed by the filtered columns, so a backwards
  scan can test service, status, due date and amount inside the index, without reading each skipped row.
  It starts with (creditor_id, id), so ``ix_positions_creditor_id`` is dropped as redundant.

Revision ID: b7e2c41d9a05
Revises: 83726d6dd492
Create Date: 2026-11-26 00:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7e2c41d9a05'
down_revision = '83726d6dd492'
branch_labels = None
depends_on = None


def _lower_name():
    return sa.func.lower(sa.column('name')).label('lower_name')


def upgrade():
    with op.batch_alter_table('debtors', schema=None) as batch_op:
        batch_op.drop_index('ix_debtors_creditor_name')
        batch_op.create_index('ix_debtors_creditor_name', ['creditor_id', _lower_name()], unique=False,
                              postgresql_ops={'lower_name': 'text_pattern_ops'})

    with op.batch_alter_table('positions', schema=None) as batch_op:
        batch_op.create_index('ix_positions_creditor_amount', ['creditor_id', 'amount_cents'], unique=False)
        batch_op.create_index('ix_positions_creditor_list',
                              ['creditor_id', 'id', 'service_id', 'status', 'due_date', 'amount_cents'], unique=False)
        batch_op.drop_index('ix_positions_creditor_id')


def downgrade():
    with op.batch_alter_table('positions', schema=None) as batch_op:
        batch_op.create_index('ix_positions_creditor_id', ['creditor_id', 'id'], unique=False)
        batch_op.drop_index('ix_positions_creditor_list')
        batch_op.drop_index('ix_positions_creditor_amount')

    with op.batch_alter_table('debtors', schema=None) as batch_op:
        batch_op.drop_index('ix_debtors_creditor_name')
        batch_op.create_index('ix_debtors_creditor_name', ['creditor_id', sa.literal_column('lower(name)')], unique=False)
