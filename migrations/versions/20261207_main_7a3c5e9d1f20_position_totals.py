"""Totals of positions per (creditor, service, status, due date), kept by triggers, for the dashboard.

Each insert, delete or relevant update of a position appends delta rows (minus the old contribution, plus the
new): inserts only, so concurrent writers never wait for each other on a summary row. A periodic job folds the
deltas into one row per key (``portal.ledger.totals.compact``). Existing positions are summed in now.

On SQLite, a later batch migration that *recreates* the positions table drops these triggers: such a migration
must create them again (tests/test_sqlite.py checks they exist at head).

Revision ID: 7a3c5e9d1f20
Revises: 0aa62080c1e1
Create Date: 2026-12-07 12:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7a3c5e9d1f20'
down_revision = '0aa62080c1e1'
branch_labels = None
depends_on = None

COLUMNS = "creditor_id, service_id, status, due_date"
#: The position columns whose change moves a position between totals.
WATCHED = "creditor_id, service_id, status, due_date, amount_cents, paid_cents"

POSTGRESQL = f"""
CREATE FUNCTION position_totals_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO position_totals ({COLUMNS}, count, amount_cents, paid_cents)
        VALUES (OLD.creditor_id, OLD.service_id, OLD.status, OLD.due_date, -1, -OLD.amount_cents, -OLD.paid_cents);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO position_totals ({COLUMNS}, count, amount_cents, paid_cents)
        VALUES (NEW.creditor_id, NEW.service_id, NEW.status, NEW.due_date, 1, NEW.amount_cents, NEW.paid_cents);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER position_totals_insert_delete AFTER INSERT OR DELETE ON positions
    FOR EACH ROW EXECUTE FUNCTION position_totals_delta();
CREATE TRIGGER position_totals_update AFTER UPDATE OF {WATCHED} ON positions
    FOR EACH ROW WHEN ((OLD.creditor_id, OLD.service_id, OLD.status, OLD.due_date, OLD.amount_cents, OLD.paid_cents)
                       IS DISTINCT FROM
                       (NEW.creditor_id, NEW.service_id, NEW.status, NEW.due_date, NEW.amount_cents, NEW.paid_cents))
    EXECUTE FUNCTION position_totals_delta();
"""

_OLD = (f"INSERT INTO position_totals ({COLUMNS}, count, amount_cents, paid_cents) VALUES "
        "(OLD.creditor_id, OLD.service_id, OLD.status, OLD.due_date, -1, -OLD.amount_cents, -OLD.paid_cents);")
_NEW = (f"INSERT INTO position_totals ({COLUMNS}, count, amount_cents, paid_cents) VALUES "
        "(NEW.creditor_id, NEW.service_id, NEW.status, NEW.due_date, 1, NEW.amount_cents, NEW.paid_cents);")
SQLITE = [
    f"CREATE TRIGGER position_totals_insert AFTER INSERT ON positions BEGIN {_NEW} END",
    f"CREATE TRIGGER position_totals_delete AFTER DELETE ON positions BEGIN {_OLD} END",
    f"""CREATE TRIGGER position_totals_update AFTER UPDATE OF {WATCHED} ON positions
        WHEN OLD.creditor_id IS NOT NEW.creditor_id OR OLD.service_id IS NOT NEW.service_id
          OR OLD.status IS NOT NEW.status OR OLD.due_date IS NOT NEW.due_date
          OR OLD.amount_cents IS NOT NEW.amount_cents OR OLD.paid_cents IS NOT NEW.paid_cents
        BEGIN {_OLD} {_NEW} END""",
]


def upgrade():
    op.create_table(
        'position_totals',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('creditor_id', sa.Integer(), nullable=False),
        sa.Column('service_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('due_date', sa.Date(), nullable=False),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.Column('amount_cents', sa.BigInteger(), nullable=False),
        sa.Column('paid_cents', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_position_totals')),
    )
    with op.batch_alter_table('position_totals', schema=None) as batch_op:
        batch_op.create_index('ix_position_totals_key', ['creditor_id', 'service_id', 'status', 'due_date'])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(POSTGRESQL)
    else:
        for statement in SQLITE:
            op.execute(statement)
    op.execute(f"""INSERT INTO position_totals ({COLUMNS}, count, amount_cents, paid_cents)
                   SELECT {COLUMNS}, count(*), sum(amount_cents), sum(paid_cents) FROM positions
                   GROUP BY {COLUMNS}""")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS position_totals_update ON positions; "
                   "DROP TRIGGER IF EXISTS position_totals_insert_delete ON positions; "
                   "DROP FUNCTION IF EXISTS position_totals_delta();")
    else:
        for name in ("position_totals_insert", "position_totals_delete", "position_totals_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table('position_totals', schema=None) as batch_op:
        batch_op.drop_index('ix_position_totals_key')
    op.drop_table('position_totals')
