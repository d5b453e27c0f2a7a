"""``flask doctor``: is this installation set up to work? Configuration, the services it needs, the intermediary
and our own SOAP endpoint, each checked and explained, so an IT supplier finds a wrong key before a citizen does.

Plain Python: :func:`diagnose` takes the configuration mapping, an engine, a Redis connection (or ``None``), the
creditors' fiscal codes, and the clients to use; it returns :class:`Finding` rows. Nothing it calls changes
anything: GPD is asked for its ``/info`` and one page of each creditor's positions, the SOAP endpoint gets a
paSendRTV2 for an idPA no creditor has (answered KO ``PAA_ID_DOMINIO_ERRATO``, stored nowhere).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
from sqlalchemy.engine import Engine

from portal.config import ConfigError, check_secret_key
from portal.ops import health
from portal.pagopa import soap
from portal.pagopa.errors import PagoPAError, PagoPAUnavailable
from portal.pagopa.gpd import GPDClient

OK, WARN, FAIL = "ok", "warn", "fail"
#: How each level is printed.
MARKS = {OK: "OK  ", WARN: "WARN", FAIL: "FAIL"}
#: Hosts that mean "the local sandbox", never right in production.
SANDBOX_HINTS = ("127.0.0.1:5001", "localhost:5001", "/sandbox")


@dataclass(frozen=True)
class Finding:
    """One thing checked: its name, ``ok``/``warn``/``fail``, and what to do about it."""

    name: str
    level: str
    detail: str

    def line(self) -> str:
        return f"[{MARKS[self.level]}] {self.name}: {self.detail}"


def failed(findings: Iterable[Finding]) -> bool:
    """Whether any finding is a failure (the command then exits non-zero)."""
    return any(f.level == FAIL for f in findings)


# --- Configuration ----------------------------------------------------------------------------------------------


def check_configuration(config: Mapping) -> list[Finding]:
    """What can be told from the settings alone."""
    production = config.get("PAYBOX_ENV") == "production"
    found = [Finding("PAYBOX_ENV", OK if production else WARN,
                     config.get("PAYBOX_ENV", "development") + ("" if production else
                                                                ": non è la configurazione di produzione"))]
    secret = config.get("SECRET_KEY") or ""
    try:
        check_secret_key(secret)
        found.append(Finding("SECRET_KEY", OK, "lunga e varia abbastanza"))
    except ConfigError as exc:
        found.append(Finding("SECRET_KEY", FAIL if production else WARN, str(exc)))
    database = str(config.get("SQLALCHEMY_DATABASE_URI") or "")
    if database.startswith("sqlite"):
        found.append(Finding("DATABASE_URL", WARN if production else OK,
                             "SQLite: solo per le installazioni più piccole, su una sola macchina"))
    else:
        found.append(Finding("DATABASE_URL", OK, database.split("://", 1)[0]))
    public = str(config.get("PUBLIC_URL") or "")
    if production and not public.startswith("https://"):
        found.append(Finding("PAYBOX_PUBLIC_URL", FAIL, f"{public or '(vuoto)'}: in produzione deve essere https://"))
    else:
        found.append(Finding("PAYBOX_PUBLIC_URL", OK, public))
    for key in ("PAGOPA_GPD_URL", "PAGOPA_RECEIPTS_URL", "PAGOPA_CHECKOUT_URL", "PAGOPA_FDR_URL"):
        url = str(config.get(key) or "")
        if not url:
            found.append(Finding(key, FAIL, "non impostato"))
        elif production and any(hint in url for hint in SANDBOX_HINTS):
            found.append(Finding(key, FAIL, f"{url}: punta al sandbox locale, non all'intermediario"))
        elif production and not url.startswith("https://"):
            found.append(Finding(key, FAIL, f"{url}: in produzione deve essere https://"))
        else:
            found.append(Finding(key, OK, url))
    for key in ("PAGOPA_BROKER_ID", "PAGOPA_STATION_ID"):
        found.append(Finding(key, OK, config[key]) if config.get(key) else
                     Finding(key, FAIL if production else WARN, "non impostato: le chiamate del nodo non sono "
                             "confrontate con il nostro intermediario e la nostra stazione"))
    found.extend(_soap_protection(config, production))
    found.append(_notices_dir(config.get("NOTICES_DIR")))
    if not config.get("MAIL_SERVER"):
        found.append(Finding("MAIL_SERVER", WARN if production else OK,
                             "non impostato: gli avvisi non possono essere inviati per e-mail"))
    else:
        found.append(Finding("MAIL_SERVER", OK, f"{config['MAIL_SERVER']}:{config.get('MAIL_PORT')}"))
    found.append(Finding("METRICS_TOKEN", OK, "impostato") if config.get("METRICS_TOKEN") else
                 Finding("METRICS_TOKEN", WARN if production else OK,
                         "non impostato: /metrics risponde solo alle chiamate da questa macchina senza proxy"))
    return found


def _soap_protection(config: Mapping, production: bool) -> list[Finding]:
    found = []
    allowed = list(config.get("PAGOPA_SOAP_ALLOWED_IPS") or ())
    bad = []
    for entry in allowed:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            bad.append(entry)
    if bad:
        found.append(Finding("PAGOPA_SOAP_ALLOWED_IPS", FAIL, f"non sono indirizzi IP o reti: {', '.join(bad)}"))
    elif allowed:
        found.append(Finding("PAGOPA_SOAP_ALLOWED_IPS", OK, ", ".join(allowed)))
    header = config.get("PAGOPA_SOAP_REQUIRED_HEADER")
    if header:
        name, sep, _ = header.partition(":")
        found.append(Finding("PAGOPA_SOAP_REQUIRED_HEADER", OK, f"{name.strip()}: ***") if sep and name.strip()
                     else Finding("PAGOPA_SOAP_REQUIRED_HEADER", FAIL, "deve essere 'Nome: valore': ora ogni "
                                  "chiamata del nodo è rifiutata"))
    if not allowed and not header:
        found.append(Finding("PAGOPA_SOAP_ALLOWED_IPS", WARN if production else OK,
                             "né lista di indirizzi né intestazione richiesta: chiunque raggiunga "
                             "/pagopa/paForNode può chiamarlo (lo protegge solo il server web davanti)"))
    return found


def _notices_dir(value) -> Finding:
    path = Path(value or "")
    if not value:
        return Finding("NOTICES_DIR", FAIL, "non impostato")
    probe = path if path.exists() else path.parent
    if not probe.exists():
        return Finding("NOTICES_DIR", FAIL, f"{path}: non esiste (né la cartella che lo contiene)")
    if not os.access(probe, os.W_OK | os.X_OK):
        return Finding("NOTICES_DIR", FAIL, f"{probe}: non scrivibile da questo utente")
    return Finding("NOTICES_DIR", OK, f"{path}" + ("" if path.exists() else " (sarà creata)"))


# --- Services ---------------------------------------------------------------------------------------------------


def check_services(engine: Engine, migrations_dir, redis) -> list[Finding]:
    """Database, migrations and (with RQ) Redis, through the readiness checks."""
    report = health.readiness(engine, migrations_dir=migrations_dir, redis=redis, scheduler_max_age=0, max_queued=0,
                              only=("database", "migrations", "redis"))
    return [Finding(check.name, OK if check.ok else FAIL, check.detail) for check in report.checks]


# --- The intermediary -------------------------------------------------------------------------------------------


def check_gpd(client: GPDClient, fiscal_codes: Iterable[str]) -> list[Finding]:
    """GPD answers with our key (``/info``), and lets the key read each creditor's positions."""
    try:
        info = client.info()
    except PagoPAError as exc:
        return [Finding("GPD", FAIL, _explain(exc))]
    found = [Finding("GPD", OK, f"{client.http.base_url}: chiave accettata ({info.get('name', '?')} "
                                f"{info.get('version', '')}, {info.get('environment', '')})".replace(" ,", ","))]
    codes = list(fiscal_codes)
    if not codes:
        found.append(Finding("GPD enti", WARN, "nessun ente configurato: nessun ente da verificare"))
    for code in codes:
        try:
            client.list_positions(code, limit=1)
        except PagoPAError as exc:
            found.append(Finding(f"GPD ente {code}", FAIL, _explain(exc)))
        else:
            found.append(Finding(f"GPD ente {code}", OK, "la chiave può operare per questo ente"))
    return found


