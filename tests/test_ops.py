"""Operations: ``/healthz``, ``/readyz`` (database, migrations, Redis, scheduler heartbeat, queue backlog),
``/metrics`` (protection, receipt counters, request latency by route, backlog gauges), the metrics of several
processes added up, and ``flask doctor`` against the pagoPA sandbox."""

import os
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from portal.extensions import db
from portal.jobs import heartbeat
from portal.jobs.periodic import RedisScheduler
from portal.jobs.queue import RQBackend
from portal.ledger.types import utcnow
from portal.ops import health
from tests.conftest import CF_COMUNE
from tests.servers import serving
from tests.test_ledger_payments import receipt_for
from tests.test_pagopa_receipts import post, rt_request

REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sample(text: str, name: str, **labels) -> float:
    """The value of the sample ``name`` with exactly these labels in a Prometheus text answer (0 if absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def scrape(client, **kwargs) -> str:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    return response.get_data(as_text=True)


@pytest.fixture
def rq_app(app, monkeypatch):
    """The test app with its jobs on RQ (Redis ``TEST_REDIS_URL``, flushed before and after)."""
    backend = RQBackend(REDIS_TEST_URL, app=app)
    backend.redis.flushdb()
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    monkeypatch.delitem(app.extensions, "paybox_health_redis", raising=False)
    yield backend
    backend.redis.flushdb()
    backend.close()
    app.extensions.pop("paybox_health_redis", None)


# --- /healthz and /readyz ---------------------------------------------------------------------------------------


def test_healthz_answers_without_touching_anything(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})


def test_readyz_in_process_jobs_checks_database_and_migrations(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    checks = response.json["checks"]
    assert set(checks) == set(health.CHECKS)
    assert checks["database"]["ok"]
    assert checks["migrations"]["ok"]
    assert "alla revisione" in checks["migrations"]["detail"]
    # Without Redis the job checks do not apply, and say so.
    assert "nessun Redis" in checks["redis"]["detail"]
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_fails_when_the_database_is_behind_the_code(app, client):
    with app.app_context():
        with db.engine.begin() as conn:
            current = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'older'"))
        try:
            response = client.get("/readyz")
        finally:
            with db.engine.begin() as conn:
                conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": current})
    assert response.status_code == 503
    assert response.json["status"] == "not ready"
    migrations = response.json["checks"]["migrations"]
    assert not migrations["ok"]
    assert "older" in migrations["detail"]
    assert "flask db upgrade" in migrations["detail"]
    assert response.json["checks"]["database"]["ok"]


def test_readyz_fails_when_the_database_is_down(ctx):
    engine = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    report = health.readiness(engine, migrations_dir=os.path.join(ROOT, "migrations"), only=["database"])
    assert not report.ok
    assert report.as_dict()["checks"]["database"]["detail"].startswith("OperationalError")


def test_readyz_can_run_only_some_checks(client):
    response = client.get("/readyz?check=database")
    assert list(response.json["checks"]) == ["database"]
    response = client.get("/readyz?check=disk")
    assert response.status_code == 400
    assert "disk" in response.json["error"]


def test_readyz_with_redis_needs_a_recent_scheduler_heartbeat(app, client, rq_app, monkeypatch):
    monkeypatch.setitem(app.config, "READYZ_SCHEDULER_SECONDS", 120)
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["redis"]["ok"]
    assert checks["queues"]["ok"]
    assert not checks["scheduler"]["ok"]
    assert "flask rq scheduler" in checks["scheduler"]["detail"]

    # The active scheduler records its heartbeat as it ticks.
    scheduler = RedisScheduler(rq_app.redis, jobs=())
    with app.app_context():
        scheduler.tick()
        beat = heartbeat.last_beat(db.engine)
    assert beat.holder == scheduler.token
    assert beat.pid == os.getpid()
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert "attivo" in response.json["checks"]["scheduler"]["detail"]

    # A scheduler silent for longer than the setting is not ready.
    with app.app_context():
        heartbeat.beat(db.engine, "old", now=utcnow() - timedelta(seconds=300))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "oltre 120 s" in response.json["checks"]["scheduler"]["detail"]


def test_readyz_queue_backlog_threshold(app, client, rq_app, monkeypatch):
    monkeypatch.setitem(app.config, "READYZ_MAX_QUEUED", 3)
    with app.app_context():
        heartbeat.beat(db.engine, "token")
    notices = rq_app.queue("notices")
    rq_app.redis.rpush(notices.key, "a", "b", "c")
    assert client.get("/readyz").status_code == 200
    rq_app.redis.rpush(notices.key, "d")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["queues"] == {
        "ok": False, "detail": "4 lavori in coda (notices 4): oltre la soglia di 3", "value": 4,
        "ms": response.json["checks"]["queues"]["ms"]}
    # A load balancer that only cares whether this node can take receipts asks for those checks.
    assert client.get("/readyz?check=database&check=migrations&check=redis").status_code == 200


def test_readyz_reports_redis_down(app, client, monkeypatch):
    backend = RQBackend("redis://127.0.0.1:1/0", app=app)
    monkeypatch.setitem(app.extensions, "paybox_jobs", backend)
    monkeypatch.delitem(app.extensions, "paybox_health_redis", raising=False)
    try:
        response = client.get("/readyz")
    finally:
        app.extensions.pop("paybox_health_redis", None)
    assert response.status_code == 503
    assert response.json["checks"]["redis"]["detail"].startswith("ConnectionError")
    assert response.json["checks"]["database"]["ok"]


# --- /metrics ---------------------------------------------------------------------------------------------------


def test_metrics_without_a_token_answer_only_local_direct_calls(client):
    assert client.get("/metrics").status_code == 200  # the test client calls from 127.0.0.1
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    # Through a proxy on this machine the peer is loopback, but the call came from elsewhere.
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403


def test_metrics_with_a_token_ask_for_it(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "s3cret-token")
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token", "X-Forwarded-For": "203.0.113.9"},
                    environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert ok.status_code == 200


def test_receipt_counters_move_with_paSendRTV2(client, published):
    position = published(amount=5000)
    option = position.options[0]
    before = scrape(client)
    data = receipt_for(option)

    assert post(client, rt_request(data)).status_code == 200  # stored
    post(client, rt_request(data))  # the same receipt again: PAA_RECEIPT_DUPLICATA
    post(client, rt_request(receipt_for(option, iuv="01999999999999999")))  # unknown IUV: stored and flagged
    post(client, b"<not-xml", headers={})  # not even XML

    after = scrape(client)

    def moved(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("paybox_receipts_received_total", source="paSendRTV2") == 4
    assert moved("paybox_receipts_stored_total", source="paSendRTV2", flag="none") == 1
    assert moved("paybox_receipts_stored_total", source="paSendRTV2", flag="unknown_iuv") == 1
    assert moved("paybox_receipts_refused_total", source="paSendRTV2", reason="PAA_RECEIPT_DUPLICATA") == 1
    assert moved("paybox_receipts_refused_total", source="paSendRTV2", reason="PAA_SINTASSI_EXTRAXSD") == 1
    # Latency by URL rule: one series for the endpoint, whatever the outcome of each call.
    assert moved("paybox_http_request_duration_seconds_count", method="POST", route="/pagopa/paForNode",
                 status="200") == 4


def test_refused_caller_and_warm_up_call(app, client, published, monkeypatch):
    before = scrape(client)
    monkeypatch.setitem(app.config, "PAGOPA_SOAP_ALLOWED_IPS", ["192.0.2.1"])
    assert post(client, rt_request(receipt_for(published().options[0]))).status_code == 403
    monkeypatch.setitem(app.config, "PAGOPA_SOAP_ALLOWED_IPS", [])
    from portal.pagopa import node

    node.warm_up(app)  # what gunicorn runs in each new worker: not a receipt of anyone
    after = scrape(client)
    assert (sample(after, "paybox_receipts_refused_total", source="paSendRTV2", reason="forbidden")
            - sample(before, "paybox_receipts_refused_total", source="paSendRTV2", reason="forbidden")) == 1
    assert (sample(after, "paybox_receipts_received_total", source="paSendRTV2")
            - sample(before, "paybox_receipts_received_total", source="paSendRTV2")) == 1


def test_request_latency_uses_the_url_rule_not_the_path(client, make_user, login, make_position):
    login(make_user(role="admin"))
    position = make_position()
    client.get(f"/officer/positions/{position.id}")
    client.get("/no/such/page/12345")
    text = scrape(client)
    routes = {s.labels["route"] for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "paybox_http_request_duration_seconds_count"}
    assert "<unmatched>" in routes
    assert not any(str(position.id) in route.split("/") for route in routes), routes
    assert any(route.startswith("/officer/positions/<") for route in routes), routes


def test_backlog_gauges(app, client, make_position):
    position = make_position()  # created and waiting for pagoPA
    assert position.sync_pending
    text = scrape(client)
    assert sample(text, "paybox_sync_positions", state="pending") == 1
    assert sample(text, "paybox_state_up", part="database") == 1
    assert sample(text, "paybox_queue_jobs", queue="sync", state="queued") >= 1


def test_queue_gauges_from_redis(client, rq_app):
    rq_app.redis.rpush(rq_app.queue("mail").key, "x", "y")
    text = scrape(client)
    assert sample(text, "paybox_queue_jobs", queue="mail", state="queued") == 2
    assert sample(text, "paybox_state_up", part="queues") == 1


def test_job_durations_are_observed(app, ctx):
    from prometheus_client import REGISTRY

    from portal.jobs.queue import ManualBackend, enqueue_now

    def count():
        return REGISTRY.get_sample_value("paybox_job_duration_seconds_count",
                                         {"task": "purge_job_records", "queue": "default", "outcome": "done"}) or 0

    before = count()
    backend = app.extensions["paybox_jobs"]
    assert isinstance(backend, ManualBackend)
    enqueue_now("purge_job_records")
    backend.run_pending()
    assert count() == before + 1


# --- Several processes ------------------------------------------------------------------------------------------


def test_processes_and_rq_horses_add_up_in_multiprocess_mode(tmp_path):
    """Two processes and two successive "work horses" of one RQ worker count into one directory; a scrape there
    adds everything up, and the horses share their worker's files instead of leaving one set per job."""
    count = textwrap.dedent("""
        import os, sys
        if len(sys.argv) > 1:
            os.environ["RQ_JOB_ID"] = "job"
            os.environ["PAYBOX_RQ_WORKER_PID"] = sys.argv[1]
        from portal import metrics
        metrics.RECEIPTS_RECEIVED.labels("paSendRTV2").inc(2)
    """)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for args in ([], [], ["4242"], ["4242"]):
        subprocess.run([sys.executable, "-c", count, *args], env=env, cwd=ROOT, check=True, timeout=60)  # noqa: S603
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files.count("counter_horse-4242.db") == 1
    assert len(files) == 3, files
    scrape_code = textwrap.dedent("""
        from prometheus_client import generate_latest
        from portal import metrics
        print(generate_latest(metrics.scrape_registry()).decode())
    """)
    out = subprocess.run([sys.executable, "-c", scrape_code], env=env, cwd=ROOT, check=True, timeout=60,  # noqa: S603
                         capture_output=True, text=True).stdout
    assert sample(out, "paybox_receipts_received_total", source="paSendRTV2") == 8


