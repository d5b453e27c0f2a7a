"""Receipts: the paSendRTV2 the node sends to the creditor's station, its delivery queue, and the
GPD payments-receipts API.

The request body is the WSDL's ``pafn:paSendRTV2Request`` element (``paForNode.wsdl`` message ``paSendRTV2``,
namespace ``http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd``, children unqualified). It is validated against
``paForNode.xsd`` before it is queued. Delivery is at-least-once: a row in ``deliveries`` is retried with
backoff by a background thread until the station answers ``outcome OK`` (or the fault PAA_RECEIPT_DUPLICATA,
which means it already has it), up to ``SANDBOX_MAX_ATTEMPTS`` attempts.
"""

from __future__ import annotations

import base64
import logging
import math
import threading
import time
import uuid
from copy import deepcopy
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import requests
from flask import Blueprint, Response, g, jsonify
from lxml import etree

from portal.money import cents_to_decimal_text
from portal.pagopa import SPECS_DIR
from portal.pagopa.sandbox import store
from portal.pagopa.sandbox.problems import ApiError

log = logging.getLogger(__name__)

bp = Blueprint("sandbox_receipts", __name__)

PAFN = "http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"
SOAPENV = "http://schemas.xmlsoap.org/soap/envelope/"
ROME = ZoneInfo("Europe/Rome")
XSD_PATH = SPECS_DIR / "sanp" / "wsdl" / "xsd" / "paForNode.xsd"

#: The PSP and channel the sandbox pretends the citizen paid with.
PSP = {
    "idPSP": "SANDBOXPSP01",
    "PSPCompanyName": "PSP Sandbox S.p.A.",
    "pspBrokerId": "SANDBOXPSP01",
    "idChannel": "SANDBOXPSP01_01",
    "channelDescription": "app",
    "paymentMethod": "CP",
    "fee_cents": 100,
}


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@lru_cache(maxsize=1)
def schema() -> etree.XMLSchema:
    """``paForNode.xsd`` (which imports ``sac-common-types-1.0.xsd`` by a relative path): no network, no entities."""
    return etree.XMLSchema(etree.parse(str(XSD_PATH), _safe_parser()))


def _text(parent: etree._Element, tag: str, value) -> etree._Element:
    child = etree.SubElement(parent, tag)
    child.text = str(value)
    return child


def _clip(value: str | None, length: int) -> str | None:
    if value is None:
        return None
    value = " ".join(str(value).split())
    return value[:length] if value else None


