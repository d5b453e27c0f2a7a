"""Benchmark of the citizens' portal under gunicorn: the service page, the form submit up to the Checkout redirect,
and the notice lookup, from concurrent clients.

Creates (drops and re-creates) its own PostgreSQL database, migrates it and loads the demo Comune (its services
with the published "Certificato anagrafico" form, and its positions: the notices to look up). Starts the pagoPA
sandbox (as pagoPA: GPD and Checkout) and Pay Box under gunicorn with the repository's ``gunicorn.conf.py``, each
on a free loopback port, waits until every worker has warmed up, then runs ``--clients`` concurrent clients for
``--duration`` seconds. Each client is a citizen doing one journey after the other, with a think time between
requests (exponential, mean ``--think`` seconds; ``--think 0`` for back-to-back requests, the saturation point):

- *spontaneous* (``--notice-share`` of the journeys are the other kind): ``GET /servizi/CERTIFICATI``
  (``service page``), ``POST`` of the filled form (``form submit``: 303 to the summary), ``GET`` of the summary
  (``summary``), ``POST`` "Paga con pagoPA" (``pay``: the position is created with its IUV, published on the
  sandbox's GPD, a Checkout cart opened, 303 to the sandbox's Checkout page);
- *notice*: ``GET /avviso`` (``notice page``), ``POST`` of a notice number with its debtor's fiscal code
  (``notice lookup``: a payable notice of the demo, or a wrong fiscal code one time in ten).

The rate limits stay on (their counters are written on every form post and lookup) with limits the run never
reaches. Prints, per kind of request: count, errors, p50/p95/p99/max and requests/s; then the CPU per request of
the client, gunicorn, the PostgreSQL backends, the sandbox and the rest of the machine, and the load average.
Figures only, no assertions. The logs of gunicorn and the sandbox are kept in temporary files (paths printed).

    .venv/bin/python bench/citizen.py [--clients 50] [--duration 30] [--think 1.0] [--notice-share 0.4]
                                      [--workers N] [--threads N] [--positions 1000]
                                      [--database-url postgresql://postgres@127.0.0.1:5432/paybox_citizens2_bench]
"""

import argparse
import cProfile
import io
import os
import pstats
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psycopg
import requests
from sqlalchemy import event as sa_event

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    load_average,
    log,
    machine_cpu,
    percentile,
    proc_children,
    process_cpu,
    recreate_database,
)
from portal import timing  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/paybox_citizens2_bench"
HOST = "127.0.0.1"
API_KEY = "bench-citizen"
SERVICE = "CERTIFICATI"
TMPFS = "/dev/shm"  # noqa: S108  (a private directory is made in it with mkdtemp)
#: The kinds of request, in the order printed.
KINDS = ("service page", "form submit", "summary", "pay", "notice page", "notice lookup")
#: Fiscal codes the citizens of the spontaneous journey pay with (valid check characters).
PAYERS = ("RSSMRA80A01H501U", "VRDLGU75C12F205G", "BNCGNN62M48L219X", "NREPLA90T50A944K", "FRRSRA85E55D612J")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# --- Database ------------------------------------------------------------------------------------------------------


def migrate_and_load(url: str, positions: int) -> None:
    """Run the migrations and load the demo (Comune, services, published forms, ``positions`` positions)."""
    from flask_migrate import upgrade

    from portal import create_app, demo
    from portal.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url.replace("postgresql://", "postgresql+psycopg://"),
                      "SQLALCHEMY_ENGINE_OPTIONS": {}, "SECRET_KEY": "bench", "JOBS_MODE": "manual"})
    with app.app_context():
        upgrade()
        demo.load(db.session, positions=positions)
        db.session.commit()
        for engine in db.engines.values():
            engine.dispose()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def payable_notices(url: str) -> list[tuple[str, str]]:
    """(notice number, debtor fiscal code) of every unpaid option of a published position."""
    with psycopg.connect(url) as conn:
        return conn.execute("""
            SELECT o.notice_number, d.fiscal_code FROM payment_options o
            JOIN positions p ON p.id = o.position_id JOIN debtors d ON d.id = p.debtor_id
            WHERE p.status = 'published' AND o.status = 'unpaid' AND o.notice_number IS NOT NULL
            ORDER BY o.id""").fetchall()


