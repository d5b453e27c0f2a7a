"""``POST /pagopa/paForNode``: the SOAP endpoint of our station, where the node delivers receipts.

Implemented: paSendRT and paSendRTV2 (GPD asynchronous model: pagoPA holds the positions, we receive the
receipts). The synchronous primitives (paVerifyPaymentNotice, paGetPayment[V2], paDemandPaymentNotice) are
answered with ``PAA_SYSTEM_ERROR`` until the synchronous station is built (DESIGN.md §3, second mode).

How each outcome is answered:

- caller not in ``PAGOPA_SOAP_ALLOWED_IPS`` or without ``PAGOPA_SOAP_REQUIRED_HEADER`` → HTTP 403, no SOAP;
- syntax (``PAA_SINTASSI_EXTRAXSD``, ``PAA_SINTASSI_XSD``), caller configuration (``PAA_ID_DOMINIO_ERRATO``,
  ``PAA_ID_INTERMEDIARIO_ERRATO``, ``PAA_STAZIONE_INT_ERRATA``), ``PAA_RECEIPT_DUPLICATA``, ``PAA_SEMANTICA`` →
  HTTP 200, the operation's response with outcome KO and the fault bean; nothing is stored;
- our own failure (database down, any unexpected error) → HTTP 500 with a SOAP Fault (``PAA_SYSTEM_ERROR``), so
  the node keeps the receipt and sends it again later;
- receipt stored and committed → HTTP 200, outcome OK.
"""

import hmac
import ipaddress
import logging
import os
import threading
import time
import weakref
from functools import lru_cache

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, g, request
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal import metrics, timing
from portal.extensions import csrf, db
from portal.ledger.models import Creditor, PaymentOption
from portal.ledger.payments import CreditorRef, ReceiptRejected, record_receipt
from portal.ledger.status import OptionStatus
from portal.pagopa import soap
from portal.timing import queued_seconds as _queued_seconds

log = logging.getLogger("portal.pagopa.node")

bp = Blueprint("pagopa", __name__, url_prefix="/pagopa")
# The node is not a browser: it has no session and no CSRF token. It is authenticated by network (allow-list,
# the header the TLS proxy adds) and by idPA/idBrokerPA/idStation.
csrf.exempt(bp)

#: A receipt is a few KB (an @e.bollo attachment included); anything far larger is not for us.
MAX_REQUEST_BYTES = 1024 * 1024
#: How long a creditor looked up by fiscal code is reused (``PAGOPA_CREDITOR_CACHE_SECONDS``; 0 turns it off).
CREDITOR_CACHE_SECONDS = 60.0


@bp.post("/paForNode")
def pa_for_node():
    """Answer one paForNode SOAP call (with a ``Server-Timing`` header when ``PAGOPA_SERVER_TIMING`` is on)."""
    if not current_app.config.get("PAGOPA_SERVER_TIMING"):
        return _answer()
    start, cpu_start = time.perf_counter(), time.thread_time()
    timing.install_hooks()
    timings = timing.Timings()
    queued = _queued_seconds(request.headers.get("X-Request-Start"), time.time())
    if queued is not None:
        timings.add("queue", queued)
    with timing.collecting(timings):
        response = _answer()
    # "app" is the view's wall time, "cpu" the CPU this thread used meanwhile: the gap is waiting (SQL, the GIL,
    # another process holding the core).
    timings.add("cpu", time.thread_time() - cpu_start)
    timings.add("app", time.perf_counter() - start)
    response.headers["Server-Timing"] = timings.header()
    return response


#: The WSGI environ key of the warm-up call (not a header: no client can set it), which the metrics do not count.
WARM_UP_ENVIRON = "paybox.warm_up"


def _answer() -> Response:
    """Answer the call and count it: every receipt call is *received*, then *stored* or *refused* (a reason)."""
    action = soap.normalize_action(request.headers.get("SOAPAction"))
    source = action if action in soap.RECEIPT_OPERATIONS and not request.environ.get(WARM_UP_ENVIRON) else None
    response = _handle()
    if source is not None:
        kind, value = g.pop("paybox_receipt_outcome", ("refused", "unknown"))
        metrics.RECEIPTS_RECEIVED.labels(source).inc()
        if kind == "stored":
            metrics.RECEIPTS_STORED.labels(source, value or "none").inc()
        else:
            metrics.RECEIPTS_REFUSED.labels(source, value).inc()
    return response


