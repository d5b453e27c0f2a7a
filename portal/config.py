"""Settings, read only from the environment (documented in ``.env.example``).

Production mode (``PAYBOX_ENV=production``) refuses to start without the secrets and services it
needs; development mode (the laptop demo) falls back to SQLite under ``instance/`` and in-process jobs.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """A required setting is missing or invalid."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(env: dict, key: str, default: int) -> int:
    raw = env.get(key)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{key} must be an integer, got {raw!r}") from exc


def _float(env: dict, key: str, default: float) -> float:
    raw = env.get(key)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{key} must be a number, got {raw!r}") from exc


def _list(raw: str | None) -> list[str]:
    return [item.strip() for item in (raw or "").split(",") if item.strip()]


#: Settings that must be set explicitly in production (no safe default exists for them).
REQUIRED_IN_PRODUCTION = (
    "SECRET_KEY", "DATABASE_URL", "REDIS_URL",
    "PAGOPA_GPD_URL", "PAGOPA_RECEIPTS_URL", "PAGOPA_CHECKOUT_URL", "PAGOPA_FDR_URL", "PAGOPA_API_KEY",
    "PAGOPA_BROKER_ID", "PAGOPA_STATION_ID",
)

#: Where the pagoPA sandbox (``portal/pagopa/sandbox``) and Pay Box listen in the laptop demo by default
#: (``make run PORT=… SANDBOX_PORT=…`` moves both: it passes ``PAYBOX_PORT``, ``PAYBOX_SANDBOX_PORT`` and
#: ``PAYBOX_HOST``, which the URLs below follow).
DEFAULT_SANDBOX_PORT = 5001
DEFAULT_PORT = 5000
#: Shortest SECRET_KEY accepted in production, in bytes.
SECRET_KEY_MIN_BYTES = 32


def check_secret_key(secret: str) -> None:
    """A production secret signs every session cookie and CSRF token: at least 32 bytes that look random.

    :raise ConfigError: for a short key or one with too few distinct characters (``xxxx…``, ``1234…``).
    """
    hint = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
    if len(secret.encode()) < SECRET_KEY_MIN_BYTES:
        raise ConfigError(f"SECRET_KEY must be at least {SECRET_KEY_MIN_BYTES} random bytes; {hint}")
    if len(set(secret)) < 16:
        raise ConfigError(f"SECRET_KEY does not look random (too few distinct characters); {hint}")