def test_gunicorn_config_sets_up_multiprocess_metrics():
    """gunicorn.conf.py gives the workers a shared metrics directory and forgets a dead worker's live gauges."""
    code = textwrap.dedent("""
        import os, runpy
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        conf = runpy.run_path("gunicorn.conf.py")
        path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        assert os.path.isdir(path) and not os.listdir(path), path
        assert callable(conf["child_exit"])
        conf["on_exit"](None)
        assert not os.path.exists(path)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60, capture_output=True,  # noqa: S603
                         text=True)
    assert out.stdout.strip() == "ok", out.stderr


# --- flask doctor -----------------------------------------------------------------------------------------------

SANDBOX_KEY = "doctor-key"


@pytest.fixture(scope="module")
def sandbox_url(tmp_path_factory):
    from portal.pagopa.sandbox import create_app as create_sandbox

    sandbox = create_sandbox({"TESTING": True, "SANDBOX_API_KEY": SANDBOX_KEY, "SANDBOX_DELIVERY_WORKER": False,
                              "SANDBOX_DATABASE": str(tmp_path_factory.mktemp("doctor") / "sandbox.db")})
    with serving(sandbox) as base:
        yield base


@pytest.fixture
def doctor(app, sandbox_url, creditor, monkeypatch):
    """Run ``flask doctor`` against the sandbox with a given key, Pay Box itself served on a free port."""
    monkeypatch.setitem(app.config, "PAGOPA_GPD_URL", f"{sandbox_url}/gpd/debt-positions-service")

    def run(key: str, soap_url: str | None = None):
        monkeypatch.setitem(app.config, "PAGOPA_API_KEY", key)
        db.session.remove()
        with serving(app) as base:
            result = app.test_cli_runner().invoke(args=["doctor", "--soap-url", soap_url or
                                                        f"{base}/pagopa/paForNode"])
        return result

    return run


def test_doctor_passes_with_the_right_key(doctor):
    result = doctor(SANDBOX_KEY)
    assert result.exit_code == 0, result.output
    assert "[OK  ] GPD: " in result.output
    assert "chiave accettata" in result.output
    assert f"[OK  ] GPD ente {CF_COMUNE}: la chiave può operare per questo ente" in result.output
    assert "[OK  ] endpoint SOAP:" in result.output
    assert "PAA_ID_DOMINIO_ERRATO" in result.output
    assert "[OK  ] migrations:" in result.output


def test_doctor_finds_a_wrong_api_key(doctor):
    result = doctor("not-the-key")
    assert result.exit_code == 1, result.output
    assert "[FAIL] GPD: chiave rifiutata (401): PAGOPA_API_KEY è sbagliata" in result.output
    assert "falliti" in result.output


def test_doctor_finds_an_unreachable_soap_endpoint(doctor):
    result = doctor(SANDBOX_KEY, soap_url="http://127.0.0.1:1/pagopa/paForNode")
    assert result.exit_code == 1
    assert "[FAIL] endpoint SOAP: http://127.0.0.1:1/pagopa/paForNode: non raggiungibile" in result.output


def test_doctor_configuration_checks_for_production():
    from portal.ops.doctor import FAIL, WARN, check_configuration

    findings = {f.name: f for f in check_configuration({
        "PAYBOX_ENV": "production", "SECRET_KEY": "x" * 40, "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://db/pb",
        "PUBLIC_URL": "http://paybox.comune.example", "PAGOPA_GPD_URL": "http://127.0.0.1:5001/gpd",
        "PAGOPA_RECEIPTS_URL": "https://api.platform.pagopa.it/r", "PAGOPA_CHECKOUT_URL": "https://x/c",
        "PAGOPA_FDR_URL": "https://x/f", "PAGOPA_BROKER_ID": "1", "PAGOPA_STATION_ID": "1_01",
        "PAGOPA_SOAP_ALLOWED_IPS": ["10.0.0.0/8", "not-an-ip"], "PAGOPA_SOAP_REQUIRED_HEADER": "no-colon",
        "NOTICES_DIR": "/nonexistent/dir/notices"})}
    assert findings["SECRET_KEY"].level == FAIL
    assert "random" in findings["SECRET_KEY"].detail
    assert findings["PAYBOX_PUBLIC_URL"].level == FAIL
    assert findings["PAGOPA_GPD_URL"].level == FAIL
    assert "sandbox" in findings["PAGOPA_GPD_URL"].detail
    assert findings["PAGOPA_SOAP_ALLOWED_IPS"].level == FAIL
    assert "not-an-ip" in findings[
        "PAGOPA_SOAP_ALLOWED_IPS"].detail
    assert findings["PAGOPA_SOAP_REQUIRED_HEADER"].level == FAIL
    assert findings["NOTICES_DIR"].level == FAIL
    assert findings["MAIL_SERVER"].level == WARN
    assert findings["METRICS_TOKEN"].level == WARN


def test_doctor_over_the_network_is_harmless(doctor, app):
    """The doctor's calls leave nothing behind: no position on the sandbox, no receipt here."""
    from portal.ledger.models import Receipt

    doctor(SANDBOX_KEY)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Receipt)) == 0
    assert requests.get(f"{app.config['PAGOPA_GPD_URL']}/v1/organizations/{CF_COMUNE}/debtpositions",
                        headers={"Ocp-Apim-Subscription-Key": SANDBOX_KEY}, timeout=5
                        ).json()["payment_position_list"] == []


