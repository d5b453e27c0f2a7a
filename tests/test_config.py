"""Settings from the environment: production guards (secret key, HSTS, no demo data) and `make run`'s ports."""

import shutil
import subprocess

import pytest

from portal import create_app
from portal.config import ROOT, ConfigError, load_config

STRONG = "k3Jd8-Qw_Zp0vN4xT7rY2mB6cL9sA1eHfGuIoP5"
PRODUCTION = {
    "PAYBOX_ENV": "production", "SECRET_KEY": STRONG, "DATABASE_URL": "postgresql://paybox@db/paybox",
    "REDIS_URL": "redis://redis:6379/0", "PAGOPA_GPD_URL": "https://api.example/gpd",
    "PAGOPA_RECEIPTS_URL": "https://api.example/receipts", "PAGOPA_CHECKOUT_URL": "https://api.example/checkout",
    "PAGOPA_FDR_URL": "https://api.example/fdr", "PAGOPA_API_KEY": "k", "PAGOPA_BROKER_ID": "15376371009",
    "PAGOPA_STATION_ID": "15376371009_01",
}


@pytest.mark.parametrize("secret", ["x", "changeme", "a" * 64, "0123456789" * 4])
def test_production_refuses_a_weak_secret_key(secret):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config({**PRODUCTION, "SECRET_KEY": secret})


def test_production_accepts_a_random_secret_key():
    assert load_config(PRODUCTION)["SECRET_KEY"] == STRONG


def test_development_keeps_its_per_process_key():
    assert len(load_config({"PAYBOX_ENV": "development"})["SECRET_KEY"]) == 64


def production_app():
    config = load_config(PRODUCTION)
    config.update(SQLALCHEMY_DATABASE_URI="sqlite://", JOBS_MODE="manual")
    return create_app(config)


def test_production_answers_with_hsts():
    response = production_app().test_client().get("/officer/login", base_url="https://paybox.example")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_development_sends_no_hsts():
    app = create_app({"PAYBOX_ENV": "testing", "SQLALCHEMY_DATABASE_URI": "sqlite://", "JOBS_MODE": "manual",
                      "SECRET_KEY": "test"})
    assert "Strict-Transport-Security" not in app.test_client().get("/officer/login").headers


def test_demo_load_is_refused_in_production():
    result = production_app().test_cli_runner().invoke(args=["demo", "load"])
    assert result.exit_code != 0
    assert "non si caricano in produzione" in result.output


def test_the_sandbox_and_public_urls_follow_the_ports():
    config = load_config({"PAYBOX_PORT": "5100", "PAYBOX_SANDBOX_PORT": "5101"})
    assert config["PAGOPA_GPD_URL"] == "http://127.0.0.1:5101/gpd/debt-positions-service"
    assert config["PAGOPA_SANDBOX_URL"] == "http://127.0.0.1:5101"
    assert config["PUBLIC_URL"] == "http://127.0.0.1:5100"
    defaults = load_config({})
    assert defaults["PAGOPA_CHECKOUT_URL"].startswith("http://127.0.0.1:5001/")
    assert defaults["PUBLIC_URL"] == "http://127.0.0.1:5000"


def test_make_run_hands_its_ports_to_the_app():
    make = shutil.which("make")
    plan = subprocess.run([make, "-n", "run", "PORT=5100", "SANDBOX_PORT=5101"], cwd=ROOT,  # noqa: S603
                          capture_output=True, text=True, check=True).stdout
    demo = next(line for line in plan.splitlines() if "demo load" in line)
    served = next(line for line in plan.splitlines() if "--port 5100" in line)
    for line in (demo, served):
        assert "PAYBOX_PORT=5100" in line
        assert "PAYBOX_SANDBOX_PORT=5101" in line
    assert "--port 5101" in plan
    assert "http://127.0.0.1:5100/pagopa/paForNode" in plan


def test_the_demo_logins_print_the_right_address(capsys):
    from portal import cli

    app = create_app({**load_config({"PAYBOX_PORT": "5100"}), "PAYBOX_ENV": "testing",
                      "SQLALCHEMY_DATABASE_URI": "sqlite://", "JOBS_MODE": "manual"})
    with app.app_context():
        cli._echo_logins([("admin", "pw", "Amministratore")])
    assert "http://127.0.0.1:5100/officer/" in capsys.readouterr().out
