"""Payments outside pagoPA (cash at the counter, bank transfer, F24): one row per payment recorded on an option,
reversible only while pagoPA has not been told; positions note that GPD must still be told of one.

Revision ID: db9bfa184e38
Revises: c199c04865ed
Create Date: 2026-12-10 10:00:00

"""
from alembic import op
import sqlalchemy as sa

import portal.ledger.types


# revision identifiers, used by Alembic.
revision = 'db9bfa184e38'
down_revision = 'c199c04865ed'
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
ACTIVE = sa.text('reversed_at IS NULL')


def upgrade():
    op.create_table('offline_payments',
    sa.Column('id', BIGINT, nullable=False),
    sa.Column('creditor_id', sa.Integer(), nullable=False),
    sa.Column('position_id', BIGINT, nullable=False),
    sa.Column('option_id', BIGINT, nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('reference', sa.String(length=140), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('option_amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('paid_on', sa.Date(), nullable=False),
    sa.Column('recorded_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.String(length=80), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.Column('previous_status', sa.String(length=20), nullable=False),
    sa.Column('cancelled_option_ids', sa.JSON(), nullable=False),
    sa.Column('pagopa_notified_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reversed_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reversed_by', sa.String(length=80), nullable=True),
    sa.Column('reversed_by_id', sa.Integer(), nullable=True),
    sa.Column('reversal_reason', sa.Text(), nullable=True),
    sa.Column('flag', sa.String(length=20), nullable=True),
    sa.Column('resolved_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_by_id', sa.Integer(), nullable=True),
    sa.Column('resolution_note', sa.Text(), nullable=True),
    sa.CheckConstraint("channel IN ('cash', 'bank_transfer', 'f24')", name=op.f('ck_offline_payments_channel_known')),
    sa.CheckConstraint("flag IS NULL OR flag = 'amount_mismatch'", name=op.f('ck_offline_payments_flag_known')),
    sa.CheckConstraint('(reversed_at IS NULL) = (reversal_reason IS NULL)', name=op.f('ck_offline_payments_reversal_has_reason')),
    sa.CheckConstraint('amount_cents > 0', name=op.f('ck_offline_payments_amount_positive')),
    sa.CheckConstraint('reversed_at IS NULL OR pagopa_notified_at IS NULL', name=op.f('ck_offline_payments_reversed_only_before_pagopa')),
    sa.ForeignKeyConstraint(['creditor_id'], ['creditors.id'], name=op.f('fk_offline_payments_creditor_id_creditors'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['option_id'], ['payment_options.id'], name=op.f('fk_offline_payments_option_id_payment_options'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['position_id'], ['positions.id'], name=op.f('fk_offline_payments_position_id_positions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_offline_payments_recorded_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['resolved_by_id'], ['users.id'], name=op.f('fk_offline_payments_resolved_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['reversed_by_id'], ['users.id'], name=op.f('fk_offline_payments_reversed_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offline_payments'))
    )
    op.create_index('ix_offline_payments_creditor_paid_on', 'offline_payments', ['creditor_id', 'paid_on'], unique=False)
    op.create_index('ix_offline_payments_flag', 'offline_payments', ['creditor_id', 'flag'], unique=False)
    op.create_index(op.f('ix_offline_payments_position_id'), 'offline_payments', ['position_id'], unique=False)
    op.create_index('uq_offline_payments_active_option', 'offline_payments', ['option_id'], unique=True,
                    postgresql_where=ACTIVE, sqlite_where=ACTIVE)
    # A plain ADD COLUMN (no batch copy on SQLite: the positions table keeps its triggers).
    op.add_column('positions', sa.Column('pagopa_paid_pending', sa.Boolean(), server_default=sa.false(),
                                         nullable=False))


def downgrade():
    # SQLite 3.35+ drops a column in place, so the triggers of position_totals stay.
    op.drop_column('positions', 'pagopa_paid_pending')
    op.drop_index('uq_offline_payments_active_option', table_name='offline_payments',
                  postgresql_where=ACTIVE, sqlite_where=ACTIVE)
    op.drop_index(op.f('ix_offline_payments_position_id'), table_name='offline_payments')
    op.drop_index('ix_offline_payments_flag', table_name='offline_payments')
    op.drop_index('ix_offline_payments_creditor_paid_on', table_name='offline_payments')
    op.drop_table('offline_payments')
