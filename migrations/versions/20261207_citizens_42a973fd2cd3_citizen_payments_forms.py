"""Citizens' portal: versioned payment forms of services, citizen payments (token, answers, cart items) and
rate-limit counters.

Revision ID: 42a973fd2cd3
Revises: c3e5a7b9d2f4
Create Date: 2026-12-07 13:56:23.490907

"""
from alembic import op
import sqlalchemy as sa

import portal.ledger.types


# revision identifiers, used by Alembic.
revision = '42a973fd2cd3'
down_revision = 'c3e5a7b9d2f4'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('rate_counters',
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('window_start', sa.BigInteger(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', 'window_start', name=op.f('pk_rate_counters'))
    )
    op.create_table('payment_forms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('creditor_id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('template_key', sa.String(length=30), nullable=True),
    sa.Column('created_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('published_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('published_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('draft', 'published', 'retired')", name=op.f('ck_payment_forms_status_known')),
    sa.CheckConstraint('version >= 1', name=op.f('ck_payment_forms_version_positive')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_payment_forms_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['creditor_id'], ['creditors.id'], name=op.f('fk_payment_forms_creditor_id_creditors'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['published_by_id'], ['users.id'], name=op.f('fk_payment_forms_published_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_payment_forms_service_id_services'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_forms')),
    sa.UniqueConstraint('service_id', 'version', name=op.f('uq_payment_forms_service_id_version'))
    )
    with op.batch_alter_table('payment_forms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_forms_service_id'), ['service_id'], unique=False)
        batch_op.create_index('uq_payment_forms_one_draft', ['service_id'], unique=True, postgresql_where=sa.text("status = 'draft'"), sqlite_where=sa.text("status = 'draft'"))
        batch_op.create_index('uq_payment_forms_one_published', ['service_id'], unique=True, postgresql_where=sa.text("status = 'published'"), sqlite_where=sa.text("status = 'published'"))

    op.create_table('citizen_payments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('creditor_id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('form_id', sa.Integer(), nullable=True),
    sa.Column('answers', sa.JSON(), nullable=True),
    sa.Column('subject', sa.String(length=140), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('amount_note', sa.String(length=200), nullable=True),
    sa.Column('debtor_fiscal_code', sa.String(length=16), nullable=True),
    sa.Column('debtor_name', sa.String(length=140), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('checkout_url', sa.Text(), nullable=True),
    sa.Column('outcome', sa.String(length=10), nullable=True),
    sa.Column('receipt_mailed_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('spontaneous', 'notices')", name=op.f('ck_citizen_payments_kind_known')),
    sa.CheckConstraint("status IN ('draft', 'publishing', 'checkout', 'paid')", name=op.f('ck_citizen_payments_status_known')),
    sa.CheckConstraint('amount_cents > 0', name=op.f('ck_citizen_payments_amount_positive')),
    sa.ForeignKeyConstraint(['creditor_id'], ['creditors.id'], name=op.f('fk_citizen_payments_creditor_id_creditors'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['form_id'], ['payment_forms.id'], name=op.f('fk_citizen_payments_form_id_payment_forms'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_citizen_payments')),
    sa.UniqueConstraint('token', name=op.f('uq_citizen_payments_token'))
    )
    with op.batch_alter_table('citizen_payments', schema=None) as batch_op:
        batch_op.create_index('ix_citizen_payments_mail_pending', ['receipt_mailed_at', 'status'], unique=False)

    op.create_table('citizen_payment_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('payment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('position_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('option_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('amount_cents > 0', name=op.f('ck_citizen_payment_items_amount_positive')),
    sa.ForeignKeyConstraint(['option_id'], ['payment_options.id'], name=op.f('fk_citizen_payment_items_option_id_payment_options'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['payment_id'], ['citizen_payments.id'], name=op.f('fk_citizen_payment_items_payment_id_citizen_payments'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['position_id'], ['positions.id'], name=op.f('fk_citizen_payment_items_position_id_positions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_citizen_payment_items')),
    sa.UniqueConstraint('payment_id', 'option_id', name=op.f('uq_citizen_payment_items_payment_id_option_id'))
    )
    with op.batch_alter_table('citizen_payment_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_citizen_payment_items_payment_id'), ['payment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_citizen_payment_items_position_id'), ['position_id'], unique=False)



def downgrade():
    with op.batch_alter_table('citizen_payment_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_citizen_payment_items_position_id'))
        batch_op.drop_index(batch_op.f('ix_citizen_payment_items_payment_id'))

    op.drop_table('citizen_payment_items')
    with op.batch_alter_table('citizen_payments', schema=None) as batch_op:
        batch_op.drop_index('ix_citizen_payments_mail_pending')

    op.drop_table('citizen_payments')
    with op.batch_alter_table('payment_forms', schema=None) as batch_op:
        batch_op.drop_index('uq_payment_forms_one_published', postgresql_where=sa.text("status = 'published'"), sqlite_where=sa.text("status = 'published'"))
        batch_op.drop_index('uq_payment_forms_one_draft', postgresql_where=sa.text("status = 'draft'"), sqlite_where=sa.text("status = 'draft'"))
        batch_op.drop_index(batch_op.f('ix_payment_forms_service_id'))

    op.drop_table('payment_forms')
    op.drop_table('rate_counters')
