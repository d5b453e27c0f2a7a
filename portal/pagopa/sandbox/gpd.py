"""GPD (Gestione Posizioni Debitorie): the debt-position store and its REST API, v1 and the v2 bulk API.

Status rules follow the digest §3.3 and upstream ``DebtPositionStatus`` / ``DebtPositionValidation``:
creation with ``toPublish=false`` → DRAFT; ``toPublish=true`` → VALID, or PUBLISHED when a ``validityDate`` is
set (VALID once that moment passes); ``switchToExpired`` + every due date past → EXPIRED. Payments move the
position to PAID (single option, or the last installment) or PARTIALLY_PAID; reporting (FdR) to REPORTED.
Statuses are refreshed lazily whenever a position is read.
"""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, date, datetime, timedelta

from flask import Blueprint, current_app, g, jsonify, request

from portal.pagopa.sandbox import store
from portal.pagopa.sandbox.problems import ApiError, data_error, gpd_error

bp = Blueprint("sandbox_gpd", __name__)

V1 = "/gpd/debt-positions-service/v1"
V2 = "/gpd/debt-positions-service/v2"
RECEIPTS = "/gpd/payments-receipts-service/v1"

UPDATABLE = {"DRAFT", "PUBLISHED", "VALID", "EXPIRED"}
PUBLISHABLE = {"DRAFT"}
INVALIDABLE = {"PUBLISHED", "VALID"}
DELETABLE = {"DRAFT", "PUBLISHED", "VALID", "INVALID", "EXPIRED"}
PAYABLE = {"VALID", "PARTIALLY_PAID"}
MAX_TRANSFERS = 5
MAX_BULK = 100
NAV_AUX_DIGIT = "3"

POSITION_FIELDS = ("iupd", "type", "payStandIn", "fiscalCode", "fullName", "streetName", "civicNumber", "postalCode",
                   "city", "province", "region", "country", "email", "phone", "switchToExpired", "companyName",
                   "officeName", "validityDate")
OPTION_FIELDS = ("nav", "iuv", "amount", "description", "isPartialPayment", "dueDate", "retentionDate",
                 "paymentOptionMetadata")
TRANSFER_FIELDS = ("idTransfer", "amount", "organizationFiscalCode", "remittanceInformation", "category", "iban",
                   "postalIban", "stamp", "companyName", "transferMetadata")


# --------------------------------------------------------------------------------------------- dates

def parse_dt(value: str | None) -> datetime | None:
    """An OpenAPI date-time (offset required by the schema; a naive value is read as UTC)."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _fmt(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else None


# --------------------------------------------------------------------------------------------- documents

def new_document(org: str, body: dict, *, to_publish: bool, now: datetime, previous: dict | None = None) -> dict:
    """The stored form of a position: the request fields plus GPD's read-only bookkeeping."""
    stamp = store.iso(now)
    doc = {key: body[key] for key in POSITION_FIELDS if key in body and body[key] is not None}
    doc.setdefault("payStandIn", True)
    doc["organizationFiscalCode"] = org
    doc["insertedDate"] = previous["insertedDate"] if previous else stamp
    doc["lastUpdatedDate"] = stamp
    options = []
    for option_in in body.get("paymentOption") or []:
        option = {key: option_in[key] for key in OPTION_FIELDS if key in option_in and option_in[key] is not None}
        option.setdefault("nav", NAV_AUX_DIGIT + option["iuv"])
        option.setdefault("paymentOptionMetadata", [])
        option.update({"organizationFiscalCode": org, "fee": 0, "notificationFee": 0, "status": "PO_UNPAID",
                       "insertedDate": stamp, "lastUpdatedDate": stamp})
        transfers = []
        for transfer_in in option_in.get("transfer") or []:
            transfer = {key: transfer_in[key] for key in TRANSFER_FIELDS
                        if key in transfer_in and transfer_in[key] not in (None, "")}
            transfer.setdefault("organizationFiscalCode", org)
            transfer.setdefault("transferMetadata", [])
            transfer.update({"status": "T_UNREPORTED", "insertedDate": stamp, "lastUpdatedDate": stamp})
            transfers.append(transfer)
        option["transfer"] = transfers
        options.append(option)
    doc["paymentOption"] = options
    set_initial_status(doc, to_publish=to_publish, now=now)
    return doc