def test_a_real_gunicorn_adds_up_its_workers(app, database_url, published, tmp_path):
    """gunicorn with this repository's gunicorn.conf.py and two workers: receipts answered by either worker are
    all in every scrape, whichever worker answers it."""
    import socket
    import time
    from concurrent.futures import ThreadPoolExecutor

    payloads = [rt_request(receipt_for(published(amount=1000 + n).options[0])) for n in range(60)]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics_dir = tmp_path / "metrics"
    env = {**os.environ, "DATABASE_URL": database_url, "PAYBOX_ENV": "testing", "SECRET_KEY": "test-secret",
           "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "WEB_CONCURRENCY": "2", "REDIS_URL": ""}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",  # noqa: S603
                               "-b", f"127.0.0.1:{port}"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    sent = 0
    try:
        for _ in range(300):
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # still booting (slowly on a loaded machine)
                time.sleep(0.1)

        def send(payload):
            return requests.post(f"{base}/pagopa/paForNode", data=payload, timeout=10,
                                 headers={"SOAPAction": "paSendRTV2", "Content-Type": "text/xml; charset=utf-8"})

        # Until both workers have answered some (which one accepts a call is the kernel's choice).
        with ThreadPoolExecutor(8) as pool:
            while sent < len(payloads) and len(list(metrics_dir.glob("counter_*.db"))) < 2:
                batch = payloads[sent:sent + 12]
                assert [a.status_code for a in pool.map(send, batch)] == [200] * len(batch)
                sent += len(batch)
        scrapes = [requests.get(f"{base}/metrics", timeout=10).text for _ in range(6)]
        assert requests.get(f"{base}/readyz?check=database&check=migrations", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(20)
    assert len(list(metrics_dir.glob("counter_*.db"))) == 2, "one worker answered every call"
    for text in scrapes:
        assert sample(text, "paybox_receipts_stored_total", source="paSendRTV2", flag="none") == sent
    # The warm-up calls of the two workers are not counted as receipts.
    assert sample(scrapes[0], "paybox_receipts_received_total", source="paSendRTV2") == sent


def test_behind_a_trusted_proxy_the_client_address_is_the_forwarded_one(database_url):
    """PAYBOX_TRUSTED_PROXIES=1 (nginx of the deploy kit): the SOAP allow-list and the metrics see the client."""
    from portal import create_app

    proxied = create_app({"PAYBOX_ENV": "testing", "TESTING": True, "SECRET_KEY": "test-secret",
                          "SQLALCHEMY_DATABASE_URI": database_url.replace("postgresql://", "postgresql+psycopg://"),
                          "SQLALCHEMY_ENGINE_OPTIONS": {}, "JOBS_MODE": "manual", "TRUSTED_PROXIES": 1,
                          "PAGOPA_SOAP_ALLOWED_IPS": ["198.51.100.7"]})
    client = proxied.test_client()
    # Through nginx on this machine (peer 127.0.0.1): the forwarded address decides.
    from portal.pagopa import soap

    headers = {"SOAPAction": "paSendRTV2", "Content-Type": "text/xml; charset=utf-8"}
    refused = client.post("/pagopa/paForNode", data=soap.probe_request(),
                          headers={**headers, "X-Forwarded-For": "203.0.113.9"})
    allowed = client.post("/pagopa/paForNode", data=soap.probe_request(),
                          headers={**headers, "X-Forwarded-For": "198.51.100.7"})
    assert refused.status_code == 403
    assert allowed.status_code == 200
    assert soap.PAA_ID_DOMINIO_ERRATO.encode() in allowed.data
    assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 403
    with proxied.app_context():
        for engine in db.engines.values():
            engine.dispose()


def test_doctor_finds_an_unreachable_intermediary(doctor, app, monkeypatch):
    monkeypatch.setitem(app.config, "PAGOPA_GPD_URL", "http://127.0.0.1:1/gpd/debt-positions-service")
    result = app.test_cli_runner().invoke(args=["doctor", "--soap-url", "http://127.0.0.1:1/x"])
    assert result.exit_code == 1
    assert "[FAIL] GPD: non raggiungibile o in errore (CONNECTION_ERROR)" in result.output