def database_figures(url: str) -> dict:
    with psycopg.connect(url) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "citizen payments": one("SELECT count(*) FROM citizen_payments"),
            "in checkout": one("SELECT count(*) FROM citizen_payments WHERE status = 'checkout'"),
            "citizen positions": one("SELECT count(*) FROM positions WHERE source = 'citizen'"),
            "rate counter rows": one("SELECT count(*) FROM rate_counters"),
        }


# --- The client ----------------------------------------------------------------------------------------------------


class Browser:
    """A citizen's browser: one cookie jar (the session, which holds the CSRF secret), no keep-alive.

    A minimal HTTP/1.1 client on a fresh socket per request (gunicorn.conf.py turns keep-alive off): ``requests``
    spends a millisecond of CPU a call on the same two cores as the server being measured.
    """

    def __init__(self, port: int, timeout: float = 30.0):
        self.port, self.timeout = port, timeout
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, dict[str, str], str]:
        body = urlencode(form).encode() if form is not None else b""
        head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{self.port}", "Connection: close",
                "Accept: text/html", f"X-Request-Start: t={time.time():.6f}"]
        if self.cookies:
            head.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if form is not None:
            head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}",
                     f"Origin: http://{HOST}:{self.port}", f"Referer: http://{HOST}:{self.port}{path}"]
        with socket.create_connection((HOST, self.port), self.timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        data = b"".join(chunks)
        blob, _, content = data.partition(b"\r\n\r\n")
        status_line, *lines = blob.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "set-cookie":
                cookie, _, _ = value.partition(";")
                key, _, val = cookie.partition("=")
                self.cookies[key.strip()] = val.strip()
            else:
                headers[name] = value
        return int(status_line.split()[1]), headers, content.decode("utf-8", "replace")


class Results:
    """Durations (ms) and failures by kind of request, from every client thread."""

    def __init__(self):
        self.durations: dict[str, list[float]] = {kind: [] for kind in KINDS}
        #: The server's own timings of each request answered (``Server-Timing``), by kind.
        self.server: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
        self.errors: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
        self.lock = threading.Lock()
        self.measuring = False

    def add(self, kind: str, ms: float, error: str | None, server: dict[str, float]) -> None:
        if not self.measuring:
            return
        with self.lock:
            if error:
                self.errors[kind][error] = self.errors[kind].get(error, 0) + 1
            else:
                self.durations[kind].append(ms)
                self.server[kind].append({**server, "client": ms})


class Citizen:
    """One client: spontaneous payments and notice lookups, one journey after the other, with think times."""

    def __init__(self, number: int, port: int, sandbox: str, notices: list[tuple[str, str]], results: Results,
                 *, think: float, notice_share: float, seed: int):
        self.port, self.sandbox, self.notices, self.results = port, sandbox, notices, results
        self.think, self.notice_share = think, notice_share
        self.rng = random.Random(seed * 1000 + number)
        self.number = number

    def timed(self, kind: str, browser: Browser, method: str, path: str, form: dict | None, expect: int,
              location: str | None = None) -> tuple[dict[str, str], str] | None:
        """One request; its duration counted under ``kind`` when it answered ``expect`` (and redirected where
        ``location`` says), as a failure otherwise. Then the citizen thinks."""
        start = time.perf_counter()
        error = None
        try:
            status, headers, body = browser.request(method, path, form)
        except OSError as exc:
            status, headers, body, error = 0, {}, "", f"exception {type(exc).__name__}"
        ms = (time.perf_counter() - start) * 1000
        if error is None and status != expect:
            error = f"HTTP {status}"
        elif error is None and location and not headers.get("location", "").startswith(location):
            error = f"redirected to {urlsplit(headers.get('location', '')).path or 'nowhere'}"
        self.results.add(kind, ms, error, timing.parse_header(headers.get("server-timing", "")))
        if self.think > 0:
            time.sleep(self.rng.expovariate(1 / self.think))
        return None if error else (headers, body)

    def spontaneous(self) -> None:
        browser = Browser(self.port)
        page = self.timed("service page", browser, "GET", f"/servizi/{SERVICE}", None, 200)
        if page is None:
            return
        token = _CSRF.search(page[1]).group(1)
        form = {"csrf_token": token, "codice_fiscale": self.rng.choice(PAYERS),
                "nome": f"Cittadino {self.number}", "email": "", "tipo_certificato": "Residenza",
                "_voce": str(self.rng.randrange(2)), "sito_web": ""}
        submitted = self.timed("form submit", browser, "POST", f"/servizi/{SERVICE}", form, 303,
                               location="/pagamento/")
        if submitted is None:
            return
        summary = urlsplit(submitted[0]["location"]).path
        if self.timed("summary", browser, "GET", summary, None, 200) is None:
            return
        self.timed("pay", browser, "POST", summary + "/paga", {"csrf_token": token}, 303,
                   location=f"{self.sandbox}/checkout/")

    def notice(self) -> None:
        browser = Browser(self.port)
        page = self.timed("notice page", browser, "GET", "/avviso", None, 200)
        if page is None:
            return
        nav, fiscal_code = self.rng.choice(self.notices)
        if self.rng.random() < 0.1:
            fiscal_code = "BNCMRA70A41F205Z"  # someone else's: the same "not found" answer
        form = {"csrf_token": _CSRF.search(page[1]).group(1), "codice_avviso": nav, "codice_fiscale": fiscal_code,
                "sito_web": ""}
        self.timed("notice lookup", browser, "POST", "/avviso", form, 200)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self.rng.random() < self.notice_share:
                self.notice()
            else:
                self.spontaneous()


# --- Processes -----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until(process: subprocess.Popen, probe, logfile, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; see {logfile.name}")
        try:
            if probe():
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start in {timeout:.0f} s; see {logfile.name}")


def spawn(command: list[str], env: dict, logfile) -> subprocess.Popen:
    # Our own venv binaries and fixed arguments: no shell, nothing from outside.
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT)  # noqa: S603