def _outcome(kind: str, value: str | None) -> None:
    """What became of this call's receipt, for :func:`_answer`'s counters: ``stored`` (flag) or ``refused``
    (reason)."""
    g.paybox_receipt_outcome = (kind, value)


def _handle() -> Response:
    if not _caller_allowed():
        log.warning("paForNode refused: caller %s not allowed", request.remote_addr)
        _outcome("refused", "forbidden")
        return Response("Forbidden\n", status=403, mimetype="text/plain")
    with timing.phase("read"):
        body = request.stream.read(MAX_REQUEST_BYTES + 1)
    if len(body) > MAX_REQUEST_BYTES:
        _outcome("refused", "too_large")
        return Response("Request too large\n", status=413, mimetype="text/plain")
    action = request.headers.get("SOAPAction")
    try:
        # "parse" includes the XSD validation, which soap.validate times on its own as "xsd".
        with timing.phase("parse"):
            parsed = soap.parse_request(body, action)
    except soap.SoapFault as fault:
        log.warning("paForNode %s from %s: %s", soap.normalize_action(action) or "-", request.remote_addr, fault)
        _outcome("refused", fault.code)
        return _fault_response(fault, fault_id=_default_fault_id())
    operation = parsed.operation
    if operation.name not in soap.RECEIPT_OPERATIONS:
        fault = soap.SoapFault(soap.PAA_SYSTEM_ERROR, f"{operation.name} non implementata: stazione asincrona (GPD)",
                               operation=operation)
        log.warning("%s idPA=%s: not implemented", operation.name, parsed.id_pa)
        return _fault_response(fault, fault_id=parsed.id_pa)
    try:
        return _send_rt(db.session, parsed)
    except Exception:
        # Database down, deadlock, a bug: the receipt is NOT acknowledged; a 500 makes the node retry it later.
        db.session.rollback()
        log.exception("%s idPA=%s: system error, receipt not acknowledged", operation.name, parsed.id_pa)
        _outcome("refused", soap.PAA_SYSTEM_ERROR)
        fault = soap.SoapFault(soap.PAA_SYSTEM_ERROR, "errore interno: riprovare", operation=operation)
        return _xml(soap.build_soap_fault(fault, fault_id=parsed.id_pa), status=500)


def _send_rt(session: Session, parsed: soap.SoapRequest) -> Response:
    operation = parsed.operation
    data = None
    try:
        # "ledger" includes its SQL statements, which the SQL timing adds up as "sql".
        with timing.phase("ledger"):
            creditor = _check_caller_ids(session, parsed)
            data = soap.receipt_data(parsed)
            # The ledger the receipt belongs to is the notice's creditor (``fiscalCode``); with broadcast it can be
            # another creditor of this installation than the receiving one (idPA).
            owner = creditor
            if data.org_fiscal_code != creditor.fiscal_code:
                owner = creditor_ref(session, data.org_fiscal_code) or creditor
            outcome = record_receipt(session, owner, data, source=operation.name, raw_xml=parsed.payload_xml())
    except soap.SoapFault as fault:
        _log_call(parsed, data, fault.code)
        _outcome("refused", fault.code)
        session.rollback()
        return _fault_response(fault, fault_id=parsed.id_pa)
    except ReceiptRejected as exc:
        _log_call(parsed, data, soap.PAA_SEMANTICA)
        _outcome("refused", soap.PAA_SEMANTICA)
        session.rollback()
        return _fault_response(soap.SoapFault(soap.PAA_SEMANTICA, str(exc), operation=operation),
                               fault_id=parsed.id_pa)
    if outcome.duplicate:
        fault = soap.SoapFault(soap.PAA_RECEIPT_DUPLICATA,
                               f"ricevuta già registrata (receiptId {outcome.receipt.receipt_id})", operation=operation)
        _log_call(parsed, data, soap.PAA_RECEIPT_DUPLICATA)
        _outcome("refused", soap.PAA_RECEIPT_DUPLICATA)
        session.rollback()
        return _fault_response(fault, fault_id=parsed.id_pa)
    # The one place a view commits: the node may forget a receipt as soon as we answer OK, so it must be durably
    # stored *before* the answer is built. A failing commit raises here and becomes a 500 the node retries, never
    # an OK for a receipt we lost. (The after_request commit that follows finds nothing left to do.)
    with timing.phase("commit"):
        session.commit()
    _log_call(parsed, data, "OK", flag=outcome.flag)
    _outcome("stored", outcome.flag)
    return _xml(soap.build_response(operation))


