"""What keeps the receipt endpoint's tail short: its Server-Timing breakdown, the warm-up of a fresh worker, the
gunicorn settings, and pooled connections pinged only after sitting idle. No timing is asserted (figures belong
to bench/receipts.py); these check that each piece does what it says.
"""

import gc
import runpy
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from portal import timing
from portal.extensions import db, ping_idle_connections
from portal.ledger.models import Event, Position, Receipt
from portal.ledger.status import OptionStatus, PositionStatus
from portal.pagopa import node, soap
from tests.test_ledger_payments import receipt_for
from tests.test_pagopa_receipts import answer, post, rt_request

ROOT = Path(__file__).resolve().parent.parent


# --- portal.timing ------------------------------------------------------------------------------------------------


def test_phases_add_up_and_round_trip_through_the_header():
    timings = timing.Timings()
    timings.add("parse", 0.0015)
    timings.add("sql", 0.002)
    timings.add("sql", 0.001)
    header = timings.header()
    assert header == 'parse;dur=1.50, sql;dur=3.00;desc="2 statements"'
    assert timing.parse_header(header) == {"parse": 1.5, "sql": 3.0}
    assert timing.parse_header("a;dur=x, ;dur=1, b;desc=\"no dur\", c;dur=2") == {"c": 2.0}
    with pytest.raises(ValueError, match="metric name"):
        timings.add("not a token", 1)


def test_phase_and_timed_measure_only_while_collecting():
    @timing.timed("work")
    def work():
        return 42

    assert work() == 42
    with timing.phase("outside"):
        pass
    timings = timing.Timings()
    with timing.collecting(timings):
        with timing.phase("block"):
            time.sleep(0.002)
        assert work() == 42
    assert set(timings.durations) == {"block", "work"}
    assert timings.durations["block"] >= 2.0
    with timing.phase("after"):
        pass
    assert "after" not in timings.durations


def test_sql_and_gc_hooks_count_only_for_the_request_being_measured(ctx):
    timing.install_hooks()
    timing.install_hooks()  # idempotent: statements are not counted twice
    db.session.execute(sa.text("SELECT 1"))
    timings = timing.Timings()
    gc.disable()  # only the collections asked for below: an automatic one could fall inside the block
    try:
        with timing.collecting(timings):
            db.session.execute(sa.text("SELECT 1"))
            db.session.execute(sa.text("SELECT 2"))
            gc.collect()
        db.session.execute(sa.text("SELECT 3"))
        assert timings.counts[timing.SQL] == 2
        assert timings.counts[timing.GC] == 1
        # Another thread measuring nothing adds nothing.
        other = threading.Thread(target=lambda: gc.collect())
        with timing.collecting(timings):
            other.start()
            other.join()
        assert timings.counts[timing.GC] == 1
    finally:
        gc.enable()


# --- Server-Timing on POST /pagopa/paForNode ---------------------------------------------------------------------


def test_server_timing_header_says_where_a_receipt_spent_its_time(app, client, published, monkeypatch):
    monkeypatch.setitem(app.config, "PAGOPA_SERVER_TIMING", True)
    option = published(amount=5000).options[0]

    response = post(client, rt_request(receipt_for(option)),
                    headers={"X-Request-Start": f"t={time.time() - 0.25:.6f}"})

    assert answer(response.data)[:2] == ("OK", None)
    metrics = timing.parse_header(response.headers["Server-Timing"])
    assert {"queue", "read", "parse", "xsd", "ledger", "sql", "commit", "encode", "log", "cpu", "app"} <= set(metrics)
    assert metrics["queue"] >= 250
    assert metrics["xsd"] <= metrics["parse"]
    assert metrics["sql"] <= metrics["ledger"] <= metrics["app"]
    assert 'statements"' in response.headers["Server-Timing"]
    # A fault is timed too (no ledger, no commit).
    response = post(client, b"<not-xml")
    assert {"parse", "encode", "app"} <= set(timing.parse_header(response.headers["Server-Timing"]))