def set_initial_status(doc: dict, *, to_publish: bool, now: datetime) -> None:
    if not to_publish:
        doc["status"] = "DRAFT"
        doc.pop("publishDate", None)
        return
    doc["publishDate"] = store.iso(now)
    validity = parse_dt(doc.get("validityDate"))
    doc["status"] = "PUBLISHED" if validity and validity > now else "VALID"
    refresh_status(doc, now)


def refresh_status(doc: dict, now: datetime) -> bool:
    """Time-driven transitions: PUBLISHED → VALID at validityDate, VALID → EXPIRED past the due dates."""
    before = doc["status"]
    if doc["status"] == "PUBLISHED":
        validity = parse_dt(doc.get("validityDate"))
        if validity is None or validity <= now:
            doc["status"] = "VALID"
    if doc["status"] == "VALID" and doc.get("switchToExpired") and doc["paymentOption"]:
        last_due = max(parse_dt(option["dueDate"]) for option in doc["paymentOption"])
        if last_due < now:
            doc["status"] = "EXPIRED"
    return doc["status"] != before


def check_rules(doc: dict, now: datetime) -> None:
    """GPD's content checks (``DebtPositionValidation``); each failure is a 400 DEBT_POSITION_REQUEST_DATA_ERROR.

    With ``SANDBOX_ACCEPT_PAST_DUE_DATES`` (the demo's backdated history: positions that were published when
    their due dates were still ahead) a past due date is accepted; the position then reads as EXPIRED or VALID
    by the usual time rules.
    """
    validity = parse_dt(doc.get("validityDate"))
    if validity and validity < now:
        raise data_error(f"Dates congruence error: validity_date must be >= current_date "
                         f"[validity_date={_fmt(validity)}; current_date={_fmt(now)}]")
    if not doc["paymentOption"]:
        raise data_error("The debt position must have at least one payment option")
    seen: dict[str, set[str]] = {"iuv": set(), "nav": set()}
    for option in doc["paymentOption"]:
        due = parse_dt(option["dueDate"])
        past_ok = current_app.config.get("SANDBOX_ACCEPT_PAST_DUE_DATES")
        if (validity and due < validity) or (not validity and due < now and not past_ok):
            raise data_error(f"Dates congruence error: due_date must be >= validity_date (if provided) or due_date "
                             f"must be >= current_date [due_date={_fmt(due)}; validity_date={_fmt(validity)}; "
                             f"current_date={_fmt(now)}]")
        retention = parse_dt(option.get("retentionDate"))
        if retention and retention < due:
            raise data_error(f"Dates congruence error: retention_date must be >= due_date "
                             f"[retention_date={_fmt(retention)}; due_date={_fmt(due)}]")
        transfers = option["transfer"]
        if not transfers:
            raise data_error(f"The payment option with IUV {option['iuv']} must have at least one transfer")
        if len(transfers) > MAX_TRANSFERS:
            raise data_error(f"Number of transfers congruence error: Each payment option must have a maximum of "
                             f"{MAX_TRANSFERS} transactions [transactions found={len(transfers)}]")
        ids = [transfer["idTransfer"] for transfer in transfers]
        if len(set(ids)) != len(ids):
            raise data_error(f"Transfer ID congruence error: duplicated idTransfer in payment option {option['iuv']} "
                             f"{ids}")
        for transfer in transfers:
            has_iban = bool(transfer.get("iban"))
            has_postal = bool(transfer.get("postalIban"))
            stamp = transfer.get("stamp")
            has_stamp = bool(stamp and stamp.get("stampType") and stamp.get("hashDocument")
                             and stamp.get("provincialResidence"))
            if has_stamp == (has_iban or has_postal) or (has_postal and not has_iban):
                raise data_error("Iban, postalIban and Stamp are mutually exclusive. One of them is required.")
        total = sum(transfer["amount"] for transfer in transfers)
        if total != option["amount"]:
            raise data_error(f"Amounts congruence error: payment option amount must coincide with the total of the "
                             f"transfers amount [payment_option_amount(in cent)={option['amount']}; "
                             f"total_tranfers_amount(in cent)={total}]")
        for key in ("iuv", "nav"):
            if option[key] in seen[key]:
                raise gpd_error("DEBT_POSITION_UNIQUE_VIOLATION", doc["organizationFiscalCode"])
            seen[key].add(option[key])