def build_receipt(doc: dict, option: dict, *, receipt_id: str, paid_at: datetime, id_pa: str, id_broker: str,
                  id_station: str) -> etree._Element:
    """The ``paSendRTV2Request`` element for a paid option (``ctReceiptV2``)."""
    local = paid_at.astimezone(ROME)
    root = etree.Element(etree.QName(PAFN, "paSendRTV2Request"), nsmap={"pafn": PAFN})
    _text(root, "idPA", id_pa)
    _text(root, "idBrokerPA", id_broker)
    _text(root, "idStation", id_station)
    receipt = etree.SubElement(root, "receipt")
    _text(receipt, "receiptId", receipt_id)
    _text(receipt, "noticeNumber", option["nav"])
    _text(receipt, "fiscalCode", doc["organizationFiscalCode"])
    _text(receipt, "outcome", "OK")
    _text(receipt, "creditorReferenceId", option["iuv"])
    _text(receipt, "paymentAmount", cents_to_decimal_text(option["amount"]))
    _text(receipt, "description", _clip(option.get("description"), 140) or "Pagamento")
    _text(receipt, "companyName", _clip(doc.get("companyName"), 140) or "Ente creditore")
    if _clip(doc.get("officeName"), 140):
        _text(receipt, "officeName", _clip(doc["officeName"], 140))
    debtor = etree.SubElement(receipt, "debtor")
    unique = etree.SubElement(debtor, "uniqueIdentifier")
    _text(unique, "entityUniqueIdentifierType", doc["type"])
    _text(unique, "entityUniqueIdentifierValue", doc["fiscalCode"])
    _text(debtor, "fullName", _clip(doc.get("fullName"), 70) or "-")
    for source, tag, length in (("streetName", "streetName", 70), ("civicNumber", "civicNumber", 16),
                                ("postalCode", "postalCode", 16), ("city", "city", 35),
                                ("province", "stateProvinceRegion", 35)):
        if _clip(doc.get(source), length):
            _text(debtor, tag, _clip(doc[source], length))
    if doc.get("country"):
        _text(debtor, "country", doc["country"])
    if doc.get("email"):
        _text(debtor, "e-mail", doc["email"])
    transfers = etree.SubElement(receipt, "transferList")
    for item in option["transfer"]:
        transfer = etree.SubElement(transfers, "transfer")
        _text(transfer, "idTransfer", item["idTransfer"])
        _text(transfer, "transferAmount", cents_to_decimal_text(item["amount"]))
        _text(transfer, "fiscalCodePA", item.get("organizationFiscalCode") or doc["organizationFiscalCode"])
        if _clip(item.get("companyName"), 140):
            _text(transfer, "companyName", _clip(item["companyName"], 140))
        if item.get("iban"):
            _text(transfer, "IBAN", item["iban"])
        else:
            stamp = item.get("stamp") or {}
            mbd = (f"<marcaDaBollo><hash>{stamp.get('hashDocument', '')}</hash><tipo>{stamp.get('stampType', '')}"
                   f"</tipo><provincia>{stamp.get('provincialResidence', '')}</provincia></marcaDaBollo>")
            _text(transfer, "MBDAttachment", base64.b64encode(mbd.encode()).decode())
        _text(transfer, "remittanceInformation", _clip(item.get("remittanceInformation"), 140) or "-")
        _text(transfer, "transferCategory", item["category"])
        entries = [entry for entry in item.get("transferMetadata") or [] if entry.get("key") and entry.get("value")]
        if entries:
            metadata = etree.SubElement(transfer, "metadata")
            for entry in entries[:15]:
                map_entry = etree.SubElement(metadata, "mapEntry")
                _text(map_entry, "key", _clip(entry["key"], 140))
                _text(map_entry, "value", _clip(entry["value"], 140))
    _text(receipt, "idPSP", PSP["idPSP"])
    _text(receipt, "PSPCompanyName", PSP["PSPCompanyName"])
    _text(receipt, "idChannel", PSP["idChannel"])
    _text(receipt, "channelDescription", PSP["channelDescription"])
    _text(receipt, "paymentMethod", PSP["paymentMethod"])
    _text(receipt, "fee", cents_to_decimal_text(PSP["fee_cents"]))
    # Like the node: local (Europe/Rome) wall-clock time, no offset.
    _text(receipt, "paymentDateTime", local.replace(tzinfo=None, microsecond=0).isoformat())
    _text(receipt, "applicationDate", local.date().isoformat())
    _text(receipt, "transferDate", local.date().isoformat())
    _text(receipt, "standIn", "false")
    return root


def validate_body(element: etree._Element) -> list[str]:
    """XSD errors of a body element (empty when valid)."""
    xsd = schema()
    if xsd.validate(etree.ElementTree(deepcopy(element))):
        return []
    return [f"line {error.line}: {error.message}" for error in xsd.error_log]


