"""Trigram index on debtors' names, so the officer can find "Mario Rossi" by typing "rossi".

Revision ID: c41f0e2b7a18
Revises: b7e2c41d9a05
Create Date: 2026-11-26 00:50:00.000000

"""
from alembic import op
import sqlalchemy as sa



# revision identifiers, used by Alembic.
revision = 'c41f0e2b7a18'
down_revision = 'b7e2c41d9a05'
branch_labels = None
depends_on = None


def _lower_name():
    return sa.func.lower(sa.column('name')).label('lower_name_trgm')


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
    # Not in a batch: SQLite would reflect the table, and it cannot reflect expression indexes.
    op.create_index('ix_debtors_name_trgm', 'debtors', [_lower_name()], unique=False, postgresql_using='gin',
                    postgresql_ops={'lower_name_trgm': 'gin_trgm_ops'})


def downgrade():
    op.drop_index('ix_debtors_name_trgm', table_name='debtors')