def start_sandbox(port: int, paybox_port: int, scratch: Path, logfile) -> subprocess.Popen:
    """The sandbox as pagoPA, under gunicorn: one process (its state is one SQLite file), 8 threads."""
    env = {**os.environ, "SANDBOX_DATABASE": str(scratch / "sandbox.sqlite3"), "SANDBOX_API_KEY": API_KEY,
           "SANDBOX_PUBLIC_URL": f"http://{HOST}:{port}", "SANDBOX_DELIVERY_WORKER": "0",
           "SANDBOX_PAYBOX_SOAP_URL": f"http://{HOST}:{paybox_port}/pagopa/paForNode"}
    process = spawn([str(ROOT / ".venv" / "bin" / "gunicorn"), "--config", "/dev/null", "--workers", "1",
                     "--worker-class", "gthread", "--threads", "8", "--bind", f"{HOST}:{port}",
                     "portal.pagopa.sandbox:create_app()"], env, logfile)
    wait_until(process, lambda: requests.get(f"http://{HOST}:{port}/sandbox/state", timeout=2).ok, logfile,
               "the sandbox")
    return process


def paybox_env(url: str, sandbox: str) -> dict[str, str]:
    """Pay Box's settings for the run: the bench's database, the sandbox as pagoPA, limits the run never reaches."""
    return {
        "PAYBOX_ENV": "development",
        "DATABASE_URL": url,
        "SECRET_KEY": "bench-citizen",
        "PAGOPA_GPD_URL": f"{sandbox}/gpd/debt-positions-service",
        "PAGOPA_CHECKOUT_URL": f"{sandbox}/checkout/ec",
        "PAGOPA_RECEIPTS_URL": f"{sandbox}/gpd/payments-receipts-service/v1",
        "PAGOPA_FDR_URL": f"{sandbox}/fdr-org/service/v1",
        "PAGOPA_API_KEY": API_KEY,
        "CITIZEN_SERVER_TIMING": "1",
        # The limits stay on (every post counts), far above what the run sends from its one address.
        "CITIZEN_RATE_PER_IP_PER_MINUTE": "100000000",
        "CITIZEN_RATE_PER_FISCAL_CODE_PER_HOUR": "100000000",
        # As in production: jobs go to Redis (the pay step enqueues none), no in-process job threads.
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6"),
    }


