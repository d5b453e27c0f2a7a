"""Money per (creditor, service, basis, day), kept by triggers, for the dashboard's collections chart.

Three bases (see ``portal.ledger.cashflow``): ``due`` — each payment option not cancelled, on its due date (an
installment only while its position has no single payment still open, so a position offering both counts once);
``paid`` — each paid option, on the day of its payment in Rome; ``regulation`` — each active flow line (a transfer
a PSP credited), on its flow's regulation date. Triggers append delta rows in the transaction of the change, like
``position_totals``; a periodic job folds them. What is there now is summed in.

Whether an installment counts depends on its position's single payment, so a change of one option can move its
siblings. SQLite fires row triggers as each row changes, so each row's trigger sees its siblings as they are and
adds what that row's change moved. PostgreSQL fires AFTER ROW triggers once the whole statement is done (every
sibling already changed): there a statement trigger takes the positions the statement touched and adds their
options' contributions now minus their contributions before it (rebuilt from the transition tables), which also
makes a bulk COPY of options cost one grouped INSERT.

On SQLite, a later batch migration that *recreates* payment_options or reported_payments drops these triggers: such
a migration must create them again (tests/test_cashflow.py checks they exist at head).

Revision ID: 2e38df6531af
Revises: db9bfa184e38
Create Date: 2026-12-10 09:30:00

"""
# ruff: noqa: S608 - the SQL is built from our own table and column names only
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '2e38df6531af'
down_revision = 'db9bfa184e38'
branch_labels = None
depends_on = None

INSERT = "INSERT INTO cashflow_totals (creditor_id, service_id, basis, day, count, amount_cents)"
OPTION_COLUMNS = "id, creditor_id, position_id, kind, status, amount_cents, due_date, paid_at"
#: The option columns a contribution depends on (an update of anything else moves nothing).
OPTION_WATCHED = ("creditor_id", "position_id", "kind", "status", "amount_cents", "due_date", "paid_at")
LINE_WATCHED = ("creditor_id", "position_id", "flow_id", "active", "amount_cents")
LIVE_SINGLE = "{s}.kind = 'single' AND {s}.status <> 'cancelled'"


def rome_day_postgresql(ts: str) -> str:
    return f"({ts} AT TIME ZONE 'Europe/Rome')::date"


def rome_day_sqlite(ts: str) -> str:
    """The Rome date of a UTC timestamp: +2 hours from the last Sunday of March 01:00 UTC to the last Sunday of
    October 01:00 UTC (the EU rule), +1 hour otherwise. SQLite knows no time zones but the machine's."""
    year = f"strftime('%Y', {ts})"
    start = f"datetime({year} || '-03-31', '-6 days', 'weekday 0', '+1 hour')"
    end = f"datetime({year} || '-10-31', '-6 days', 'weekday 0', '+1 hour')"
    return f"date({ts}, CASE WHEN {ts} >= {start} AND {ts} < {end} THEN '+2 hours' ELSE '+1 hour' END)"


def option_contributions(rows: str, rome, sign: str = "") -> str:
    """The due and paid contributions (creditor, position, basis, day, n, cents) of the option rows ``rows``."""
    return f"""
SELECT r.creditor_id, r.position_id, 'due' AS basis, r.due_date AS day, {sign}1 AS n, {sign}r.amount_cents AS cents
  FROM {rows} r WHERE {LIVE_SINGLE.format(s='r')}
UNION ALL
SELECT r.creditor_id, r.position_id, 'due', r.due_date, {sign}1, {sign}r.amount_cents
  FROM {rows} r WHERE r.kind = 'installment' AND r.status <> 'cancelled'
   AND NOT EXISTS (SELECT 1 FROM {rows} s WHERE s.position_id = r.position_id AND {LIVE_SINGLE.format(s='s')})
UNION ALL
SELECT r.creditor_id, r.position_id, 'paid', {rome('r.paid_at')}, {sign}1, {sign}r.amount_cents
  FROM {rows} r WHERE r.status = 'paid' AND r.paid_at IS NOT NULL"""