# --------------------------------------------------------------------------------------------- persistence

def load(conn: sqlite3.Connection, org: str, iupd: str, *, now: datetime | None = None) -> dict | None:
    row = conn.execute("SELECT doc FROM positions WHERE org = ? AND iupd = ?", (org, iupd)).fetchone()
    if row is None:
        return None
    doc = store.loads(row["doc"])
    refresh_status(doc, now or store.now_utc())
    return doc


def load_or_404(conn: sqlite3.Connection, org: str, iupd: str, now: datetime) -> dict:
    doc = load(conn, org, iupd, now=now)
    if doc is None:
        raise gpd_error("DEBT_POSITION_NOT_FOUND", org, iupd)
    return doc


def save(conn: sqlite3.Connection, doc: dict) -> None:
    conn.execute("UPDATE positions SET status = ?, doc = ?, updated_at = ? WHERE org = ? AND iupd = ?",
                 (doc["status"], store.dumps(doc), doc["lastUpdatedDate"], doc["organizationFiscalCode"], doc["iupd"]))


def _claim_keys(conn: sqlite3.Connection, doc: dict) -> None:
    org = doc["organizationFiscalCode"]
    for option in doc["paymentOption"]:
        try:
            conn.execute("INSERT INTO option_keys (org, iuv, nav, iupd) VALUES (?, ?, ?, ?)",
                         (org, option["iuv"], option["nav"], doc["iupd"]))
        except sqlite3.IntegrityError as exc:
            raise gpd_error("DEBT_POSITION_UNIQUE_VIOLATION", org) from exc


def insert(conn: sqlite3.Connection, doc: dict) -> None:
    org = doc["organizationFiscalCode"]
    try:
        conn.execute("INSERT INTO positions (org, iupd, status, doc, inserted_at, updated_at)"
                     " VALUES (?, ?, ?, ?, ?, ?)",
                     (org, doc["iupd"], doc["status"], store.dumps(doc), doc["insertedDate"], doc["lastUpdatedDate"]))
    except sqlite3.IntegrityError as exc:
        raise gpd_error("DEBT_POSITION_UNIQUE_VIOLATION", org) from exc
    _claim_keys(conn, doc)


def replace(conn: sqlite3.Connection, doc: dict) -> None:
    conn.execute("DELETE FROM option_keys WHERE org = ? AND iupd = ?", (doc["organizationFiscalCode"], doc["iupd"]))
    _claim_keys(conn, doc)
    save(conn, doc)


def delete(conn: sqlite3.Connection, org: str, iupd: str) -> None:
    conn.execute("DELETE FROM option_keys WHERE org = ? AND iupd = ?", (org, iupd))
    conn.execute("DELETE FROM positions WHERE org = ? AND iupd = ?", (org, iupd))


def find_by_nav(conn: sqlite3.Connection, org: str, nav: str, now: datetime) -> tuple[dict, dict] | None:
    row = conn.execute("SELECT iupd FROM option_keys WHERE org = ? AND nav = ?", (org, nav)).fetchone()
    if row is None:
        return None
    doc = load(conn, org, row["iupd"], now=now)
    option = next(option for option in doc["paymentOption"] if option["nav"] == nav)
    return doc, option


# --------------------------------------------------------------------------------------------- payments