def load_config(env: dict | None = None) -> dict:
    """Build the Flask config mapping from environment variables.

    :param env: the environment to read (``os.environ`` when omitted), so tests can pass their own.
    :raise ConfigError: in production mode when a required setting is missing.
    """
    env = dict(os.environ if env is None else env)
    mode = env.get("PAYBOX_ENV", "development")
    if mode not in {"development", "production", "testing"}:
        raise ConfigError(f"PAYBOX_ENV must be development, production or testing, got {mode!r}")
    if mode == "production":
        missing = [key for key in REQUIRED_IN_PRODUCTION if not env.get(key)]
        if missing:
            raise ConfigError("missing required settings: " + ", ".join(missing))
    secret = env.get("SECRET_KEY")
    if mode == "production":
        check_secret_key(secret)
    if not secret:
        # Development only: a per-process random key (sessions end at restart; nothing is shipped).
        secret = os.urandom(32).hex()
    database_url = database_uri(env.get("DATABASE_URL") or f"sqlite:///{ROOT / 'instance' / 'paybox.db'}")
    host = env.get("PAYBOX_HOST") or "127.0.0.1"
    sandbox_url = f"http://{host}:{_int(env, 'PAYBOX_SANDBOX_PORT', DEFAULT_SANDBOX_PORT)}"
    session_hours = _int(env, "SESSION_LIFETIME_HOURS", 8)
    return {
        "PAYBOX_ENV": mode,
        # Where officers reach this installation (printed by `flask demo load`, used in links sent by e-mail).
        "PUBLIC_URL": env.get("PAYBOX_PUBLIC_URL") or f"http://{host}:{_int(env, 'PAYBOX_PORT', DEFAULT_PORT)}",
        "SECRET_KEY": secret,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(database_url),
        "REDIS_URL": env.get("REDIS_URL") or None,
        # rq | thread | manual; empty: rq with REDIS_URL, manual when testing, else in-process threads.
        "JOBS_MODE": env.get("PAYBOX_JOBS_MODE") or None,
        "PERMANENT_SESSION_LIFETIME": session_hours * 3600,
        # An officer idle this long is logged out (polling components do not count as activity).
        "SESSION_IDLE_MINUTES": _int(env, "SESSION_IDLE_MINUTES", 30),
        # Long-open back-office pages must not fail on submit before the session itself ends.
        "WTF_CSRF_TIME_LIMIT": session_hours * 3600,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": mode == "production",
        "REMEMBER_COOKIE_SECURE": mode == "production",
        "BABEL_DEFAULT_LOCALE": env.get("PAYBOX_LOCALE", "it"),
        "BABEL_DEFAULT_TIMEZONE": "Europe/Rome",
        # The catalogues (``make translations``) and the languages a visitor may pick (``?lang=de``).
        "BABEL_TRANSLATION_DIRECTORIES": str(ROOT / "translations"),
        "LANGUAGES": ("it", "de", "en"),
        "LOGIN_MAX_FAILURES": _int(env, "LOGIN_MAX_FAILURES", 5),
        "LOGIN_LOCKOUT_MINUTES": _int(env, "LOGIN_LOCKOUT_MINUTES", 15),
        "LOGIN_MAX_FAILURES_PER_IP": _int(env, "LOGIN_MAX_FAILURES_PER_IP", 30),
        "POSITIONS_PAGE_SIZE": _int(env, "POSITIONS_PAGE_SIZE", 50),
        # Largest request body accepted (uploads); bigger requests get 413 before any view reads them.
        "MAX_CONTENT_LENGTH": _int(env, "MAX_UPLOAD_MB", 64) * 1024 * 1024,
        # pagoPA, through the technological intermediary. Development defaults point at the local sandbox;
        # UAT or production is only a matter of changing these variables.
        "PAGOPA_GPD_URL": env.get("PAGOPA_GPD_URL") or f"{sandbox_url}/gpd/debt-positions-service",
        "PAGOPA_RECEIPTS_URL": env.get("PAGOPA_RECEIPTS_URL") or f"{sandbox_url}/gpd/payments-receipts-service/v1",
        "PAGOPA_CHECKOUT_URL": env.get("PAGOPA_CHECKOUT_URL") or f"{sandbox_url}/checkout/ec",
        "PAGOPA_FDR_URL": env.get("PAGOPA_FDR_URL") or f"{sandbox_url}/fdr-org/service/v1",
        "PAGOPA_API_KEY": env.get("PAGOPA_API_KEY") or ("sandbox-key" if mode != "production" else None),
        "PAGOPA_BROKER_ID": env.get("PAGOPA_BROKER_ID") or None,
        "PAGOPA_STATION_ID": env.get("PAGOPA_STATION_ID") or None,
        "PAGOPA_TIMEOUT_SECONDS": _float(env, "PAGOPA_TIMEOUT_SECONDS", 10.0),
        # The sandbox's PSP counter, linked from the position page so a tester can pay a notice (never in production).
        "PAGOPA_SANDBOX_URL": None if mode == "production" else (
            env.get("PAGOPA_SANDBOX_URL") or (None if env.get("PAGOPA_GPD_URL") else sandbox_url)),
        # Who may call POST /pagopa/paForNode besides the idPA/idBrokerPA/idStation check: an allow-list of
        # client addresses (comma-separated IPs or CIDRs) and a header a TLS-terminating proxy adds.
        "PAGOPA_SOAP_ALLOWED_IPS": _list(env.get("PAGOPA_SOAP_ALLOWED_IPS")),
        "PAGOPA_SOAP_REQUIRED_HEADER": env.get("PAGOPA_SOAP_REQUIRED_HEADER") or None,
        # Seconds a creditor looked up for the node's calls is reused in a process (0: no cache).
        "PAGOPA_CREDITOR_CACHE_SECONDS": _float(env, "PAGOPA_CREDITOR_CACHE_SECONDS", 60.0),
        # A Server-Timing header on the node's calls (where the time went: parse, XSD, SQL, commit...), for
        # bench/receipts.py and for diagnosing a slow installation; off by default.
        "PAGOPA_SERVER_TIMING": _bool(env.get("PAGOPA_SERVER_TIMING")),
        # The same breakdown on the citizens' portal's answers (bench/citizen.py reads it).
        "CITIZEN_SERVER_TIMING": _bool(env.get("CITIZEN_SERVER_TIMING")),
        # Bill runs: where chunks and packages are written (a volume every worker and web node shares when they
        # run on several machines), notices per chunk job, and what the print index says.
        "NOTICES_DIR": env.get("NOTICES_DIR") or str(ROOT / "instance" / "notices"),
        "NOTICES_CHUNK_SIZE": _int(env, "NOTICES_CHUNK_SIZE", 1000),
        "NOTICES_PRINT_DUPLEX": _bool(env.get("NOTICES_PRINT_DUPLEX")),
        "NOTICES_POSTAL_PRODUCT": env.get("NOTICES_POSTAL_PRODUCT") or "POSTA_MASSIVA",
        "NOTICES_RETENTION_DAYS": _int(env, "NOTICES_RETENTION_DAYS", 90),
        # Bulk uploads (Importazioni): where each uploaded file is kept with its report (a volume shared by the
        # web nodes and the workers, like NOTICES_DIR); the largest file is MAX_UPLOAD_MB.
        "IMPORTS_DIR": env.get("IMPORTS_DIR") or str(ROOT / "instance" / "imports"),
        # Reporting flows (FdR): a receipt paid this many days ago that no flow reported yet becomes an anomaly on
        # the Rendicontazione page (0: never). PSPs report within a few working days.
        "FDR_UNREPORTED_DAYS": _int(env, "FDR_UNREPORTED_DAYS", 10),
        # Webhooks to the Comune's systems: seconds a receiver has to answer; whether outbound calls may reach
        # private and loopback addresses (refused in production unless set: SSRF); seconds a claimed delivery is
        # held by its worker before another may retry it; deliveries per claim and parallel calls per worker; seconds
        # a delivery job keeps looking for new due deliveries before it ends (a steady stream is served by one job,
        # not a new work horse per payment); delivery jobs that may run at once (a full claim asks for one more).
        "WEBHOOKS_TIMEOUT_SECONDS": _float(env, "WEBHOOKS_TIMEOUT_SECONDS", 5.0),
        "WEBHOOKS_ALLOW_PRIVATE": _bool(env.get("WEBHOOKS_ALLOW_PRIVATE"), default=mode != "production"),
        "WEBHOOKS_LEASE_SECONDS": _int(env, "WEBHOOKS_LEASE_SECONDS", 60),
        "WEBHOOKS_BATCH": _int(env, "WEBHOOKS_BATCH", 100),
        "WEBHOOKS_THREADS": _int(env, "WEBHOOKS_THREADS", 8),
        "WEBHOOKS_LINGER_SECONDS": _float(env, "WEBHOOKS_LINGER_SECONDS", 2.0),
        "WEBHOOKS_LANES": _int(env, "WEBHOOKS_LANES", 2),
        # Citizens' portal: how long a citizen waits for pagoPA before being offered a retry (the publication goes
        # on in the background), and how many form posts and notice look-ups a client address may make per minute
        # and a fiscal code per hour.
        "CITIZEN_PAGOPA_TIMEOUT_SECONDS": _float(env, "CITIZEN_PAGOPA_TIMEOUT_SECONDS", 4.0),
        "CITIZEN_RATE_PER_IP_PER_MINUTE": _int(env, "CITIZEN_RATE_PER_IP_PER_MINUTE", 30),
        "CITIZEN_RATE_PER_FISCAL_CODE_PER_HOUR": _int(env, "CITIZEN_RATE_PER_FISCAL_CODE_PER_HOUR", 20),
        # Days after which a spontaneous payment never paid has its position cancelled (0: never). Its notice is
        # due 10 days after the citizen pressed "Paga con pagoPA".
        "CITIZEN_ABANDONED_DAYS": _int(env, "CITIZEN_ABANDONED_DAYS", 30),
        # Outgoing e-mail (notices to debtors). Without MAIL_SERVER, development writes each message as an .eml
        # file under MAIL_OUTBOX_DIR instead of sending it; production refuses to send without a server.
        "MAIL_SERVER": env.get("MAIL_SERVER") or None,
        "MAIL_PORT": _int(env, "MAIL_PORT", 25),
        "MAIL_USERNAME": env.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD") or None,
        "MAIL_USE_TLS": _bool(env.get("MAIL_USE_TLS")),
        "MAIL_USE_SSL": _bool(env.get("MAIL_USE_SSL")),
        "MAIL_TIMEOUT_SECONDS": _float(env, "MAIL_TIMEOUT_SECONDS", 30.0),
        "MAIL_FROM": env.get("MAIL_FROM") or "Pay Box <noreply@paybox.localhost>",
        "MAIL_OUTBOX_DIR": None if mode == "production" else (
            env.get("MAIL_OUTBOX_DIR") or str(ROOT / "instance" / "outbox")),
        # Operations. GET /metrics (Prometheus) asks for "Authorization: Bearer <METRICS_TOKEN>"; without a token
        # it answers only calls from this machine that came through no proxy (see portal/ops/views.py).
        "METRICS_TOKEN": env.get("METRICS_TOKEN") or None,
        # Reverse proxies in front of gunicorn whose X-Forwarded-For/-Proto to believe (the deploy kit's nginx: 1).
        # With 0 every client looks like the proxy's address (login throttling per address, the SOAP allow-list).
        "TRUSTED_PROXIES": _int(env, "PAYBOX_TRUSTED_PROXIES", 0),
        # /readyz fails when the active scheduler's last heartbeat is older than this (0: not checked) ...
        "READYZ_SCHEDULER_SECONDS": _int(env, "READYZ_SCHEDULER_SECONDS", 180),
        # ... or when more jobs than this wait in the RQ queues altogether (0: not checked).
        "READYZ_MAX_QUEUED": _int(env, "READYZ_MAX_QUEUED", 10000),
    }


def database_uri(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs (SQLAlchemy would otherwise look for psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _engine_options(database_url: str) -> dict:
    if database_url.startswith("sqlite"):
        # Wait for the writer instead of failing at once when a job and a request overlap.
        return {"connect_args": {"timeout": 30}}
    # No pool_pre_ping: a round trip on every checkout. create_app pings only connections that sat idle (see
    # portal.extensions.ping_idle_connections).
    return {}
