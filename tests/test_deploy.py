"""The deploy kit (``deploy/``): scripts that parse, systemd units that ``systemd-analyze verify`` accepts, an env
template that lists every setting the app reads and is read alike by systemd and bash, an nginx site that
renders to a complete configuration (checked by ``nginx -t`` when nginx is installed)."""

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = sorted(p for p in (DEPLOY / "systemd").iterdir() if p.suffix in {".service", ".socket", ".target", ".timer"})
SCRIPTS = [DEPLOY / "install.sh", DEPLOY / "backup.sh", DEPLOY / "restore.sh", DEPLOY / "paybox",
           DEPLOY / "nginx" / "render.sh"]
#: Settings of the template that portal/config.py does not read: gunicorn's and backup.sh's.
NOT_IN_CONFIG = {"WEB_CONCURRENCY", "BACKUP_DIR", "BACKUP_RETENTION_DAYS", "BACKUP_NOTICES"}
#: Read by config.py but meaningless in the deploy kit's template: the test suite's own.
TESTS_ONLY: set[str] = set()


def settings_read_by_config() -> set[str]:
    """Every environment variable portal/config.py reads: ``env.get("X")``, ``_int(env, "X", ...)``, ..."""
    tree = ast.parse((ROOT / "portal" / "config.py").read_text(encoding="utf-8"))
    keys = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        args = node.args
        is_get = isinstance(node.func, ast.Attribute) and node.func.attr == "get" and \
            isinstance(node.func.value, ast.Name) and node.func.value.id == "env"
        is_helper = isinstance(node.func, ast.Name) and node.func.id in {"_int", "_float"} and len(args) >= 2 \
            and isinstance(args[0], ast.Name) and args[0].id == "env"
        key = args[0] if is_get and args else args[1] if is_helper else None
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            keys.add(key.value)
    return keys


def template_keys(path: Path) -> set[str]:
    """``KEY`` of every ``KEY=`` or ``#KEY=`` line."""
    return {m.group(1) for m in re.finditer(r"^#?([A-Z][A-Z0-9_]*)=", path.read_text(encoding="utf-8"), re.M)}


def test_the_config_reader_finds_the_settings():
    keys = settings_read_by_config()
    assert {"SECRET_KEY", "MAX_UPLOAD_MB", "PAYBOX_SANDBOX_PORT", "METRICS_TOKEN", "PAYBOX_TRUSTED_PROXIES"} <= keys


@pytest.mark.parametrize("template", [DEPLOY / "paybox.env.example", ROOT / ".env.example"])
def test_env_templates_list_every_setting(template):
    read = settings_read_by_config() - TESTS_ONLY
    listed = template_keys(template)
    assert sorted(read - listed) == [], f"{template.name} misses settings that portal/config.py reads"
    if template.parent == DEPLOY:
        assert sorted(listed - read - NOT_IN_CONFIG) == [], "settings nobody reads"


def test_deploy_env_template_reads_the_same_in_bash(tmp_path):
    """systemd's EnvironmentFile= and bash (`paybox`, install.sh) must see the same values: no unquoted spaces."""
    template = DEPLOY / "paybox.env.example"
    for number, line in enumerate(template.read_text(encoding="utf-8").splitlines(), start=1):
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"line {number}: {line}"
            assert " " not in value or (value.startswith('"') and value.endswith('"')), f"line {number}: {line}"
    out = subprocess.run(["bash", "-c", 'set -euo pipefail; set -a; . "$0"; set +a; printf "%s|%s" "$MAIL_FROM" '  # noqa: S603,S607
                          '"$PAYBOX_ENV"', str(template)], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout == "Pay Box <noreply@comune.example.it>|production"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_are_executable(script):
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)  # noqa: S603,S607
    assert os.access(script, os.X_OK), f"chmod +x {script.relative_to(ROOT)}"
    assert script.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text(encoding="utf-8")


def test_shellcheck_finds_nothing():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    done = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], capture_output=True, text=True, timeout=60)  # noqa: S603,S607
    assert done.returncode == 0, done.stdout


def test_systemd_units_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    # The units name /opt/paybox/app; here the executables are this checkout's (verify checks they exist).
    for unit in UNITS:
        (tmp_path / unit.name).write_text(unit.read_text(encoding="utf-8").replace("/opt/paybox/app", str(ROOT)),
                                          encoding="utf-8")
    shutil.copy(tmp_path / "paybox-worker@.service", tmp_path / "paybox-worker@1.service")
    names = [p.name for p in sorted(tmp_path.iterdir()) if p.name != "paybox-worker@.service"]
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path,  # noqa: S603,S607
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # verify only warns about an unknown key or section ("..., ignoring"): any output at all is a finding.
    assert (done.stdout + done.stderr).strip() == ""