def check_payable(doc: dict, option: dict) -> None:
    """Upstream ``checkPaymentPositionPayability``: raise PAYMENT_OPTION_NOT_PAYABLE / _ALREADY_PAID."""
    org, iuv = doc["organizationFiscalCode"], option["iuv"]
    if doc["status"] in {"PAID", "REPORTED"}:
        raise gpd_error("PAYMENT_OPTION_ALREADY_PAID", org, iuv)
    if doc["status"] not in PAYABLE:
        raise gpd_error("PAYMENT_OPTION_NOT_PAYABLE", org, iuv)
    if any(other["status"] != "PO_UNPAID" and not other["isPartialPayment"] for other in doc["paymentOption"]):
        raise gpd_error("PAYMENT_OPTION_ALREADY_PAID", org, iuv)
    if option["status"] != "PO_UNPAID":
        raise gpd_error("PAYMENT_OPTION_ALREADY_PAID", org, iuv)
    # The single option and the installment plan are mutually exclusive.
    if doc["status"] == "PARTIALLY_PAID" and not option["isPartialPayment"]:
        raise gpd_error("PAYMENT_OPTION_ALREADY_PAID", org, iuv)


def mark_paid(doc: dict, option: dict, *, payment_date: str, now: datetime, payment_method: str | None = None,
              psp_company: str | None = None, receipt_id: str | None = None, fee: int = 0) -> None:
    stamp = store.iso(now)
    option.update({"status": "PO_PAID", "paymentDate": payment_date, "lastUpdatedDate": stamp, "fee": fee})
    for key, value in (("paymentMethod", payment_method), ("pspCompany", psp_company), ("idReceipt", receipt_id)):
        if value:
            option[key] = value
    if not option["isPartialPayment"]:
        doc["status"] = "PAID"
    else:
        plan = [other for other in doc["paymentOption"] if other["isPartialPayment"]]
        doc["status"] = "PAID" if all(other["status"] != "PO_UNPAID" for other in plan) else "PARTIALLY_PAID"
    if doc["status"] == "PAID":
        doc["paymentDate"] = payment_date
    doc["lastUpdatedDate"] = stamp


def mark_reported(doc: dict, option: dict, id_transfers: set[str], *, flow_id: str, now: datetime) -> None:
    stamp = store.iso(now)
    for transfer in option["transfer"]:
        if transfer["idTransfer"] in id_transfers:
            transfer["status"] = "T_REPORTED"
            transfer["lastUpdatedDate"] = stamp
    reported = [transfer["status"] == "T_REPORTED" for transfer in option["transfer"]]
    option["status"] = "PO_REPORTED" if all(reported) else "PO_PARTIALLY_REPORTED"
    option["reportingDate"] = stamp
    option["idFlowReporting"] = flow_id
    option["lastUpdatedDate"] = stamp
    paid = [other for other in doc["paymentOption"] if other["status"] != "PO_UNPAID"]
    if doc["status"] == "PAID" and all(other["status"] == "PO_REPORTED" for other in paid):
        doc["status"] = "REPORTED"
    doc["lastUpdatedDate"] = stamp


# --------------------------------------------------------------------------------------------- serializers

def _pick(source: dict, keys) -> dict:
    return {key: source[key] for key in keys if source.get(key) is not None}


def as_model(doc: dict) -> dict:
    """``PaymentPositionModel`` (answer of create, update, publish, invalidate)."""
    out = _pick(doc, POSITION_FIELDS + ("paymentDate", "status"))
    out["paymentOption"] = []
    for option in doc["paymentOption"]:
        item = _pick(option, OPTION_FIELDS + ("fee", "notificationFee"))
        item["transfer"] = [_pick(transfer, TRANSFER_FIELDS) for transfer in option["transfer"]]
        out["paymentOption"].append(item)
    return out


def _transfer_response(transfer: dict) -> dict:
    return _pick(transfer, ("organizationFiscalCode", "companyName", "idTransfer", "amount", "remittanceInformation",
                            "category", "iban", "postalIban", "stamp", "insertedDate", "status", "lastUpdatedDate",
                            "transferMetadata"))