def envelope(body: etree._Element) -> bytes:
    env = etree.Element(etree.QName(SOAPENV, "Envelope"), nsmap={"soapenv": SOAPENV, "pafn": PAFN})
    etree.SubElement(env, etree.QName(SOAPENV, "Header"))
    etree.SubElement(env, etree.QName(SOAPENV, "Body")).append(deepcopy(body))
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def record_receipt(conn, doc: dict, option: dict, *, receipt_id: str, paid_at: datetime, body: etree._Element,
                   url: str) -> None:
    """Store the receipt and queue its delivery (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO receipts (receipt_id, org, iuv, nav, iupd, debtor, service, amount, psp_id, payment_datetime, xml,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (receipt_id, doc["organizationFiscalCode"], option["iuv"], option["nav"], doc["iupd"], doc["fiscalCode"],
         option["transfer"][0]["category"], option["amount"], PSP["idPSP"], store.iso(paid_at),
         etree.tostring(body, xml_declaration=True, encoding="UTF-8").decode(), store.iso()))
    conn.execute(
        "INSERT INTO deliveries (receipt_id, url, envelope, status, attempts, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, 'pending', 0, ?, ?)",
        (receipt_id, url, envelope(body).decode(), time.time(), store.iso()))


def new_receipt_id() -> str:
    return uuid.uuid4().hex


# --------------------------------------------------------------------------------------------- delivery

def parse_outcome(status_code: int, content: bytes) -> tuple[bool, str]:
    """``(delivered, description)`` from the station's answer."""
    try:
        root = etree.fromstring(content, _safe_parser())
    except (etree.XMLSyntaxError, ValueError):
        return False, f"HTTP {status_code}: not a SOAP answer"
    outcome = root.xpath("string(//*[local-name()='paSendRTV2Response']/*[local-name()='outcome'])")
    fault = root.xpath("string(//*[local-name()='paSendRTV2Response']//*[local-name()='faultCode'])")
    if outcome == "OK":
        return True, "OK"
    if fault == "PAA_RECEIPT_DUPLICATA":
        return True, "PAA_RECEIPT_DUPLICATA"
    soap_fault = root.xpath("string(//*[local-name()='Fault']/*[local-name()='faultstring'])")
    return False, f"HTTP {status_code}: outcome={outcome or '-'} fault={fault or soap_fault or '-'}"


def post_envelope(url: str, payload: str, *, timeout: float, headers: dict) -> tuple[bool, str]:
    try:
        response = requests.post(url, data=payload.encode(), timeout=timeout, headers={
            "Content-Type": "text/xml; charset=utf-8", "SOAPAction": "paSendRTV2", **headers})
    except requests.RequestException as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return parse_outcome(response.status_code, response.content)


def send(url: str, payload: str, *, timeout: float, headers: dict, duplicate: bool) -> tuple[bool, str]:
    """One attempt; with ``duplicate`` the same RT goes out twice at the same time (idempotency test)."""
    if not duplicate:
        return post_envelope(url, payload, timeout=timeout, headers=headers)
    results: list[tuple[bool, str]] = []
    barrier = threading.Barrier(2)

    def worker():
        barrier.wait()
        results.append(post_envelope(url, payload, timeout=timeout, headers=headers))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    delivered = any(ok for ok, _ in results)
    return delivered, " | ".join(text for _, text in results) or "no answer"


def _claim(conn, lease: float) -> dict | None:
    now = time.time()
    with store.transaction(conn):
        row = conn.execute(
            "SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ? AND locked_until <= ?"
            " ORDER BY next_attempt_at, id LIMIT 1", (now, now)).fetchone()
        if row is None:
            return None
        conn.execute("UPDATE deliveries SET locked_until = ? WHERE id = ?", (now + lease, row["id"]))
    return dict(row)


def deliver_due(db_path: str, settings: dict) -> int:
    """Try every delivery that is due; return how many were attempted."""
    timeout = float(settings["SANDBOX_SOAP_TIMEOUT"])
    headers = settings.get("SANDBOX_SOAP_HEADERS") or {}
    conn = store.connect(db_path)
    attempted = 0
    try:
        while True:
            row = _claim(conn, lease=timeout * 2 + 10)
            if row is None:
                return attempted
            attempted += 1
            duplicate = store.get_flag(conn, "rt_duplicate") == "1"
            ok, text = send(row["url"], row["envelope"], timeout=timeout, headers=headers, duplicate=duplicate)
            attempts = row["attempts"] + 1
            with store.transaction(conn):
                if ok:
                    conn.execute("UPDATE deliveries SET status = 'delivered', attempts = ?, last_error = NULL,"
                                 " delivered_at = ?, locked_until = 0 WHERE id = ?", (attempts, store.iso(), row["id"]))
                else:
                    give_up = attempts >= int(settings["SANDBOX_MAX_ATTEMPTS"])
                    backoff = min(float(settings["SANDBOX_RETRY_SECONDS"]) * 2 ** (attempts - 1), 300.0)
                    conn.execute("UPDATE deliveries SET status = ?, attempts = ?, last_error = ?, next_attempt_at = ?,"
                                 " locked_until = 0 WHERE id = ?",
                                 ("failed" if give_up else "pending", attempts, text[:500], time.time() + backoff,
                                  row["id"]))
            log.info("paSendRTV2 %s attempt %s to %s: %s", row["receipt_id"], attempts, row["url"],
                     "delivered" if ok else text)
    finally:
        conn.close()