def _check_caller_ids(session: Session, parsed: soap.SoapRequest) -> CreditorRef:
    """The creditor named by idPA, after checking that idBrokerPA and idStation are ours for it.

    :raise soap.SoapFault: ``PAA_ID_DOMINIO_ERRATO``, ``PAA_ID_INTERMEDIARIO_ERRATO`` or ``PAA_STAZIONE_INT_ERRATA``.
    """
    operation = parsed.operation
    creditor = creditor_ref(session, parsed.id_pa)
    if creditor is None:
        raise soap.SoapFault(soap.PAA_ID_DOMINIO_ERRATO, f"idPA {parsed.id_pa} sconosciuto", operation=operation)
    config = current_app.config
    # The creditor's own ids win over the installation's (one installation may serve creditors of several
    # intermediaries). With neither configured (development) there is nothing to compare against.
    broker = creditor.broker_id or config.get("PAGOPA_BROKER_ID")
    if broker and parsed.id_broker_pa != broker:
        raise soap.SoapFault(soap.PAA_ID_INTERMEDIARIO_ERRATO, f"idBrokerPA {parsed.id_broker_pa} non corrisponde",
                             operation=operation)
    station = creditor.station_id or config.get("PAGOPA_STATION_ID")
    if station and parsed.id_station != station:
        raise soap.SoapFault(soap.PAA_STAZIONE_INT_ERRATA, f"idStation {parsed.id_station} non corrisponde",
                             operation=operation)
    return creditor


# --- Creditors, cached per process ----------------------------------------------------------------------------------


class CreditorCache:
    """Creditor ids by fiscal code, each kept for ``ttl`` seconds (one per app; threads share it).

    Creditors change rarely: a change made in another process (an officer editing the station id, a new creditor)
    is seen here within ``ttl``; one made in this process is seen at once (any flush of a creditor clears every
    cache). An unknown fiscal code is not remembered: a creditor created elsewhere answers at once.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, CreditorRef]] = {}
        self._lock = threading.Lock()

    def get(self, fiscal_code: str) -> CreditorRef | None:
        entry = self._entries.get(fiscal_code)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, ref: CreditorRef, ttl: float) -> None:
        with self._lock:
            self._entries[ref.fiscal_code] = (time.monotonic() + ttl, ref)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_caches: "weakref.WeakSet[CreditorCache]" = weakref.WeakSet()
_caches_lock = threading.Lock()


def creditor_cache(app: Flask) -> CreditorCache:
    """The app's creditor cache (created on first use)."""
    cache = app.extensions.get("paybox.creditor_cache")
    if cache is None:
        with _caches_lock:
            cache = app.extensions.get("paybox.creditor_cache")
            if cache is None:
                cache = app.extensions["paybox.creditor_cache"] = CreditorCache()
                _caches.add(cache)
    return cache


def clear_creditor_caches() -> None:
    """Forget every cached creditor (of every app in this process)."""
    for cache in list(_caches):
        cache.clear()


_CREDITOR_CHANGED = "paybox.creditor_changed"


@event.listens_for(Session, "after_flush")
def _creditor_flushed(session: Session, flush_context) -> None:
    """A creditor written by this process (created, edited, removed) is looked up afresh from now on.

    Cleared at the flush and again at the commit: a thread that read the old row in between cannot keep it.
    """
    for objects in (session.new, session.dirty, session.deleted):
        if any(isinstance(obj, Creditor) for obj in objects):
            session.info[_CREDITOR_CHANGED] = True
            clear_creditor_caches()
            return