def test_no_server_timing_unless_turned_on(client, published):
    option = published(amount=5000).options[0]
    response = post(client, rt_request(receipt_for(option)))
    assert answer(response.data)[:2] == ("OK", None)
    assert "Server-Timing" not in response.headers


NOW = 1_796_000_000.0  # an epoch second in 2026


@pytest.mark.parametrize(("value", "expected"), [
    (f"t={NOW - 1.5:.6f}", 1.5),              # seconds (nginx: t=${msec})
    (f"{(NOW - 1.5) * 1e3:.0f}", 1.5),        # milliseconds
    (f"t={(NOW - 1.5) * 1e6:.0f}", 1.5),      # microseconds
    (f"t={NOW + 3}", None),                   # in the future
    (f"t={NOW - 7200}", None),                # hours ago: a clock that is not ours
    ("soon", None),
    ("", None),
    (None, None),
])
def test_queued_seconds_reads_x_request_start(value, expected):
    got = node._queued_seconds(value, now=NOW)
    assert got == (pytest.approx(expected, abs=1e-3) if expected is not None else None)


def test_config_reads_pagopa_server_timing():
    from portal.config import load_config

    assert load_config({})["PAGOPA_SERVER_TIMING"] is False
    assert load_config({"PAGOPA_SERVER_TIMING": "1"})["PAGOPA_SERVER_TIMING"] is True


# --- Warm-up -----------------------------------------------------------------------------------------------------


def _stored() -> dict:
    return {
        "receipts": db.session.scalar(sa.select(sa.func.count()).select_from(Receipt)),
        "events": db.session.scalar(sa.select(sa.func.count()).select_from(Event)),
    }


def test_warm_up_runs_the_receipt_path_and_keeps_nothing(app, published):
    position = published(amount=5000)
    before = _stored()

    took = node.warm_up(app, connections=2)

    assert set(took) == {"connect", "schema", "call", "ledger"}
    db.session.expire_all()
    assert _stored() == before
    assert position.status == PositionStatus.PUBLISHED
    assert [o.status for o in position.options] == [OptionStatus.UNPAID]
    # The option is still payable by its real receipt.
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Position)
                             .where(Position.status == PositionStatus.PUBLISHED)) == 1


def test_warm_up_without_unpaid_options_skips_the_ledger_step(app, ctx):
    took = node.warm_up(app)
    assert "ledger skipped" in took
    assert "ledger" not in took


def test_warm_up_request_is_valid_and_refused_for_its_unknown_idpa(client, station):
    response = post(client, node.warm_up_request())
    assert answer(response.data)[:2] == ("KO", soap.PAA_ID_DOMINIO_ERRATO)


def test_warm_up_call_passes_the_allow_list_and_the_required_header(app, station, monkeypatch, caplog):
    monkeypatch.setitem(app.config, "PAGOPA_SOAP_ALLOWED_IPS", ["10.1.2.0/24"])
    monkeypatch.setitem(app.config, "PAGOPA_SOAP_REQUIRED_HEADER", "X-Client-Verified: SUCCESS")
    node.warm_up(app)
    assert "warm-up call answered" not in caplog.text


# --- gunicorn.conf.py --------------------------------------------------------------------------------------------


def _gunicorn_conf(monkeypatch, **env) -> dict:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_settings_queue_calls_in_the_listen_socket(monkeypatch):
    conf = _gunicorn_conf(monkeypatch)
    assert conf["wsgi_app"] == "wsgi:app"
    assert conf["worker_class"] == "gthread"
    # A worker takes a connection only with a thread free for it, and no kept-alive connection holds one.
    assert conf["worker_connections"] == conf["threads"] >= 1
    assert conf["keepalive"] == 0
    assert conf["preload_app"] is True
    assert conf["accesslog"] is None
    assert conf["workers"] >= 2
    assert _gunicorn_conf(monkeypatch, WEB_CONCURRENCY="7")["workers"] == 7


def test_gunicorn_settings_are_accepted_by_gunicorn(monkeypatch):
    from gunicorn.config import Config

    config = Config()
    for name, value in _gunicorn_conf(monkeypatch).items():
        if name in config.settings:
            config.set(name, value)
    assert config.worker_class_str == "gthread"
    assert config.keepalive == 0