def summed(deltas: str) -> str:
    """Insert the deltas grouped per key, with the service of their position; keys that net to nothing are left out."""
    return f"""{INSERT}
SELECT d.creditor_id, p.service_id, d.basis, d.day, sum(d.n), sum(d.cents)
  FROM ({deltas}) d JOIN positions p ON p.id = d.position_id
 GROUP BY d.creditor_id, p.service_id, d.basis, d.day
HAVING sum(d.n) <> 0 OR sum(d.cents) <> 0"""


def line_contribution(ref: str, sign: str = "") -> str:
    """The regulation contribution of one flow line (``OLD``/``NEW``)."""
    return f"""{INSERT}
SELECT {ref}.creditor_id, p.service_id, 'regulation', f.regulation_date, {sign}1, {sign}{ref}.amount_cents
  FROM reporting_flows f JOIN positions p ON p.id = {ref}.position_id
 WHERE f.id = {ref}.flow_id AND {ref}.active AND f.regulation_date IS NOT NULL;"""


LINES_SUMMED = f"""{INSERT}
SELECT l.creditor_id, p.service_id, 'regulation', f.regulation_date, count(*), sum(l.amount_cents)
  FROM {{lines}} l JOIN reporting_flows f ON f.id = l.flow_id JOIN positions p ON p.id = l.position_id
 WHERE l.active AND f.regulation_date IS NOT NULL
 GROUP BY l.creditor_id, p.service_id, f.regulation_date"""


def _changed(names, old="OLD", new="NEW") -> str:
    return (f"({', '.join(f'{old}.{n}' for n in names)}) IS DISTINCT FROM "
            f"({', '.join(f'{new}.{n}' for n in names)})")


# --- PostgreSQL ------------------------------------------------------------------------------------------------


def _options_statement(old: str | None, new: str | None) -> str:
    """The positions the statement touched: their options' contributions now, minus before the statement."""
    touched = " UNION ".join(f"SELECT position_id FROM {t}" for t in (old, new) if t)
    columns = ", ".join(f"o.{c.strip()}" for c in OPTION_COLUMNS.split(","))
    then = f"SELECT {columns} FROM now_rows o" + (f" WHERE o.id NOT IN (SELECT id FROM {new})" if new else "")
    if old:
        then += f" UNION ALL SELECT {OPTION_COLUMNS} FROM {old}"
    deltas = (option_contributions("now_rows", rome_day_postgresql) + "\nUNION ALL"
              + option_contributions("then_rows", rome_day_postgresql, "-"))
    return (f"WITH touched AS ({touched}),\n"
            f"now_rows AS MATERIALIZED (SELECT {columns} FROM payment_options o "
            "WHERE o.position_id IN (SELECT position_id FROM touched)),\n"
            f"then_rows AS MATERIALIZED ({then})\n" + summed(deltas) + ";")


#: A changed option that moves nothing: an installment held back, before and after, by a live single payment the
#: statement did not touch, and paid neither before nor after (a receipt for the single payment cancels the
#: installments one UPDATE each: those skip the full computation).
NEUTRAL = (
    "o.kind = 'installment' AND n.kind = 'installment' AND o.position_id = n.position_id "
    "AND o.creditor_id = n.creditor_id AND o.status <> 'paid' AND n.status <> 'paid' "
    "AND EXISTS (SELECT 1 FROM payment_options s WHERE s.position_id = n.position_id AND "
    f"{LIVE_SINGLE.format(s='s')} AND s.id NOT IN (SELECT id FROM new_options))")


def _function(name: str, body: str) -> str:
    return f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n{body}\nRETURN NULL;\nEND $$;"