@event.listens_for(Session, "after_commit")
def _creditor_committed(session: Session) -> None:
    if session.info.pop(_CREDITOR_CHANGED, False):
        clear_creditor_caches()


def creditor_ref(session: Session, fiscal_code: str | None) -> CreditorRef | None:
    """The creditor with this fiscal code (``None`` if unknown), from the cache when fresh enough."""
    if not fiscal_code:
        return None
    ttl = float(current_app.config.get("PAGOPA_CREDITOR_CACHE_SECONDS", CREDITOR_CACHE_SECONDS))
    cache = creditor_cache(current_app) if ttl > 0 else None
    if cache is not None:
        ref = cache.get(fiscal_code)
        if ref is not None:
            return ref
    row = session.execute(
        sa.select(Creditor.id, Creditor.fiscal_code, Creditor.broker_id, Creditor.station_id)
        .where(Creditor.fiscal_code == fiscal_code)
    ).first()
    if row is None:
        return None
    ref = CreditorRef(id=row.id, fiscal_code=row.fiscal_code, broker_id=row.broker_id, station_id=row.station_id)
    if cache is not None:
        cache.put(ref, ttl)
    return ref


@timing.timed("log")
def _log_call(parsed: soap.SoapRequest, data, outcome: str, *, flag: str | None = None) -> None:
    log.info("%s idPA=%s receiptId=%s iuv=%s outcome=%s%s", parsed.operation.name, parsed.id_pa,
             data.receipt_id if data else "-", data.iuv if data else "-", outcome, f" flag={flag}" if flag else "")


def _default_fault_id() -> str:
    return current_app.config.get("PAGOPA_BROKER_ID") or ""


def _fault_response(fault: soap.SoapFault, *, fault_id: str) -> Response:
    """A business fault: the operation's response with outcome KO (HTTP 200); a SOAP Fault if it is unknown."""
    if fault.operation is None:
        return _xml(soap.build_soap_fault(fault, server=False, fault_id=fault_id), status=500)
    return _xml(soap.build_response(fault.operation, fault, fault_id=fault_id))


def _xml(payload: bytes, *, status: int = 200) -> Response:
    return Response(payload, status=status, content_type=soap.CONTENT_TYPE)


# --- Who may call -------------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            # Fail closed: a typo in the allow-list lets nobody in through that entry.
            log.error("PAGOPA_SOAP_ALLOWED_IPS: %r is not an IP address or network, ignored", entry)
    return tuple(networks)


