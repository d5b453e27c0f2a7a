"""Debtor versions: an officer who cannot see every service of a debtor keeps what they typed on the new position.

* ``debtors.version_of_id``: a row that is a version of the shared debtor, used by one position alone.
* The fiscal code is unique among shared rows only (a partial unique index replaces the unique constraint);
  ``ix_debtors_creditor_fiscal_code`` serves searches by fiscal code, which find the versions too.

On SQLite the batch rebuilds the table, and SQLite cannot reflect expression indexes: the two on ``lower(name)``
are dropped before it and built again after.

Revision ID: 0aa62080c1e1
Revises: 2e8f6a1c9b47
Create Date: 2026-12-07 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0aa62080c1e1'
down_revision = '2e8f6a1c9b47'
branch_labels = None
depends_on = None

SHARED = sa.text('version_of_id IS NULL')


def _drop_name_indexes():
    op.drop_index('ix_debtors_name_trgm', table_name='debtors')
    op.drop_index('ix_debtors_creditor_name', table_name='debtors')


def _create_name_indexes():
    # As 83726d6dd492 and c41f0e2b7a18 build them on SQLite (text_pattern_ops and gin are PostgreSQL's).
    op.create_index('ix_debtors_creditor_name', 'debtors',
                    ['creditor_id', sa.func.lower(sa.column('name')).label('lower_name')], unique=False)
    op.create_index('ix_debtors_name_trgm', 'debtors', [sa.func.lower(sa.column('name')).label('lower_name_trgm')],
                    unique=False)


def upgrade():
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        _drop_name_indexes()
    with op.batch_alter_table('debtors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version_of_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_debtors_version_of_id_debtors'), 'debtors', ['version_of_id'],
                                    ['id'], ondelete='RESTRICT')
        batch_op.drop_constraint('uq_debtors_creditor_id_fiscal_code', type_='unique')
        batch_op.create_index('ix_debtors_creditor_fiscal_code', ['creditor_id', 'fiscal_code'], unique=False)
        batch_op.create_index('uq_debtors_shared_fiscal_code', ['creditor_id', 'fiscal_code'], unique=True,
                              postgresql_where=SHARED, sqlite_where=SHARED)
    if sqlite:
        _create_name_indexes()


def downgrade():
    # Versions go back into their shared row: the positions that used one point to the shared debtor again.
    op.execute(
        'UPDATE positions SET debtor_id = (SELECT d.version_of_id FROM debtors d WHERE d.id = positions.debtor_id) '
        'WHERE debtor_id IN (SELECT id FROM debtors WHERE version_of_id IS NOT NULL)'
    )
    op.execute('DELETE FROM debtors WHERE version_of_id IS NOT NULL')
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        _drop_name_indexes()
    with op.batch_alter_table('debtors', schema=None) as batch_op:
        batch_op.drop_index('uq_debtors_shared_fiscal_code', postgresql_where=SHARED, sqlite_where=SHARED)
        batch_op.drop_index('ix_debtors_creditor_fiscal_code')
        batch_op.create_unique_constraint('uq_debtors_creditor_id_fiscal_code', ['creditor_id', 'fiscal_code'])
        batch_op.drop_constraint('fk_debtors_version_of_id_debtors', type_='foreignkey')
        batch_op.drop_column('version_of_id')
    if sqlite:
        _create_name_indexes()