POSTGRESQL = [
    _function("cashflow_options_inserted", _options_statement(None, "new_options")),
    _function("cashflow_options_updated",
              "IF NOT EXISTS (SELECT 1 FROM old_options o JOIN new_options n ON n.id = o.id WHERE "
              f"{_changed(OPTION_WATCHED, 'o', 'n')} AND NOT ({NEUTRAL})) THEN RETURN NULL; END IF;\n"
              + _options_statement("old_options", "new_options")),
    _function("cashflow_options_deleted", _options_statement("old_options", None)),
    "CREATE TRIGGER cashflow_options_insert AFTER INSERT ON payment_options REFERENCING NEW TABLE AS new_options "
    "FOR EACH STATEMENT EXECUTE FUNCTION cashflow_options_inserted();",
    "CREATE TRIGGER cashflow_options_update AFTER UPDATE ON payment_options "
    "REFERENCING OLD TABLE AS old_options NEW TABLE AS new_options "
    "FOR EACH STATEMENT EXECUTE FUNCTION cashflow_options_updated();",
    "CREATE TRIGGER cashflow_options_delete AFTER DELETE ON payment_options REFERENCING OLD TABLE AS old_options "
    "FOR EACH STATEMENT EXECUTE FUNCTION cashflow_options_deleted();",
    _function("cashflow_lines_inserted", LINES_SUMMED.format(lines="new_lines") + ";"),
    _function("cashflow_line_delta",
              f"IF TG_OP IN ('UPDATE', 'DELETE') THEN {line_contribution('OLD', '-')} END IF;\n"
              f"IF TG_OP = 'UPDATE' THEN {line_contribution('NEW')} END IF;"),
    "CREATE TRIGGER cashflow_lines_insert AFTER INSERT ON reported_payments REFERENCING NEW TABLE AS new_lines "
    "FOR EACH STATEMENT EXECUTE FUNCTION cashflow_lines_inserted();",
    f"CREATE TRIGGER cashflow_lines_update AFTER UPDATE OF {', '.join(LINE_WATCHED)} ON reported_payments "
    f"FOR EACH ROW WHEN ({_changed(LINE_WATCHED)}) EXECUTE FUNCTION cashflow_line_delta();",
    "CREATE TRIGGER cashflow_lines_delete AFTER DELETE ON reported_payments "
    "FOR EACH ROW EXECUTE FUNCTION cashflow_line_delta();",
]
POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS cashflow_options_insert ON payment_options",
    "DROP TRIGGER IF EXISTS cashflow_options_update ON payment_options",
    "DROP TRIGGER IF EXISTS cashflow_options_delete ON payment_options",
    "DROP TRIGGER IF EXISTS cashflow_lines_insert ON reported_payments",
    "DROP TRIGGER IF EXISTS cashflow_lines_update ON reported_payments",
    "DROP TRIGGER IF EXISTS cashflow_lines_delete ON reported_payments",
    *(f"DROP FUNCTION IF EXISTS {name}()" for name in (
        "cashflow_options_inserted", "cashflow_options_updated", "cashflow_options_deleted",
        "cashflow_lines_inserted", "cashflow_line_delta")),
]


# --- SQLite: row triggers, each seeing the siblings as they are when its row changes ----------------------------


def _own(ref: str, sign: str) -> str:
    """One option's own due and paid contributions."""
    other_single = (f"SELECT 1 FROM payment_options s WHERE s.position_id = {ref}.position_id AND "
                    f"{LIVE_SINGLE.format(s='s')} AND s.id <> {ref}.id")
    return f"""{INSERT}
SELECT {ref}.creditor_id, p.service_id, 'due', {ref}.due_date, {sign}1, {sign}{ref}.amount_cents FROM positions p
 WHERE p.id = {ref}.position_id AND {ref}.status <> 'cancelled'
   AND ({ref}.kind = 'single' OR NOT EXISTS ({other_single}))
UNION ALL
SELECT {ref}.creditor_id, p.service_id, 'paid', {rome_day_sqlite(f'{ref}.paid_at')}, {sign}1, {sign}{ref}.amount_cents
  FROM positions p WHERE p.id = {ref}.position_id AND {ref}.status = 'paid' AND {ref}.paid_at IS NOT NULL;"""


