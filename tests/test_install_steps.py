"""The deploy kit's steps executed as a machine would (issue 15; no container runtime or systemd here): the env
template filled in, `deploy/paybox db upgrade`, then the web, worker and scheduler started with the ExecStart lines of
their systemd units (the web on a socket handed over as systemd's socket activation does); `/readyz` answers 200.
Everything is then killed at once, as a crash or a power cut would, and started again: ready again, nothing lost.
The boot links of the units are made offline (`systemctl --root`), as install.sh does in an image."""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
import requests

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def exec_start(unit: str) -> str:
    """The unit's command, with the installation's paths moved to this checkout and the specifiers filled in."""
    line = next(line for line in (UNITS / unit).read_text().splitlines() if line.startswith("ExecStart="))
    command = line.removeprefix("ExecStart=").replace("/opt/paybox/app", str(ROOT))
    return command.replace("%H", socket.gethostname()).replace("%i", "1")


@pytest.fixture
def installation(tmp_path):
    """A database of its own and the env file of deploy/paybox.env.example, filled in as install.sh asks."""
    name = f"paybox_install_{os.getpid()}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    values = {
        "SECRET_KEY": secrets.token_urlsafe(48), "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}",
        "REDIS_URL": REDIS_URL, "PAYBOX_PUBLIC_URL": "https://paybox.example.it",
        **{key: "http://127.0.0.1:9/unreachable" for key in ("PAGOPA_GPD_URL", "PAGOPA_RECEIPTS_URL",
                                                               "PAGOPA_CHECKOUT_URL", "PAGOPA_FDR_URL")},
        "PAGOPA_API_KEY": "install-test", "PAGOPA_BROKER_ID": "15376371009", "PAGOPA_STATION_ID": "15376371009_01",
        "NOTICES_DIR": str(tmp_path / "notices"), "IMPORTS_DIR": str(tmp_path / "imports"),
    }
    lines = []
    for line in (DEPLOY / "paybox.env.example").read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={values.pop(key)}" if key in values and "=" in line else line)
    lines += [f"{key}={value}" for key, value in values.items()]
    env_file = tmp_path / "paybox.env"
    env_file.write_text("\n".join(lines) + "\n")
    (tmp_path / "metrics").mkdir()
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    yield env_file
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def paybox(env_file: Path, *args: str) -> subprocess.CompletedProcess:
    """``deploy/paybox ARGS``: the wrapper install.sh puts in /usr/local/bin, run as the current user."""
    env = {**os.environ, "PAYBOX_APP_DIR": str(ROOT), "PAYBOX_ENV_FILE": str(env_file),
           "PAYBOX_USER": getpass.getuser()}
    return subprocess.run([str(DEPLOY / "paybox"), *args], env=env, capture_output=True, text=True,  # noqa: S603
                          timeout=300)


def start(env_file: Path, command: str, *, listen: socket.socket | None = None) -> subprocess.Popen:
    """Start ``command`` with the env file read as systemd's EnvironmentFile= would (in a process group of its own);
    ``listen`` is handed over on fd 3 with LISTEN_FDS/LISTEN_PID, as systemd's socket activation does."""
    metrics = env_file.parent / "metrics"
    script = (f'set -a; . "{env_file}"; set +a; export PROMETHEUS_MULTIPROC_DIR="{metrics}" PAYBOX_WORKER_QUEUES=; '
              + ('export LISTEN_FDS=1 LISTEN_PID=$$; ' if listen else '') + f"exec {command}")

    def hand_over():
        os.setsid()
        if listen is not None:
            os.dup2(listen.fileno(), 3)

    with open(env_file.parent / "processes.log", "ab") as log:  # the child keeps its own copy
        return subprocess.Popen([shutil.which("bash"), "-c", script], cwd=ROOT,  # noqa: S603
                                preexec_fn=hand_over,  # noqa: PLW1509
                                # fd 3 is kept: the socket is put there by hand_over (before the other fds close)
                                pass_fds=(3,) if listen else (), stdout=log, stderr=log)


def kill_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def wait_ready(url: str, seconds: float = 90) -> dict:
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        try:
            answer = requests.get(f"{url}/readyz", timeout=5)
            last = answer.json()
            if answer.status_code == 200:
                return last
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1)
    raise AssertionError(f"not ready in {seconds} s: {last}")


def log_tail(env_file: Path) -> str:
    path = env_file.parent / "processes.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def test_the_units_commands_bring_pay_box_up_and_back_after_a_crash(installation, tmp_path):
    migrated = paybox(installation, "db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    ente = paybox(installation, "creditors", "create", "80015010723", "--name", "Comune di Prova",
                  "--segregation-code", "01", "--iban", "IT60X0542811101000000123456")
    assert ente.returncode == 0, ente.stderr[-2000:]
    created = paybox(installation, "users", "create", "amministratore", "--name", "Amministratore",
                     "--role", "admin", "--password", "una-password-lunga-2027")
    assert created.returncode == 0, created.stderr[-2000:]
    listen = socket.socket()
    listen.bind(("127.0.0.1", 0))
    listen.listen(64)
    url = f"http://127.0.0.1:{listen.getsockname()[1]}"
    commands = [exec_start("paybox-web.service"), exec_start("paybox-worker@.service"),
                exec_start("paybox-scheduler.service")]
    processes = [start(installation, commands[0], listen=listen)] + [start(installation, c) for c in commands[1:]]
    try:
        try:
            ready = wait_ready(url)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log_tail(installation)}") from None
        assert all(check["ok"] for check in ready["checks"].values()), ready
        kill_all(processes)  # a crash: no process says goodbye
        processes = [start(installation, commands[0], listen=listen)] + [start(installation, c)
                                                                            for c in commands[1:]]
        again = wait_ready(url)
        assert all(check["ok"] for check in again["checks"].values()), again
        # The back office answers (its login needs HTTPS in production: the session cookie is Secure).
        assert requests.get(f"{url}/officer/login", timeout=10).status_code == 200
    finally:
        kill_all(processes)
        listen.close()
    current = paybox(installation, "db", "current")
    assert "(head)" in current.stdout, current.stdout + current.stderr
    database = next(line.split("=", 1)[1] for line in installation.read_text().splitlines()
                    if line.startswith("DATABASE_URL="))
    with psycopg.connect(database) as conn:  # what was there before the crash is there after it
        assert conn.execute("SELECT username FROM users").fetchall() == [("amministratore",)]
        assert conn.execute("SELECT fiscal_code FROM creditors").fetchall() == [("80015010723",)]


def test_the_units_are_enabled_for_boot_offline(tmp_path):
    if shutil.which("systemctl") is None:
        pytest.skip("systemctl not installed (apt-get install systemd)")
    target = tmp_path / "root" / "etc" / "systemd" / "system"
    target.mkdir(parents=True)
    for unit in UNITS.iterdir():
        if unit.suffix in (".service", ".socket", ".target", ".timer"):
            shutil.copy(unit, target / unit.name)
    units = ["paybox.target", "paybox-web.socket", "paybox-web.service", "paybox-scheduler.service",
             "paybox-backup.timer", "paybox-worker@1.service", "paybox-worker@2.service"]
    done = subprocess.run([shutil.which("systemctl"), f"--root={tmp_path / 'root'}", "enable", *units],  # noqa: S603
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    links = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_symlink()}
    wanted = {link for link in links if re.search(r"\.wants/", link)}
    for unit in ("paybox-web.socket", "paybox-web.service", "paybox-scheduler.service", "paybox-worker@1.service",
                 "paybox-worker@2.service"):
        assert any(link.endswith("/" + unit) for link in wanted), (unit, sorted(links))