def unit(name: str) -> str:
    return (DEPLOY / "systemd" / name).read_text(encoding="utf-8")


def test_units_say_what_the_issue_asks():
    web = unit("paybox-web.service")
    assert "gunicorn -c /opt/paybox/app/gunicorn.conf.py" in web
    assert "Requires=paybox-web.socket" in web
    assert "Restart=always" in web
    worker = unit("paybox-worker@.service")
    assert "Nice=10" in worker
    assert "rq worker --name %H-%i" in worker
    assert "KillMode=mixed" in worker
    assert "rq scheduler" in unit("paybox-scheduler.service")
    for name in ("paybox-web.service", "paybox-worker@.service", "paybox-scheduler.service"):
        text = unit(name)
        assert "EnvironmentFile=/etc/paybox/paybox.env" in text
        assert "Environment=PROMETHEUS_MULTIPROC_DIR=/run/paybox/metrics" in text
        assert "User=paybox" in text
        assert "PartOf=paybox.target" in text
        assert "WantedBy=paybox.target" in text
    assert "d /run/paybox/metrics" in unit("paybox.tmpfiles")
    assert "Persistent=true" in unit("paybox-backup.timer")


def render(tmp_path: Path, max_mb: str = "64") -> str:
    allow = tmp_path / "soap-allow.conf"
    shutil.copy(DEPLOY / "nginx" / "soap-allow.conf", allow)
    done = subprocess.run([str(DEPLOY / "nginx" / "render.sh"), "paybox.comune.example", str(tmp_path / "c.pem"),  # noqa: S603
                           str(tmp_path / "k.pem"), max_mb, str(ROOT), str(allow)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_nginx_site_renders(tmp_path):
    site = render(tmp_path, "25")
    assert "@" not in re.sub(r"#.*", "", site), "a placeholder was left"
    assert "client_max_body_size 25m;" in site
    assert 'add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;' in site
    soap = site[site.index("location = /pagopa/paForNode"):]
    soap = soap[:soap.index("}")]
    assert f"include {tmp_path / 'soap-allow.conf'};" in soap
    assert "deny all;" in soap
    assert 'add_header Cache-Control "public, max-age=31536000, immutable" always;' in site
    assert f"root {ROOT};" in site
    assert "return 301 https://$host$request_uri;" in site
    bad = subprocess.run([str(DEPLOY / "nginx" / "render.sh"), "x", "c", "k", "64MB", "/a", "/b"],  # noqa: S603
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2
    assert "MAX_UPLOAD_MB" in bad.stderr


def test_nginx_accepts_the_site(tmp_path):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.skip("nginx not installed (apt-get install nginx): the site is rendered but not checked by nginx -t")
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed: no certificate for nginx -t")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",  # noqa: S603,S607
                    "/CN=paybox.comune.example", "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem")],
                   check=True, capture_output=True, timeout=60)
    (tmp_path / "site.conf").write_text(render(tmp_path), encoding="utf-8")
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n include /etc/nginx/mime.types;\n access_log off;\n include {tmp_path}/site.conf;\n}}\n",
        encoding="utf-8")
    text = (tmp_path / "site.conf").read_text(encoding="utf-8").replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "site.conf").write_text(text, encoding="utf-8")
    done = subprocess.run([nginx, "-t", "-q", "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],  # noqa: S603
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_install_script_runs_the_steps_in_order():
    """Migrations before any service restarts; units enabled; readiness waited for; nothing is started before
    the required settings are there."""
    text = (DEPLOY / "install.sh").read_text(encoding="utf-8")
    text = text[text.index("set -euo pipefail"):]  # the code, not the header that describes it
    order = ["apt-get install", "adduser --system", "make -C \"$APP_DIR\" install assets", "exit 3",
             "createdb --owner", "paybox db upgrade", "systemctl enable \"${units[@]}\"",
             "systemctl restart paybox-web.service", "nginx -t", "/readyz", "paybox doctor"]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    for package in ("python3-venv", "postgresql", "redis-server", "nginx", "npm"):
        assert package in text
    # An upgrade restarts gunicorn, never the socket that holds the node's calls meanwhile.
    assert "restart paybox-web.socket" not in text