def _held_back(ref: str, sign: str) -> str:
    """The installments a live single payment keeps from counting (the only live single of its position)."""
    return f"""{INSERT}
SELECT i.creditor_id, p.service_id, 'due', i.due_date, {sign}count(*), {sign}sum(i.amount_cents)
  FROM payment_options i JOIN positions p ON p.id = i.position_id
 WHERE {LIVE_SINGLE.format(s=ref)} AND i.position_id = {ref}.position_id AND i.id <> {ref}.id
   AND i.kind = 'installment' AND i.status <> 'cancelled'
   AND NOT EXISTS (SELECT 1 FROM payment_options s WHERE s.position_id = {ref}.position_id
                   AND {LIVE_SINGLE.format(s='s')} AND s.id <> {ref}.id)
 GROUP BY i.creditor_id, p.service_id, i.due_date;"""


def _sqlite_changed(names) -> str:
    return " OR ".join(f"OLD.{n} IS NOT NEW.{n}" for n in names)


SQLITE = [
    f"CREATE TRIGGER cashflow_options_insert AFTER INSERT ON payment_options BEGIN "
    f"{_own('NEW', '')} {_held_back('NEW', '-')} END",
    f"CREATE TRIGGER cashflow_options_delete AFTER DELETE ON payment_options BEGIN "
    f"{_own('OLD', '-')} {_held_back('OLD', '')} END",
    f"CREATE TRIGGER cashflow_options_update AFTER UPDATE OF {', '.join(OPTION_WATCHED)} ON payment_options "
    f"WHEN {_sqlite_changed(OPTION_WATCHED)} BEGIN "
    f"{_own('OLD', '-')} {_held_back('OLD', '')} {_own('NEW', '')} {_held_back('NEW', '-')} END",
    f"CREATE TRIGGER cashflow_lines_insert AFTER INSERT ON reported_payments BEGIN {line_contribution('NEW')} END",
    f"CREATE TRIGGER cashflow_lines_delete AFTER DELETE ON reported_payments BEGIN {line_contribution('OLD', '-')} END",
    f"CREATE TRIGGER cashflow_lines_update AFTER UPDATE OF {', '.join(LINE_WATCHED)} ON reported_payments "
    f"WHEN {_sqlite_changed(LINE_WATCHED)} BEGIN {line_contribution('OLD', '-')} {line_contribution('NEW')} END",
]
SQLITE_TRIGGERS = ("cashflow_options_insert", "cashflow_options_delete", "cashflow_options_update",
                   "cashflow_lines_insert", "cashflow_lines_delete", "cashflow_lines_update")


def upgrade():
    op.create_table(
        'cashflow_totals',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('creditor_id', sa.Integer(), nullable=False),
        sa.Column('service_id', sa.Integer(), nullable=False),
        sa.Column('basis', sa.String(length=10), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.Column('amount_cents', sa.BigInteger(), nullable=False),
        sa.CheckConstraint("basis IN ('due', 'paid', 'regulation')", name=op.f('ck_cashflow_totals_basis_known')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_cashflow_totals')),
    )
    with op.batch_alter_table('cashflow_totals', schema=None) as batch_op:
        batch_op.create_index('ix_cashflow_totals_key', ['creditor_id', 'day', 'basis', 'service_id'])
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL if postgresql else SQLITE:
        op.execute(statement)
    rome = rome_day_postgresql if postgresql else rome_day_sqlite
    op.execute(summed(option_contributions("payment_options", rome)))
    op.execute(LINES_SUMMED.format(lines="reported_payments"))


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL_DROP:
            op.execute(statement)
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table('cashflow_totals', schema=None) as batch_op:
        batch_op.drop_index('ix_cashflow_totals_key')
    op.drop_table('cashflow_totals')