def _explain(exc: PagoPAError) -> str:
    text = exc.message
    if exc.status == 401:
        text = "chiave rifiutata (401): PAGOPA_API_KEY è sbagliata o non è attiva su questo ambiente"
    elif exc.status == 403:
        text = "chiave non abilitata (403) per questo ente o per GPD: chiedere all'intermediario"
    elif isinstance(exc, PagoPAUnavailable):
        text = f"non raggiungibile o in errore ({exc.title or exc.status}): verificare l'URL e la rete"
    details = " ".join(part for part in (f"HTTP {exc.status}" if exc.status else "", exc.detail or "",
                                         f"request id {exc.request_id}" if exc.request_id else "") if part)
    return f"{text} [{details}]" if details else text


# --- Our SOAP endpoint ------------------------------------------------------------------------------------------


def soap_url(config: Mapping) -> str:
    """Where the node calls us: ``PAYBOX_PUBLIC_URL`` + ``/pagopa/paForNode``."""
    return str(config.get("PUBLIC_URL") or "").rstrip("/") + "/pagopa/paForNode"


def check_soap_endpoint(url: str, *, required_header: str | None = None, timeout: float = 10.0,
                        session: requests.Session | None = None) -> Finding:
    """POST a probe paSendRTV2 (unknown idPA) to ``url``: reachable when it answers KO PAA_ID_DOMINIO_ERRATO."""
    headers = {"SOAPAction": "paSendRTV2", "Content-Type": soap.CONTENT_TYPE}
    if required_header and ":" in required_header:
        name, _, value = required_header.partition(":")
        headers[name.strip()] = value.strip()
    try:
        response = (session or requests).post(url, data=soap.probe_request(), headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        return Finding("endpoint SOAP", FAIL, f"{url}: non raggiungibile ({type(exc).__name__}: {exc})"[:400])
    if response.status_code == 200 and soap.PAA_ID_DOMINIO_ERRATO.encode() in response.content:
        return Finding("endpoint SOAP", OK, f"{url}: risponde come stazione (chiamata di prova rifiutata, come "
                                            "deve, con PAA_ID_DOMINIO_ERRATO)")
    if response.status_code == 403:
        return Finding("endpoint SOAP", WARN, f"{url}: raggiungibile, ma rifiuta questo chiamante (lista degli "
                                              "indirizzi o intestazione): normale se doctor gira fuori dalla lista")
    return Finding("endpoint SOAP", FAIL, f"{url}: risposta inattesa HTTP {response.status_code} "
                                          f"({response.headers.get('Content-Type', '-')})")


def diagnose(config: Mapping, engine: Engine, *, migrations_dir, redis=None, fiscal_codes: Iterable[str] = (),
             gpd: GPDClient | None = None, soap_endpoint: str | None = None) -> list[Finding]:
    """Every check, in the order they are printed."""
    found = check_configuration(config)
    found.extend(check_services(engine, migrations_dir, redis))
    try:
        client = gpd or GPDClient.from_config(config)
    except ValueError as exc:
        found.append(Finding("GPD", FAIL, str(exc)))
    else:
        found.extend(check_gpd(client, fiscal_codes))
    found.append(check_soap_endpoint(soap_endpoint or soap_url(config),
                                     required_header=config.get("PAGOPA_SOAP_REQUIRED_HEADER"),
                                     timeout=float(config.get("PAGOPA_TIMEOUT_SECONDS") or 10.0)))
    return found