class DeliveryWorker:
    """A daemon thread that retries pending deliveries every few seconds."""

    def __init__(self, db_path: str, settings: dict):
        self.db_path = db_path
        self.settings = settings
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-rt-delivery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=float(self.settings["SANDBOX_SOAP_TIMEOUT"]) * 2 + 5)

    def _run(self) -> None:
        interval = min(float(self.settings["SANDBOX_RETRY_SECONDS"]), 1.0)
        while not self._stop.is_set():
            try:
                deliver_due(self.db_path, self.settings)
            except Exception:  # noqa: BLE001 (a broken round must not end the thread)
                log.exception("receipt delivery round failed")
            self._wake.wait(interval)
            self._wake.clear()


# --------------------------------------------------------------------------------------------- payments-receipts API

PREFIX = "/gpd/payments-receipts-service/v1"


def _day_bound(value: str, end: bool) -> str:
    if "T" in value:
        return value if value.endswith("Z") else value + ("" if "+" in value else "Z")
    return value + ("T23:59:59Z" if end else "T00:00:00Z")


@bp.get(f"{PREFIX}/payments/<org>/receipts")
def list_receipts(org: str):
    query = g.query
    page, size = query.get("pageNum", 0), query.get("pageSize", 20)
    clauses, params = ["org = ?"], [org]
    if query.get("debtor"):
        clauses.append("debtor = ?")
        params.append(query["debtor"])
    if query.get("service"):
        clauses.append("service = ?")
        params.append(query["service"])
    if query.get("debtorOrIuv"):
        clauses.append("(debtor LIKE ? OR iuv LIKE ?)")
        params += [query["debtorOrIuv"] + "%"] * 2
    if query.get("from"):
        clauses.append("payment_datetime >= ?")
        params.append(_day_bound(query["from"], end=False))
    if query.get("to"):
        clauses.append("payment_datetime <= ?")
        params.append(_day_bound(query["to"], end=True))
    where = " AND ".join(clauses)
    total = g.db.execute(f"SELECT COUNT(*) FROM receipts WHERE {where}", params).fetchone()[0]  # noqa: S608
    if total == 0:
        raise ApiError(404, "Not found the receipts", f"Not found receipts for Organization Fiscal Code {org}")
    rows = g.db.execute(f"SELECT * FROM receipts WHERE {where} ORDER BY payment_datetime DESC, receipt_id"  # noqa: S608
                        " LIMIT ? OFFSET ?", [*params, size, page * size]).fetchall()
    return jsonify({
        "currentPageNumber": page,
        "length": len(rows),
        "totalPages": math.ceil(total / size),
        "results": [{"organizationFiscalCode": row["org"], "iuv": row["iuv"], "debtor": row["debtor"],
                     "paymentDateTime": row["payment_datetime"], "status": "PAID"} for row in rows],
    })


@bp.get(f"{PREFIX}/payments/<org>/receipts/<iuv>")
def get_receipt(org: str, iuv: str):
    row = g.db.execute("SELECT xml FROM receipts WHERE org = ? AND iuv = ?", (org, iuv)).fetchone()
    if row is None:
        raise ApiError(404, "Not found the receipt", f"Not found a receipt for Organization Fiscal Code {org} "
                                                     f"and IUV {iuv}")
    return Response(row["xml"], status=200, content_type="application/xml")