def start_gunicorn(url: str, port: int, sandbox: str, options: list[str], logfile) -> subprocess.Popen:
    """Pay Box with gunicorn.conf.py (and ``options``); returns once every worker has warmed up."""
    env = {**os.environ, **paybox_env(url, sandbox)}
    if "--workers" in options:
        env.pop("WEB_CONCURRENCY", None)
    workers = next((int(options[i + 1]) for i in range(len(options) - 1) if options[i] == "--workers"),
                   int(env.get("WEB_CONCURRENCY") or max(2, os.cpu_count() or 1)))
    process = spawn([str(ROOT / ".venv" / "bin" / "gunicorn"), "--config", str(ROOT / "gunicorn.conf.py"),
                     *options, "--bind", f"{HOST}:{port}", "--graceful-timeout", "5", "wsgi:app"], env, logfile)

    def ready() -> bool:
        requests.get(f"http://{HOST}:{port}/healthz", timeout=2)
        return Path(logfile.name).read_text().count(" warmed up: ") >= workers

    wait_until(process, ready, logfile, "gunicorn")
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def backends(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]


def cpu_now(gunicorn: subprocess.Popen, sandbox: subprocess.Popen, pids: list[int]) -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"client": usage.ru_utime + usage.ru_stime,
            "gunicorn": sum(map(process_cpu, [gunicorn.pid, *proc_children(gunicorn.pid)])),
            "sandbox": sum(map(process_cpu, [sandbox.pid, *proc_children(sandbox.pid)])),
            "postgres": sum(map(process_cpu, pids)), "machine": machine_cpu()[0]}


#: The Server-Timing metrics printed, in order, with what each one covers.
PHASES = (
    ("queue", "sent -> view starts (connect, listen queue, gunicorn)"),
    ("ratelimit", "the rate counters' transaction"),
    ("position", "pay: the position created with its IUV (ledger)"),
    ("commit", "pay: position and payment committed before pagoPA"),
    ("publish", "pay: published on GPD (sandbox), committed"),
    ("checkout", "pay: Checkout cart opened (sandbox)"),
    ("sql", "SQL statements (all of the view's)"),
    ("gc", "garbage collection pauses"),
    ("app", "the view, wall time"),
    ("cpu", "the view, CPU time of its thread"),
    ("rest", "client total - queue - app (Flask around the view, commit, answer sent, client)"),
    ("client", "what the client measured"),
)


def breakdown(results: "Results") -> list[str]:
    """p50/p95 of each server-side phase, per kind of request (phases a kind never has are left out)."""
    lines = [f"{'server-side, ms':<16}" + "".join(f"{kind[:13]:>15}" for kind in KINDS) + "   (p50/p95)"]
    for name, note in PHASES:
        row, seen = [], False
        for kind in KINDS:
            calls = results.server[kind]
            if name == "rest":
                values = [c["client"] - c.get("queue", 0.0) - c.get("app", 0.0) for c in calls if "app" in c]
            else:
                values = [c[name] for c in calls if name in c]
            seen = seen or bool(values)
            row.append(f"{percentile(values, 50):.1f}/{percentile(values, 95):.1f}" if values else "-")
        if seen:
            lines.append(f"  {name:<14}" + "".join(f"{cell:>15}" for cell in row) + f"   {note}")
    return lines


# --- One pay at a time, profiled ----------------------------------------------------------------------------------


class Meter:
    """WSGI middleware: the CPU time of the thread serving each request it is told to count (the request's whole
    pass through the app, Flask around the view included), the SQL statements and COMMITs it ran (counted by the
    caller's listeners, :meth:`count_statement` and :meth:`count_commit`), and optionally a cProfile of them."""

    def __init__(self, app, counted, profile: bool):
        self.app, self.counted = app, counted
        self.cpu_ms: list[float] = []
        self.statements: list[int] = []
        #: COMMITs of each request counted (also in ``last_sql``)
        self.commits: list[int] = []
        #: the statements of the last request counted
        self.last_sql: list[str] = []
        self.profiler = cpu_profiler() if profile else None
        self.local = threading.local()

    def count_statement(self, _conn, _cursor, statement, *_args) -> None:
        sql = getattr(self.local, "sql", None)
        if sql is not None:
            sql.append(statement)

    def count_commit(self, _conn) -> None:
        self.count_statement(None, None, "COMMIT")

    def __call__(self, environ, start_response):
        if not self.counted(environ):
            return self.app(environ, start_response)
        self.local.sql = self.last_sql = []
        if self.profiler is not None:
            self.profiler.enable()
        start = time.thread_time()
        try:
            return list(self.app(environ, start_response))
        finally:
            self.cpu_ms.append((time.thread_time() - start) * 1000)
            if self.profiler is not None:
                self.profiler.disable()
            commits = self.local.sql.count("COMMIT")
            self.commits.append(commits)
            self.statements.append(len(self.local.sql) - commits)
            self.local.sql = None