def test_gunicorn_post_worker_init_warms_every_thread_and_freezes_the_heap(app, published, monkeypatch):
    conf = _gunicorn_conf(monkeypatch)
    published(amount=5000)
    messages = []
    loaded_in = set()
    real_schema = soap.schema

    def schema():
        loaded_in.add(threading.get_ident())
        return real_schema()

    monkeypatch.setattr(soap, "schema", schema)
    with ThreadPoolExecutor(max_workers=2) as pool:
        worker = SimpleNamespace(wsgi=app, cfg=SimpleNamespace(threads=2), tpool=pool, pid=1234,
                                 log=SimpleNamespace(info=lambda msg, *args: messages.append(msg % args)))
        try:
            conf["post_worker_init"](worker)
            frozen = gc.get_freeze_count()
        finally:
            gc.unfreeze()
        threads = {thread.ident for thread in pool._threads}
    assert frozen > 0
    assert len(threads) == 2
    assert threads <= loaded_in
    assert len(messages) == 1
    assert "warmed up" in messages[0]
    assert "ledger" in messages[0]
    assert _stored()["receipts"] == 0


def test_gunicorn_post_fork_drops_the_masters_pool_without_closing_its_sockets(app, monkeypatch):
    conf = _gunicorn_conf(monkeypatch)
    disposed = []
    with app.app_context():
        for engine in db.engines.values():
            monkeypatch.setattr(engine, "dispose", lambda close=True, engine=engine: disposed.append((engine, close)))
        server = SimpleNamespace(app=SimpleNamespace(wsgi=lambda: app), cfg=SimpleNamespace(preload_app=True))
        conf["post_fork"](server, SimpleNamespace())
        # close=False: the sockets belong to the master; the worker only forgets them.
        assert disposed == [(engine, False) for engine in db.engines.values()]
        disposed.clear()
        conf["post_fork"](SimpleNamespace(app=server.app, cfg=SimpleNamespace(preload_app=False)), None)
        assert disposed == []


# --- Pooled connections pinged after sitting idle ----------------------------------------------------------------


@pytest.fixture
def engine(database_url):
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"), pool_size=1,
                              max_overflow=0)
    yield engine
    engine.dispose()


def test_only_a_connection_idle_for_a_while_is_pinged(engine, monkeypatch):
    pings = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(1) or real_ping(conn))
    ping_idle_connections(engine, idle_seconds=0.2)
    ping_idle_connections(engine, idle_seconds=0.2)  # idempotent

    for _ in range(3):
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    assert pings == []
    time.sleep(0.3)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert pings == [1]


def test_an_idle_connection_cut_by_the_server_is_replaced_before_use(engine):
    ping_idle_connections(engine, idle_seconds=0.05)
    with engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() == pid
    with sa.create_engine(engine.url, poolclass=sa.pool.NullPool).connect() as admin:
        admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    time.sleep(0.2)

    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != pid


def test_the_app_pings_idle_connections_instead_of_every_checkout():
    from portal.config import load_config

    options = load_config({"DATABASE_URL": "postgresql://x@127.0.0.1/db"})["SQLALCHEMY_ENGINE_OPTIONS"]
    assert not options.get("pool_pre_ping")


def test_gunicorn_answers_with_a_server_header_naming_no_software(tmp_path):
    """A real gunicorn with this file's ``on_starting``: ``Server: Pay Box``, not gunicorn's (nor Werkzeug's)."""
    import socket
    import subprocess
    import sys
    import time

    import requests

    (tmp_path / "hello.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n", encoding="utf-8")
    (tmp_path / "conf.py").write_text(
        "import runpy\n"
        f"on_starting = runpy.run_path({str(ROOT / 'gunicorn.conf.py')!r})['on_starting']\n", encoding="utf-8")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(tmp_path / "conf.py"),  # noqa: S603
                               "-b", f"127.0.0.1:{port}", "hello:app"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                response = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        assert response.headers["Server"] == "Pay Box"
    finally:
        server.terminate()
        server.wait(10)