def option_response(option: dict, *, payments_model: bool = False) -> dict:
    """``PaymentOptionModelResponse`` (or ``PaymentsModelResponse`` for the paids endpoint)."""
    out = _pick(option, ("nav", "iuv", "organizationFiscalCode", "amount", "description", "isPartialPayment",
                         "dueDate", "retentionDate", "paymentDate", "reportingDate", "insertedDate", "paymentMethod",
                         "fee", "notificationFee", "pspCompany", "idReceipt", "idFlowReporting", "status",
                         "lastUpdatedDate", "paymentOptionMetadata"))
    out["transfer"] = [_transfer_response(transfer) for transfer in option["transfer"]]
    if payments_model:
        out["serviceType"] = "GPD"
    return out


def as_base_response(doc: dict) -> dict:
    """``PaymentPositionModelBaseResponse`` (detail and list items)."""
    out = _pick(doc, ("iupd", "organizationFiscalCode", "type", "companyName", "officeName", "insertedDate",
                      "publishDate", "validityDate", "paymentDate", "status", "lastUpdatedDate"))
    out["paymentOption"] = [option_response(option) for option in doc["paymentOption"]]
    return out


# --------------------------------------------------------------------------------------------- v1 routes

def _now() -> datetime:
    return store.now_utc()


def _body() -> dict:
    return request.get_json(silent=True) or {}


def _to_publish() -> bool:
    return bool(g.get("query", {}).get("toPublish", False))


def _create(conn: sqlite3.Connection, org: str, body: dict, to_publish: bool, now: datetime) -> dict:
    doc = new_document(org, body, to_publish=to_publish, now=now)
    check_rules(doc, now)
    insert(conn, doc)
    return doc


def _update(conn: sqlite3.Connection, org: str, iupd: str, body: dict, to_publish: bool, now: datetime) -> dict:
    current = load_or_404(conn, org, iupd, now)
    if current["status"] not in UPDATABLE:
        raise gpd_error("DEBT_POSITION_NOT_UPDATABLE", org, iupd)
    if body.get("iupd") != iupd:
        raise data_error(f"The iupd in the body ({body.get('iupd')}) differs from the one in the path ({iupd})")
    doc = new_document(org, body, to_publish=to_publish, now=now, previous=current)
    check_rules(doc, now)
    replace(conn, doc)
    return doc


def _delete(conn: sqlite3.Connection, org: str, iupd: str, now: datetime) -> None:
    doc = load_or_404(conn, org, iupd, now)
    if doc["status"] not in DELETABLE:
        raise gpd_error("DEBT_POSITION_PAYMENT_FOUND", org, iupd)
    delete(conn, org, iupd)


@bp.get(f"{V1}/organizations/<org>/debtpositions")
def list_positions(org: str):
    query = g.query
    limit, page = query.get("limit", 10), query.get("page", 0)
    due_from, due_to = query.get("due_date_from"), query.get("due_date_to")
    pay_from, pay_to = query.get("payment_date_from"), query.get("payment_date_to")
    pay_dt_from, pay_dt_to = query.get("payment_date_time_from"), query.get("payment_date_time_to")
    if (due_from or due_to) and (pay_from or pay_to or pay_dt_from or pay_dt_to):
        raise ApiError(400, "BAD REQUEST", "due_date and payment_date filters are mutually exclusive")
    due_range = _date_range(due_from, due_to)
    pay_range = _date_range(pay_from, pay_to)
    pay_dt_range = _datetime_range(pay_dt_from, pay_dt_to)
    now = _now()
    docs = []
    rows = g.db.execute("SELECT doc, rowid FROM positions WHERE org = ? ORDER BY rowid", (org,)).fetchall()
    for row in rows:
        doc = store.loads(row["doc"])
        refresh_status(doc, now)
        if query.get("status") and doc["status"] != query["status"]:
            continue
        if due_range and not any(due_range[0] <= parse_dt(option["dueDate"]).date() <= due_range[1]
                                 for option in doc["paymentOption"]):
            continue
        paid_at = [parse_dt(option["paymentDate"]) for option in doc["paymentOption"] if option.get("paymentDate")]
        if pay_range and not any(pay_range[0] <= moment.date() <= pay_range[1] for moment in paid_at):
            continue
        if pay_dt_range and not any(pay_dt_range[0] <= moment <= pay_dt_range[1] for moment in paid_at):
            continue
        docs.append((row["rowid"], doc))
    order = query.get("orderby", "INSERTED_DATE")
    keys = {"INSERTED_DATE": lambda item: (item[1]["insertedDate"], item[0]),
            "IUPD": lambda item: item[1]["iupd"],
            "STATUS": lambda item: item[1]["status"],
            "COMPANY_NAME": lambda item: item[1].get("companyName", "")}
    docs.sort(key=keys[order], reverse=query.get("ordering", "DESC") == "DESC")
    total = len(docs)
    chunk = docs[page * limit:(page + 1) * limit]
    return jsonify({
        "payment_position_list": [as_base_response(doc) for _, doc in chunk],
        "page_info": {"page": page, "limit": limit, "items_found": len(chunk),
                      "total_pages": max(1, math.ceil(total / limit)) if total else 0},
    })


