"""The Alembic history is linear and the models match what the migrations build, on PostgreSQL and SQLite."""

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from portal.extensions import db
from tests.test_sqlite import _logging_kept, sqlite_app

ROOT = Path(__file__).resolve().parent.parent


def sqlite_expression_index(test):
    """SQLite reflection cannot read expression indexes (lower(name)): silence that; they are checked by name."""
    test = pytest.mark.filterwarnings(
        "ignore:Skipped unsupported reflection of expression-based index:sqlalchemy.exc.SAWarning")(test)
    return pytest.mark.filterwarnings(
        "ignore:autogenerate skipping metadata-specified expression-based index:UserWarning")(test)


def _script() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return ScriptDirectory.from_config(config)


def _diffs(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, db.metadata)


def _current(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def test_exactly_one_head():
    heads = _script().get_heads()
    assert len(heads) == 1, f"several Alembic heads, merge them: {heads}"


def test_every_revision_reaches_the_base():
    revisions = list(_script().walk_revisions())
    assert revisions
    assert sum(1 for r in revisions if r.down_revision is None) == 1


def test_models_match_migrations_on_postgresql(app):
    with app.app_context():
        assert db.engine.dialect.name == "postgresql"
        assert _current(db.engine) == set(_script().get_heads())
        assert _diffs(db.engine) == []


@sqlite_expression_index
def test_models_match_migrations_on_sqlite(tmp_path):
    with sqlite_app(tmp_path / "migrated.db"):
        assert db.engine.dialect.name == "sqlite"
        assert _current(db.engine) == set(_script().get_heads())
        assert _diffs(db.engine) == []
        with db.engine.connect() as conn:
            indexes = set(conn.scalars(sa.text("SELECT name FROM sqlite_master WHERE type = 'index'")))
        expected = {index.name for table in db.metadata.sorted_tables for index in table.indexes}
        assert expected <= indexes


@sqlite_expression_index
def test_downgrade_to_base_and_back_on_sqlite(tmp_path):
    from flask_migrate import downgrade, upgrade

    with sqlite_app(tmp_path / "roundtrip.db"):
        with _logging_kept():
            downgrade(revision="base")
        assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
        with _logging_kept():
            upgrade()
        assert _diffs(db.engine) == []
