"""Flask extensions, created unbound and attached to the app in :func:`portal.create_app`."""

import sqlite3
import time
import weakref

import sqlalchemy as sa
from flask_babel import Babel
from flask_htmx import HTMX
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_static_digest import FlaskStaticDigest
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine

#: Deterministic constraint names, so Alembic can autogenerate and drop them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()
htmx = HTMX()
babel = Babel()
static_digest = FlaskStaticDigest()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """SQLite, the embedded default: readers never wait for the writer (WAL), writers wait for each other (busy
    timeout) instead of failing. ``synchronous`` stays FULL: a receipt acknowledged must survive a power cut."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


#: A pooled connection idle for longer than this is checked (a round trip) before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0
_CHECKED_IN = "paybox_checked_in"
_pinging: "weakref.WeakSet[sa.Engine]" = weakref.WeakSet()


def ping_idle_connections(engine: sa.Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Ping a pooled connection before use only when it sat idle for more than ``idle_seconds``.

    ``pool_pre_ping`` pings on every checkout: one more round trip on each request (one in eight of a
    receipt's), which on a busy machine is one more wait for the database process to be scheduled. A connection
    returned to the pool a moment ago is alive; one that sat idle may have been cut (a server restart, a
    firewall). A failed ping makes the pool open a fresh connection, as ``pool_pre_ping`` would. Idempotent.
    """
    if engine in _pinging:
        return
    _pinging.add(engine)

    def checkin(dbapi_connection, record) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    def checkout(dbapi_connection, record, proxy) -> None:
        returned = record.info.get(_CHECKED_IN)
        if returned is None or time.monotonic() - returned <= idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool drops this connection and hands out a new one.
            raise sa.exc.DisconnectionError(f"idle connection failed its ping: {exc}") from exc

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)
