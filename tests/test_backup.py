"""The backup kit: ``deploy/backup.sh`` dumps a database with a populated ledger and archives ``NOTICES_DIR``,
``deploy/restore.sh`` restores the dump into a new database, and the ledger's totals there are the same.

Runs the real scripts with the real ``pg_dump``/``pg_restore``/``psql`` (skipped, saying so, when they are not
installed: ``apt-get install postgresql-client``)."""

import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger.payments import record_receipt
from tests.test_ledger_payments import receipt_for

ROOT = Path(__file__).resolve().parent.parent
BACKUP = ROOT / "deploy" / "backup.sh"
RESTORE = ROOT / "deploy" / "restore.sh"

#: What must be equal after a restore: the ledger's counts and sums, the dashboard totals, the schema revision.
TOTALS = {
    "positions": "SELECT count(*) FROM positions",
    "payment_options": "SELECT count(*) FROM payment_options",
    "transfers": "SELECT count(*) FROM transfers",
    "receipts": "SELECT count(*) FROM receipts",
    "events": "SELECT count(*) FROM events",
    "paid_cents": "SELECT coalesce(sum(paid_cents), 0) FROM positions",
    "options_cents": "SELECT coalesce(sum(amount_cents), 0) FROM payment_options",
    "receipts_cents": "SELECT coalesce(sum(amount_cents), 0) FROM receipts",
    "position_totals": "SELECT string_agg(concat_ws(':', creditor_id, service_id, status, count, amount_cents), ',' "
                       "ORDER BY creditor_id, service_id, status, count) FROM position_totals",
    "alembic_version": "SELECT version_num FROM alembic_version",
}


def _tools():
    missing = [tool for tool in ("pg_dump", "pg_restore", "psql") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install postgresql-client): backup kit not tested")


def totals(url: str) -> dict:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return {name: conn.scalar(sa.text(query)) for name, query in TOTALS.items()}
    finally:
        engine.dispose()


def _drop(url: str) -> None:
    server, name = url.rsplit("/", 1)
    engine = sa.create_engine(server.replace("postgresql://", "postgresql+psycopg://") + "/postgres",
                              isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def ledger(ctx, published, station):
    """A ledger with paid, partly paid, flagged and unpaid positions (receipts through the real ledger code)."""
    single = published(amount=12345)
    plan = published(amount=0, installments=(4000, 6000))
    published(amount=777)  # unpaid
    for data in (receipt_for(single.options[0]), receipt_for(plan.options[0]),
                 receipt_for(iuv="01999999999999999", amount_cents=999)):  # unknown IUV: stored and flagged
        record_receipt(db.session, station, data, source="paSendRTV2", raw_xml="<receipt/>")
    db.session.commit()
    db.session.remove()


def test_backup_and_restore_keep_the_ledger(ledger, database_url, tmp_path):
    _tools()
    notices = tmp_path / "notices"
    (notices / "run-1").mkdir(parents=True)
    (notices / "run-1" / "package.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    backups = tmp_path / "backups"
    backups.mkdir()
    old = backups / "paybox-db-20200101T000000Z.dump"
    old.write_bytes(b"old")
    month_ago = time.time() - 30 * 86400
    os.utime(old, (month_ago, month_ago))
    env = {**os.environ, "PAYBOX_ENV_FILE": str(tmp_path / "no-such.env"), "DATABASE_URL": database_url,
           "NOTICES_DIR": str(notices), "BACKUP_DIR": str(backups), "BACKUP_RETENTION_DAYS": "14"}

    done = subprocess.run(["bash", str(BACKUP)], env=env, capture_output=True, text=True, timeout=300)  # noqa: S603,S607
    assert done.returncode == 0, done.stderr

    dumps = sorted(backups.glob("paybox-db-*.dump"))
    assert len(dumps) == 1, "the month-old dump is removed, the new one kept"
    assert not old.exists()
    assert "removed" in done.stderr
    assert not list(backups.glob("*.partial"))
    [archive] = backups.glob("paybox-notices-*.tar.gz")
    with tarfile.open(archive) as tar:
        assert "notices/run-1/package.zip" in tar.getnames()
    assert oct(dumps[0].stat().st_mode & 0o777) == "0o600"

    target = database_url.rsplit("/", 1)[0] + "/paybox_ops_restored"
    _drop(target)
    try:
        restored = subprocess.run(["bash", str(RESTORE), str(dumps[0]), target], capture_output=True,  # noqa: S603,S607
                                  text=True, timeout=300)
        assert restored.returncode == 0, restored.stderr
        assert "paid_cents 16345" in restored.stdout  # 123,45 € + 40,00 € applied to positions
        live, copy = totals(database_url), totals(target)
        assert live["positions"] == 3
        assert live["receipts"] == 3
        assert copy == live
        # --owner: every object of the copy belongs to that role (the application's, to switch over to it).
        owned = target + "_owned"
        _drop(owned)
        try:
            done = subprocess.run(["bash", str(RESTORE), "--owner", "postgres", str(dumps[0]), owned],  # noqa: S603,S607
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            assert totals(owned) == live
        finally:
            _drop(owned)
        # Restoring over an existing database is refused.
        again = subprocess.run(["bash", str(RESTORE), str(dumps[0]), target], capture_output=True,  # noqa: S603,S607
                               text=True, timeout=60)
        assert again.returncode == 1
        assert "already exists" in again.stderr
    finally:
        _drop(target)


def test_backup_refuses_without_a_database(tmp_path):
    env = {**os.environ, "PAYBOX_ENV_FILE": str(tmp_path / "none.env"), "DATABASE_URL": "",
           "BACKUP_DIR": str(tmp_path)}
    done = subprocess.run(["bash", str(BACKUP)], env=env, capture_output=True, text=True, timeout=60)  # noqa: S603,S607
    assert done.returncode == 2
    assert "DATABASE_URL is not set" in done.stderr


def test_backup_reads_the_env_file_without_executing_it(tmp_path):
    """The env file is parsed, never sourced: a value like MAIL_FROM="Pay Box <...>" or $(...) runs nothing."""
    env_file = tmp_path / "paybox.env"
    marker = tmp_path / "executed"
    env_file.write_text(f'MAIL_FROM="Pay Box <noreply@example.it>"\nX=$(touch {marker})\n'
                        "DATABASE_URL=sqlite:////var/lib/paybox/paybox.db\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    done = subprocess.run(["bash", str(BACKUP)], env={**env, "PAYBOX_ENV_FILE": str(env_file),  # noqa: S603,S607
                                                      "BACKUP_DIR": str(tmp_path / "b")},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not PostgreSQL" in done.stderr
    assert not marker.exists()