def _date_range(start: str | None, end: str | None) -> tuple[date, date] | None:
    if not start and not end:
        return None
    lower = date.fromisoformat(str(start)) if start else date.fromisoformat(str(end)) - timedelta(days=30)
    upper = date.fromisoformat(str(end)) if end else lower + timedelta(days=30)
    return lower, upper


def _datetime_range(start, end) -> tuple[datetime, datetime] | None:
    if not start and not end:
        return None
    lower = parse_dt(str(start)) if start else parse_dt(str(end)) - timedelta(days=30)
    upper = parse_dt(str(end)) if end else lower + timedelta(days=30)
    return lower, upper


@bp.post(f"{V1}/organizations/<org>/debtpositions")
def create_position(org: str):
    now = _now()
    with store.transaction(g.db):
        doc = _create(g.db, org, _body(), _to_publish(), now)
    return jsonify(as_model(doc)), 201


@bp.get(f"{V1}/organizations/<org>/debtpositions/<iupd>")
def get_position(org: str, iupd: str):
    return jsonify(as_base_response(load_or_404(g.db, org, iupd, _now())))


@bp.put(f"{V1}/organizations/<org>/debtpositions/<iupd>")
def update_position(org: str, iupd: str):
    now = _now()
    with store.transaction(g.db):
        doc = _update(g.db, org, iupd, _body(), _to_publish(), now)
    return jsonify(as_model(doc))


@bp.delete(f"{V1}/organizations/<org>/debtpositions/<iupd>")
def delete_position(org: str, iupd: str):
    with store.transaction(g.db):
        _delete(g.db, org, iupd, _now())
    return jsonify("OK")


@bp.post(f"{V1}/organizations/<org>/debtpositions/<iupd>/publish")
def publish_position(org: str, iupd: str):
    now = _now()
    with store.transaction(g.db):
        doc = load_or_404(g.db, org, iupd, now)
        if doc["status"] not in PUBLISHABLE:
            raise gpd_error("DEBT_POSITION_NOT_PUBLISHABLE", org, iupd)
        validity = parse_dt(doc.get("validityDate"))
        if validity and validity < now:
            raise gpd_error("DEBT_POSITION_PUBLISH_VALIDITY_DATE_MISMATCH", org, iupd)
        if any(parse_dt(option["dueDate"]) < now for option in doc["paymentOption"]):
            raise gpd_error("DEBT_POSITION_PUBLISH_DUE_DATE_MISMATCH", org, iupd)
        set_initial_status(doc, to_publish=True, now=now)
        doc["lastUpdatedDate"] = store.iso(now)
        save(g.db, doc)
    return jsonify(as_model(doc))