def cpu_profiler() -> cProfile.Profile:
    """A profiler that counts the thread's CPU time, not the waits for PostgreSQL or the sandbox."""
    return cProfile.Profile(time.thread_time)


def print_profile(title: str, profiler: cProfile.Profile, calls: int, path: str, top: int) -> None:
    """The ``top`` functions by own time and by cumulative time, per call; the whole stats saved to ``path``."""
    profiler.dump_stats(path)
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(order).print_stats(top)
        log(f"--- {title}: top {top} by {order} over {calls} calls (saved to {path}) ---")
        log(out.getvalue().split("\n\n", 2)[-1].rstrip())


def profile_pays(args) -> None:
    """``--profile N``: N spontaneous journeys one after the other in this process (the Flask test client, the
    sandbox in a thread on a loopback port), with the CPU time and SQL statements of each ``pay``."""
    import logging

    from werkzeug.serving import make_server

    from portal import create_app
    from portal.extensions import db
    from portal.pagopa.sandbox import create_app as create_sandbox

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the dev server's access log: not the sandbox's work
    shm = TMPFS if os.path.isdir(TMPFS) and os.access(TMPFS, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="bench_citizen_", dir=shm) as scratch:
        sandbox_app = create_sandbox({"SANDBOX_DATABASE": str(Path(scratch) / "sandbox.sqlite3"),
                                      "SANDBOX_API_KEY": API_KEY, "SANDBOX_DELIVERY_WORKER": False})
        sandbox_meter = Meter(sandbox_app.wsgi_app, lambda environ: True, args.cprofile is not None)
        sandbox_app.wsgi_app = sandbox_meter
        server = make_server(HOST, 0, sandbox_app, threaded=True)
        sandbox_url = sandbox_app.config["SANDBOX_PUBLIC_URL"] = f"http://{HOST}:{server.server_port}"
        serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        serving.start()
        os.environ.update(paybox_env(args.database_url, sandbox_url))
        app = create_app()
        meter = Meter(app.wsgi_app, lambda environ: environ["PATH_INFO"].endswith("/paga"), False)
        app.wsgi_app = meter
        with app.app_context():
            sa_event.listen(db.engine, "before_cursor_execute", meter.count_statement)
            sa_event.listen(db.engine, "commit", meter.count_commit)
        client = app.test_client()
        rng = random.Random(args.seed)

        def journey(number: int) -> None:
            page = client.get(f"/servizi/{SERVICE}")
            token = _CSRF.search(page.get_data(as_text=True)).group(1)
            form = {"csrf_token": token, "codice_fiscale": rng.choice(PAYERS), "nome": f"Cittadino {number}",
                    "email": "", "tipo_certificato": "Residenza", "_voce": str(rng.randrange(2)), "sito_web": ""}
            submitted = client.post(f"/servizi/{SERVICE}", data=form)
            summary = urlsplit(submitted.headers["Location"]).path
            client.get(summary)
            paid = client.post(summary + "/paga", data={"csrf_token": token})
            if paid.status_code != 303 or "/checkout/" not in paid.headers.get("Location", ""):
                raise RuntimeError(f"pay answered {paid.status_code}: {paid.get_data(as_text=True)[:500]}")

        try:
            for number in range(args.profile_warmup):
                journey(number)
            for m in (meter, sandbox_meter):
                m.cpu_ms.clear()
                m.statements.clear()
                m.commits.clear()
            if meter.profiler is None and args.cprofile is not None:
                meter.profiler = cpu_profiler()
            if sandbox_meter.profiler is not None:
                sandbox_meter.profiler = cpu_profiler()
            pids = backends(args.database_url)
            pg_before = sum(map(process_cpu, pids))
            for number in range(args.profile):
                journey(args.profile_warmup + number)
            pg_ms = (sum(map(process_cpu, pids)) - pg_before) * 1000
        finally:
            server.shutdown()
            serving.join(5)
            server.server_close()
    pays = len(meter.cpu_ms)
    statements = sorted(set(meter.statements))
    log(f"{pays} pays one at a time (after {args.profile_warmup} not counted), load average {load_average()}")
    log(f"Pay Box CPU ms per pay      p50 {percentile(meter.cpu_ms, 50):.2f}   mean "
        f"{sum(meter.cpu_ms) / max(pays, 1):.2f}   p95 {percentile(meter.cpu_ms, 95):.2f}")
    log(f"sandbox CPU ms per pay      {sum(sandbox_meter.cpu_ms) / max(pays, 1):.2f} "
        f"({len(sandbox_meter.cpu_ms) / max(pays, 1):.1f} calls, p50 {percentile(sandbox_meter.cpu_ms, 50):.2f} "
        f"ms per call)")
    log(f"PostgreSQL CPU ms per journey {pg_ms / max(pays, 1):.2f} (all four requests; /proc ticks)")
    log(f"SQL statements per pay      {', '.join(map(str, statements))}, and "
        f"{', '.join(map(str, sorted(set(meter.commits))))} COMMITs (a separate transaction's included)")
    if args.show_sql:
        log("statements of the last pay:")
        for number, statement in enumerate(meter.last_sql, 1):
            log(f"  {number:>2}. {' '.join(statement.split())[:args.show_sql]}")
    if args.cprofile is not None:
        print_profile("Pay Box, pay", meter.profiler, pays, args.cprofile + ".paybox", args.top)
        print_profile("sandbox", sandbox_meter.profiler, len(sandbox_meter.cpu_ms), args.cprofile + ".sandbox",
                      args.top)


