"""The sandbox's own state: one SQLite file, stdlib ``sqlite3``, shared by threads and processes.

Every request opens its own connection (WAL journal, 30 s busy timeout). Writes run inside
``BEGIN IMMEDIATE`` transactions, so two requests (or two sandbox processes) never interleave a
read-check-write on the same position. Documents (debt positions, flows) are stored as JSON.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (
    org TEXT NOT NULL,
    iupd TEXT NOT NULL,
    status TEXT NOT NULL,
    doc TEXT NOT NULL,
    inserted_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (org, iupd)
);
CREATE TABLE IF NOT EXISTS option_keys (
    org TEXT NOT NULL,
    iuv TEXT NOT NULL,
    nav TEXT NOT NULL,
    iupd TEXT NOT NULL,
    UNIQUE (org, iuv),
    UNIQUE (org, nav)
);
CREATE INDEX IF NOT EXISTS option_keys_iupd ON option_keys (org, iupd);
CREATE TABLE IF NOT EXISTS receipts (
    receipt_id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    iuv TEXT NOT NULL,
    nav TEXT NOT NULL,
    iupd TEXT NOT NULL,
    debtor TEXT NOT NULL,
    service TEXT,
    amount INTEGER NOT NULL,
    psp_id TEXT NOT NULL,
    payment_datetime TEXT NOT NULL,
    xml TEXT NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    UNIQUE (org, iuv)
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receipt_id TEXT NOT NULL,
    url TEXT NOT NULL,
    envelope TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    locked_until REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE TABLE IF NOT EXISTS carts (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS flows (
    fdr TEXT NOT NULL,
    org TEXT NOT NULL,
    psp_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    published TEXT NOT NULL,
    flow_date TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (fdr, org, psp_id, revision)
);
CREATE TABLE IF NOT EXISTS flow_payments (
    fdr TEXT NOT NULL,
    org TEXT NOT NULL,
    psp_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    iuv TEXT NOT NULL,
    iur TEXT NOT NULL,
    id_transfer INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    pay_status TEXT NOT NULL,
    pay_date TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    method TEXT,
    prefix TEXT NOT NULL,
    status INTEGER,
    remaining INTEGER NOT NULL,
    delay REAL NOT NULL DEFAULT 0,
    retry_after INTEGER
);
CREATE TABLE IF NOT EXISTS flags (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

TABLES = ("positions", "option_keys", "receipts", "deliveries", "carts", "flows", "flow_payments", "faults", "flags")


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None = None) -> str:
    """An RFC 3339 UTC timestamp (``2026-07-06T10:11:12Z``), valid as OpenAPI ``date-time``."""
    moment = (moment or now_utc()).astimezone(UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def init_db(path: str) -> None:
    """Create the file and the tables (idempotent)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
    finally:
        conn.close()


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the database lock up front (no lost updates between processes)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def reset(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        for table in TABLES:
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed table names)


def get_flag(conn: sqlite3.Connection, key: str, default: str = "") -> str:
    row = conn.execute("SELECT value FROM flags WHERE key = ?", (key,)).fetchone()
    return row["value"] if row else default


def set_flag(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO flags (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 (key, value))


def dumps(doc) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def loads(text: str):
    return json.loads(text)
