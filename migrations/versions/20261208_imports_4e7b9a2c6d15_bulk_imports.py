"""Bulk uploads: imports, their row errors, per-service column mappings, and positions.import_id.

On SQLite the column with its foreign key needs a rebuild of ``positions`` (batch mode), which drops its triggers
(migration 7a3c5e9d1f20): they are read from ``sqlite_master`` first and created again after the rebuild.

Revision ID: 4e7b9a2c6d15
Revises: 85bb0f794ccf
Create Date: 2026-12-08 09:00:00

"""
import contextlib

from alembic import op
import sqlalchemy as sa

import portal.ledger.types


# revision identifiers, used by Alembic.
revision = '4e7b9a2c6d15'
down_revision = '85bb0f794ccf'
branch_labels = None
depends_on = None


@contextlib.contextmanager
def _positions_triggers_kept():
    """On SQLite, re-create the triggers of ``positions`` that a batch rebuild of the table drops."""
    bind = op.get_bind()
    triggers = []
    if bind.dialect.name == 'sqlite':
        triggers = list(bind.execute(sa.text(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'positions'")).scalars())
    yield
    for sql in triggers:
        op.execute(sql)


def upgrade():
    op.create_table(
        'imports',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('creditor_id', sa.Integer(), nullable=False),
        sa.Column('service_id', sa.Integer(), nullable=False),
        sa.Column('filename', sa.String(length=255), nullable=False),
        sa.Column('stored_name', sa.String(length=200), nullable=False),
        sa.Column('file_size', sa.BigInteger(), nullable=False),
        sa.Column('content_sha256', sa.String(length=64), nullable=False),
        sa.Column('file_format', sa.String(length=4), nullable=False),
        sa.Column('encoding', sa.String(length=12), nullable=True),
        sa.Column('delimiter', sa.String(length=1), nullable=True),
        sa.Column('mapping', sa.JSON(), nullable=False),
        sa.Column('valid_rows_only', sa.Boolean(), nullable=False),
        sa.Column('update_existing', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('rows_total', sa.Integer(), nullable=False),
        sa.Column('rows_refused', sa.Integer(), nullable=False),
        sa.Column('error_count', sa.Integer(), nullable=False),
        sa.Column('positions_new', sa.Integer(), nullable=False),
        sa.Column('positions_updated', sa.Integer(), nullable=False),
        sa.Column('positions_unchanged', sa.Integer(), nullable=False),
        sa.Column('positions_refused', sa.Integer(), nullable=False),
        sa.Column('totals', sa.JSON(), nullable=False),
        sa.Column('imported', sa.Integer(), nullable=False),
        sa.Column('message', sa.Text(), nullable=True),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('actor', sa.String(length=80), nullable=False),
        sa.Column('created_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('checked_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('confirmed_by_id', sa.Integer(), nullable=True),
        sa.Column('confirmed_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('finished_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('cancelled_by_id', sa.Integer(), nullable=True),
        sa.Column('cancelled_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("file_format IN ('csv', 'xlsx')", name=op.f('ck_imports_format_known')),
        sa.CheckConstraint(
            "status IN ('uploaded', 'checking', 'checked', 'importing', 'done', 'failed', 'cancelled')",
            name=op.f('ck_imports_status_known')),
        sa.ForeignKeyConstraint(['cancelled_by_id'], ['users.id'], name=op.f('fk_imports_cancelled_by_id_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['confirmed_by_id'], ['users.id'], name=op.f('fk_imports_confirmed_by_id_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_imports_created_by_id_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['creditor_id'], ['creditors.id'], name=op.f('fk_imports_creditor_id_creditors'),
                                ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_imports_service_id_services'),
                                ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_imports')),
    )
    op.create_index(op.f('ix_imports_creditor_id'), 'imports', ['creditor_id'], unique=False)
    op.create_index('ix_imports_creditor_sha', 'imports', ['creditor_id', 'content_sha256'], unique=False)
    op.create_table(
        'import_row_errors',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('import_id', sa.Integer(), nullable=False),
        sa.Column('row_number', sa.Integer(), nullable=False),
        sa.Column('column', sa.String(length=100), nullable=False),
        sa.Column('field', sa.String(length=60), nullable=False),
        sa.Column('key', sa.String(length=100), nullable=True),
        sa.Column('message', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['import_id'], ['imports.id'], name=op.f('fk_import_row_errors_import_id_imports'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_import_row_errors')),
    )
    op.create_index('ix_import_row_errors_import_row', 'import_row_errors', ['import_id', 'row_number', 'id'],
                    unique=False)
    op.create_table(
        'import_mappings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('service_id', sa.Integer(), nullable=False),
        sa.Column('columns', sa.JSON(), nullable=False),
        sa.Column('fixed', sa.JSON(), nullable=False),
        sa.Column('date_format', sa.String(length=20), nullable=False),
        sa.Column('decimal', sa.String(length=4), nullable=False),
        sa.Column('updated_by_id', sa.Integer(), nullable=True),
        sa.Column('updated_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_import_mappings_service_id_services'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], name=op.f('fk_import_mappings_updated_by_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_import_mappings')),
        sa.UniqueConstraint('service_id', name=op.f('uq_import_mappings_service_id')),
    )
    with _positions_triggers_kept():
        with op.batch_alter_table('positions', schema=None) as batch_op:
            batch_op.add_column(sa.Column('import_id', sa.Integer(), nullable=True))
            batch_op.create_foreign_key(batch_op.f('fk_positions_import_id_imports'), 'imports', ['import_id'], ['id'],
                                        ondelete='RESTRICT')
    op.create_index('ix_positions_import', 'positions', ['import_id', 'id'], unique=False,
                    postgresql_where=sa.text('import_id IS NOT NULL'),
                    sqlite_where=sa.text('import_id IS NOT NULL'))


def downgrade():
    op.drop_index('ix_positions_import', table_name='positions')
    with _positions_triggers_kept():
        with op.batch_alter_table('positions', schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f('fk_positions_import_id_imports'), type_='foreignkey')
            batch_op.drop_column('import_id')
    op.drop_table('import_mappings')
    op.drop_index('ix_import_row_errors_import_row', table_name='import_row_errors')
    op.drop_table('import_row_errors')
    op.drop_index('ix_imports_creditor_sha', table_name='imports')
    op.drop_index(op.f('ix_imports_creditor_id'), table_name='imports')
    op.drop_table('imports')
