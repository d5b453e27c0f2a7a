"""On PostgreSQL, inserted positions reach the dashboard totals once per statement, grouped, not once per row.

A bulk import (COPY of thousands of positions) fired the row trigger for each position, each inserting a delta row:
now one statement-level trigger reads the inserted rows (a transition table) and adds one delta row per (creditor,
service, status, due date). Updates and deletes keep their row triggers (a receipt updates one row). SQLite keeps
its row triggers (it has no transition tables).

Revision ID: 5431db4aa6d0
Revises: 42a973fd2cd3
Create Date: 2026-12-07 15:10:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5431db4aa6d0'
down_revision = '42a973fd2cd3'
branch_labels = None
depends_on = None

COLUMNS = "creditor_id, service_id, status, due_date"


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""
DROP TRIGGER position_totals_insert_delete ON positions;
CREATE FUNCTION position_totals_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO position_totals ({COLUMNS}, count, amount_cents, paid_cents)
    SELECT {COLUMNS}, count(*), sum(amount_cents), sum(paid_cents) FROM added GROUP BY {COLUMNS};
    RETURN NULL;
END $$;
CREATE TRIGGER position_totals_insert AFTER INSERT ON positions REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION position_totals_inserted();
CREATE TRIGGER position_totals_delete AFTER DELETE ON positions
    FOR EACH ROW EXECUTE FUNCTION position_totals_delta();
""")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("""
DROP TRIGGER position_totals_delete ON positions;
DROP TRIGGER position_totals_insert ON positions;
DROP FUNCTION position_totals_inserted();
CREATE TRIGGER position_totals_insert_delete AFTER INSERT OR DELETE ON positions
    FOR EACH ROW EXECUTE FUNCTION position_totals_delta();
""")
