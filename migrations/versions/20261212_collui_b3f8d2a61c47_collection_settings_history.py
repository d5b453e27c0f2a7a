"""Collection settings: the penalty's reductions for late payment as a service's settings, and the append-only
history of every change of a legal rate or a service's policy.

``collection_policies`` gets ``penalty_reduce_late`` (on), ``penalty_half_within_days`` (90) and
``penalty_daily_within_days`` (15), the digest §1.4 figures the engine already took as defaults.
``collection_setting_changes`` keeps one row per field changed (who, when, old and new value); a trigger refuses
UPDATE and DELETE on PostgreSQL and SQLite, whatever code or person connects.

Revision ID: b3f8d2a61c47
Revises: 7c1e5d9a4b20
Create Date: 2026-12-12 00:30:00

"""
from alembic import op
import sqlalchemy as sa

import portal.ledger.types


# revision identifiers, used by Alembic.
revision = 'b3f8d2a61c47'
down_revision = '7c1e5d9a4b20'
branch_labels = None
depends_on = None

POSTGRESQL_APPEND_ONLY = """
CREATE FUNCTION collection_setting_changes_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'collection_setting_changes is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER collection_setting_changes_append_only BEFORE UPDATE OR DELETE ON collection_setting_changes
    FOR EACH ROW EXECUTE FUNCTION collection_setting_changes_append_only();
"""
SQLITE_APPEND_ONLY = (
    """CREATE TRIGGER collection_setting_changes_no_update BEFORE UPDATE ON collection_setting_changes
       BEGIN SELECT RAISE(ABORT, 'collection_setting_changes is append-only (UPDATE refused)'); END""",
    """CREATE TRIGGER collection_setting_changes_no_delete BEFORE DELETE ON collection_setting_changes
       BEGIN SELECT RAISE(ABORT, 'collection_setting_changes is append-only (DELETE refused)'); END""",
)


def upgrade():
    with op.batch_alter_table('collection_policies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('penalty_reduce_late', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('penalty_half_within_days', sa.Integer(), server_default='90', nullable=False))
        batch_op.add_column(sa.Column('penalty_daily_within_days', sa.Integer(), server_default='15', nullable=False))
        batch_op.create_check_constraint(
            batch_op.f('ck_collection_policies_penalty_reductions_ordered'),
            'penalty_daily_within_days >= 0 AND penalty_half_within_days >= penalty_daily_within_days')

    op.create_table('collection_setting_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('changed_at', portal.ledger.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('subject', sa.String(length=10), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=True),
    sa.Column('rate_from', sa.Date(), nullable=True),
    sa.Column('field', sa.String(length=40), nullable=False),
    sa.Column('old_value', sa.String(length=200), nullable=True),
    sa.Column('new_value', sa.String(length=200), nullable=True),
    sa.CheckConstraint("subject IN ('legal_rate', 'policy')", name=op.f('ck_collection_setting_changes_subject_known')),
    sa.CheckConstraint("(subject = 'legal_rate' AND rate_from IS NOT NULL AND service_id IS NULL) OR "
                       "(subject = 'policy' AND service_id IS NOT NULL)",
                       name=op.f('ck_collection_setting_changes_subject_identified')),
    sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_collection_setting_changes_service_id_services'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_collection_setting_changes_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collection_setting_changes'))
    )
    with op.batch_alter_table('collection_setting_changes', schema=None) as batch_op:
        batch_op.create_index('ix_collection_setting_changes_service', ['service_id', 'id'], unique=False)

    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(POSTGRESQL_APPEND_ONLY)
    elif dialect == "sqlite":
        for statement in SQLITE_APPEND_ONLY:
            op.execute(statement)


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS collection_setting_changes_append_only ON collection_setting_changes; "
                   "DROP FUNCTION IF EXISTS collection_setting_changes_append_only();")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS collection_setting_changes_no_update")
        op.execute("DROP TRIGGER IF EXISTS collection_setting_changes_no_delete")
    with op.batch_alter_table('collection_setting_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_collection_setting_changes_service')

    op.drop_table('collection_setting_changes')
    with op.batch_alter_table('collection_policies', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_collection_policies_penalty_reductions_ordered'), type_='check')
        batch_op.drop_column('penalty_daily_within_days')
        batch_op.drop_column('penalty_half_within_days')
        batch_op.drop_column('penalty_reduce_late')