# --- Main ----------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50, help="concurrent citizens (default 50)")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring (default 5)")
    parser.add_argument("--think", type=float, default=1.0,
                        help="mean think time between a citizen's requests, seconds (default 1; 0: none)")
    parser.add_argument("--notice-share", type=float, default=0.4,
                        help="share of journeys that look up a notice (default 0.4; the rest pay a form)")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes (default: gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, help="threads per gunicorn worker (default: gunicorn.conf.py's)")
    parser.add_argument("--positions", type=int, default=1000, help="demo positions to load (default 1000)")
    parser.add_argument("--reuse", action="store_true", help="keep the database of an earlier run (no reload)")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--profile", type=int, metavar="N",
                        help="instead of the load: N spontaneous journeys one at a time in this process, printing "
                             "the CPU ms and SQL statements of each pay (Pay Box and the sandbox)")
    parser.add_argument("--profile-warmup", type=int, default=20, help="journeys before --profile counts (20)")
    parser.add_argument("--cprofile", metavar="PATH", help="with --profile: cProfile the pays, print the top "
                                                            "functions, save PATH.paybox and PATH.sandbox")
    parser.add_argument("--show-sql", type=int, nargs="?", const=200, default=0, metavar="CHARS",
                        help="with --profile: print the statements of the last pay (their first CHARS characters)")
    parser.add_argument("--top", type=int, default=30, help="functions printed per --cprofile table (30)")
    args = parser.parse_args()
    if args.clients < 1 or args.duration <= 0 or args.duration > 600:
        parser.error("at least one client, and a duration up to 600 s")

    log(f"{args.clients} citizens for {args.duration:g} s (+{args.warmup:g} s warm-up), think time "
        f"{args.think:g} s, {args.notice_share:.0%} notice journeys; {os.cpu_count()} CPUs, load average "
        f"{load_average()}")
    step = time.perf_counter()
    if not args.reuse:
        recreate_database(args.database_url)
        migrate_and_load(args.database_url, args.positions)
    notices = payable_notices(args.database_url)
    log(f"database {args.database_url.rsplit('/', 1)[1]}: {'reused' if args.reuse else 'migrated, demo loaded'}, "
        f"{len(notices)} payable notices ({time.perf_counter() - step:.1f} s)")
    if args.profile:
        profile_pays(args)
        return

    options: list[str] = []
    for flag, value in (("--workers", args.workers), ("--threads", args.threads)):
        if value is not None:
            options += [flag, str(value)]
    # The sandbox's SQLite file on tmpfs when there is one: pagoPA's stand-in should not wait for the disk.
    # (mkdtemp makes a private directory there.)
    shm = TMPFS if os.path.isdir(TMPFS) and os.access(TMPFS, os.W_OK) else None
    with (tempfile.TemporaryDirectory(prefix="bench_citizen_", dir=shm) as scratch,
          tempfile.NamedTemporaryFile("w", prefix="bench_citizen_sandbox_", suffix=".log", delete=False) as sandbox_log,
          tempfile.NamedTemporaryFile("w", prefix="bench_citizen_web_", suffix=".log", delete=False) as paybox_log):
        port, sandbox_port = free_port(), free_port()
        sandbox_url = f"http://{HOST}:{sandbox_port}"
        sandbox = start_sandbox(sandbox_port, port, Path(scratch), sandbox_log)
        try:
            gunicorn = start_gunicorn(args.database_url, port, sandbox_url, options, paybox_log)
            try:
                log(f"gunicorn --config gunicorn.conf.py {' '.join(options)} on :{port}, sandbox on :{sandbox_port}")
                results = Results()
                stop_event = threading.Event()
                citizens = [Citizen(n, port, sandbox_url, notices, results, think=args.think,
                                    notice_share=args.notice_share, seed=args.seed) for n in range(args.clients)]
                threads = [threading.Thread(target=c.run, args=(stop_event,), daemon=True) for c in citizens]
                for thread in threads:
                    thread.start()
                time.sleep(args.warmup)
                pids = backends(args.database_url)
                load_before, before = load_average(), cpu_now(gunicorn, sandbox, pids)
                results.measuring = True
                started = time.perf_counter()
                time.sleep(args.duration)
                results.measuring = False
                elapsed = time.perf_counter() - started
                after = cpu_now(gunicorn, sandbox, backends(args.database_url))
                load_after = load_average()
                stop_event.set()
                for thread in threads:
                    thread.join(60)
            finally:
                stop(gunicorn)
        finally:
            stop(sandbox)

    log("")
    log(f"{'kind':<16}{'count':>7}{'errors':>8}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'req/s':>8}   (ms)")
    total = 0
    for kind in KINDS:
        values = results.durations[kind]
        failed = sum(results.errors[kind].values())
        total += len(values) + failed
        log(f"{kind:<16}{len(values):>7}{failed:>8}{percentile(values, 50):8.1f}{percentile(values, 95):8.1f}"
            f"{percentile(values, 99):8.1f}{max(values, default=float('nan')):8.1f}{len(values) / elapsed:8.1f}")
    every = [v for kind in KINDS for v in results.durations[kind]]
    log(f"{'all':<16}{len(every):>7}{total - len(every):>8}{percentile(every, 50):8.1f}{percentile(every, 95):8.1f}"
        f"{percentile(every, 99):8.1f}{max(every, default=float('nan')):8.1f}{len(every) / elapsed:8.1f}")
    for kind in KINDS:
        for error, count in results.errors[kind].items():
            log(f"  {kind}: {count} × {error}")
    log("")
    for line in breakdown(results):
        log(line)
    cpu = {key: after[key] - before[key] for key in after}
    other = cpu["machine"] - cpu["client"] - cpu["gunicorn"] - cpu["sandbox"] - cpu["postgres"]
    done = max(total, 1)
    log("")
    log(f"CPU ms per request  client {cpu['client'] * 1000 / done:.2f}   gunicorn {cpu['gunicorn'] * 1000 / done:.2f}"
        f"   postgres {cpu['postgres'] * 1000 / done:.2f}   sandbox {cpu['sandbox'] * 1000 / done:.2f}   "
        f"everything else {other * 1000 / done:.2f}   (machine busy {cpu['machine'] / elapsed:.2f} of "
        f"{os.cpu_count()} cores)")
    log(f"load average        {load_before} before, {load_after} after")
    log(f"database: {database_figures(args.database_url)}")
    log(f"logs: {paybox_log.name} (gunicorn), {sandbox_log.name} (sandbox)")


if __name__ == "__main__":
    main()