@bp.post(f"{V1}/organizations/<org>/debtpositions/<iupd>/invalidate")
def invalidate_position(org: str, iupd: str):
    now = _now()
    with store.transaction(g.db):
        doc = load_or_404(g.db, org, iupd, now)
        if doc["status"] not in INVALIDABLE:
            raise gpd_error("DEBT_POSITION_NOT_INVALIDABLE", org, iupd)
        doc["status"] = "INVALID"
        doc["lastUpdatedDate"] = store.iso(now)
        save(g.db, doc)
    return jsonify(as_model(doc))


@bp.post(f"{V1}/organizations/<org>/paymentoptions/paids/<nav>")
@bp.post(f"{V2}/organizations/<org>/paymentoptions/paids/<nav>")
def pay_outside_pagopa(org: str, nav: str):
    """Mark an option paid outside pagoPA (no receipt, no reporting)."""
    now = _now()
    body = _body()
    with store.transaction(g.db):
        found = find_by_nav(g.db, org, nav, now)
        if found is None:
            raise gpd_error("PAYMENT_OPTION_NOT_FOUND", org, nav)
        doc, option = found
        check_payable(doc, option)
        mark_paid(doc, option, payment_date=body.get("paymentDate") or store.iso(now), now=now,
                  payment_method="N/A", psp_company="N/A")
        save(g.db, doc)
    return jsonify(option_response(option, payments_model=True))


@bp.patch(f"{V1}/organizations/<org>/debtpositions/transfers")
def update_transfer_ibans(org: str):
    old_iban = g.query.get("oldIban")
    limit = g.query.get("limit", 1000) or 1000
    new_iban = _body()["newIban"]
    now = _now()
    updated = 0
    with store.transaction(g.db):
        for row in g.db.execute("SELECT iupd FROM positions WHERE org = ? ORDER BY rowid", (org,)).fetchall():
            doc = load(g.db, org, row["iupd"], now=now)
            if doc["status"] not in UPDATABLE:
                continue
            touched = False
            for option in doc["paymentOption"]:
                for transfer in option["transfer"]:
                    if transfer.get("iban") == old_iban and updated < limit:
                        transfer["iban"] = new_iban
                        transfer["lastUpdatedDate"] = store.iso(now)
                        updated += 1
                        touched = True
            if touched:
                doc["lastUpdatedDate"] = store.iso(now)
                save(g.db, doc)
    return jsonify({"description": "IBAN updated", "updatedTransfers": updated})


# --------------------------------------------------------------------------------------------- v2 bulk

def _bulk_positions(body: dict) -> list[dict]:
    positions = body.get("paymentPositions") or []
    if not positions:
        raise data_error("paymentPositions must contain at least one debt position")
    if len(positions) > MAX_BULK:
        raise data_error(f"paymentPositions: the maximum number of debt positions per request is {MAX_BULK} "
                         f"[found={len(positions)}]")
    return positions


@bp.get(f"{V2}/info")
def info():
    return jsonify({"name": "pagopa-gpd-sandbox", "version": "1.1.37", "environment": "sandbox"})


@bp.post(f"{V2}/organizations/<org>/debtpositions")
def bulk_create(org: str):
    """All or nothing: one transaction; the first failing position rolls back the whole batch."""
    positions = _bulk_positions(_body())
    now = _now()
    with store.transaction(g.db):
        for body in positions:
            _create(g.db, org, body, _to_publish(), now)
    return "", 201


@bp.put(f"{V2}/organizations/<org>/debtpositions")
def bulk_update(org: str):
    positions = _bulk_positions(_body())
    now = _now()
    with store.transaction(g.db):
        for body in positions:
            _update(g.db, org, body.get("iupd", ""), body, _to_publish(), now)
    return "", 200


@bp.delete(f"{V2}/organizations/<org>/debtpositions")
def bulk_delete(org: str):
    iupds = _body().get("paymentPositionIUPDs") or []
    if not iupds:
        raise data_error("paymentPositionIUPDs must contain at least one IUPD")
    now = _now()
    with store.transaction(g.db):
        for iupd in iupds:
            _delete(g.db, org, iupd, now)
    return jsonify("OK")