def _caller_allowed() -> bool:
    """The optional IP allow-list (IPs or CIDRs) and the optional required header ``Name: value``.

    ``request.remote_addr`` is the peer address: behind a reverse proxy, configure ``ProxyFix`` so it is the
    client's, or rely on the header the proxy adds.
    """
    config = current_app.config
    allowed = tuple(config.get("PAGOPA_SOAP_ALLOWED_IPS") or ())
    if allowed:
        try:
            address = ipaddress.ip_address(request.remote_addr or "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not any(address in network for network in _networks(allowed)):
            return False
    required = config.get("PAGOPA_SOAP_REQUIRED_HEADER")
    if required:
        name, sep, expected = required.partition(":")
        if not sep or not name.strip():
            log.error("PAGOPA_SOAP_REQUIRED_HEADER must be 'Name: value'; refusing every call")
            return False
        got = request.headers.get(name.strip())
        if got is None or not hmac.compare_digest(got.strip().encode(), expected.strip().encode()):
            return False
    return True


# --- Warm-up of a fresh worker process ----------------------------------------------------------------------------

#: The idPA of the warm-up call: a valid fiscal-code shape that no creditor has, so the call stores nothing.
WARM_UP_ID_PA = soap.PROBE_ID_PA
_warm_up_receipt = soap.probe_receipt
#: A paSendRTV2 request for :data:`WARM_UP_ID_PA`: valid against the XSD, answered KO PAA_ID_DOMINIO_ERRATO.
warm_up_request = soap.probe_request


def warm_up(app: Flask, *, connections: int = 1) -> dict[str, float]:
    """Do once, before the first real call, what a process's first receipt would otherwise pay for.

    1. open ``connections`` database connections (kept in the pool);
    2. load the XSD schema in this thread (the caller loads it in its other threads);
    3. send one paSendRTV2 for an unknown idPA through the whole app (routing, caller checks, parsing,
       validation, the creditor query, the KO answer): nothing is stored;
    4. apply a receipt to one unpaid option in a transaction that is rolled back (the ledger's statements and
       ORM flush compiled once): nothing is kept. Skipped when there is no unpaid option, or its row is locked.

    Log lines are held back meanwhile (the process serves nothing yet). Returns the milliseconds of each step.
    Called by ``gunicorn.conf.py`` in every worker before it takes a call.
    """
    took: dict[str, float] = {}
    start = time.perf_counter()
    with app.app_context():
        engine = db.engine
        held = [engine.connect() for _ in range(max(1, connections))]
        for conn in held:
            conn.execute(sa.text("SELECT 1"))
        for conn in held:
            conn.close()
    took["connect"] = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    soap.schema()
    took["schema"] = (time.perf_counter() - start) * 1000
    headers, remote_addr = _warm_up_caller(app)
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        start = time.perf_counter()
        response = app.test_client().post("/pagopa/paForNode", data=warm_up_request(), headers=headers,
                                          environ_base={"REMOTE_ADDR": remote_addr, WARM_UP_ENVIRON: True})
        took["call"] = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        with app.app_context():
            applied = _warm_up_ledger(db.session)
        took["ledger" if applied else "ledger skipped"] = (time.perf_counter() - start) * 1000
    finally:
        logging.disable(previous)
    if soap.PAA_ID_DOMINIO_ERRATO.encode() not in response.data:
        log.warning("warm-up call answered HTTP %s without PAA_ID_DOMINIO_ERRATO", response.status_code)
    return took


def _warm_up_ledger(session: Session) -> bool:
    """Record a receipt for one unpaid option and roll it back; ``False`` when there was nothing to use."""
    try:
        if session.get_bind().dialect.name == "postgresql":
            # Never wait behind a real receipt for the same position: give up instead.
            session.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
        candidates = (sa.select(PaymentOption.iuv, PaymentOption.notice_number, PaymentOption.amount_cents,
                                Creditor.id, Creditor.fiscal_code)
                      .join(Creditor, Creditor.id == PaymentOption.creditor_id)
                      .where(PaymentOption.status == OptionStatus.UNPAID)
                      .limit(1))
        # Workers start together: each takes another option (and receipt id), so they do not queue on one row.
        row = (session.execute(candidates.offset(os.getpid() % 16)).first()
               or session.execute(candidates).first())
        if row is None:
            return False
        data = _warm_up_receipt(fiscal_code=row.fiscal_code, iuv=row.iuv, notice_number=row.notice_number,
                                amount_cents=row.amount_cents)
        data.receipt_id = f"paybox-warm-up-{os.getpid()}"
        record_receipt(session, CreditorRef(id=row.id, fiscal_code=row.fiscal_code), data, source="paSendRTV2",
                       raw_xml="<warm-up/>")
        return True
    except sa.exc.DBAPIError:
        return False
    finally:
        session.rollback()
        session.close()


def _warm_up_caller(app: Flask) -> tuple[dict[str, str], str]:
    """Headers and peer address that pass :func:`_caller_allowed` (an in-process call, never on the network)."""
    headers = {"SOAPAction": "paSendRTV2", "Content-Type": soap.CONTENT_TYPE}
    required = app.config.get("PAGOPA_SOAP_REQUIRED_HEADER")
    if required and ":" in required:
        name, _, value = required.partition(":")
        headers[name.strip()] = value.strip()
    networks = _networks(tuple(app.config.get("PAGOPA_SOAP_ALLOWED_IPS") or ()))
    return headers, str(networks[0].network_address) if networks else "127.0.0.1"
