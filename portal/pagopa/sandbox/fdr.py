"""Reporting flows (FdR, REST API ``fdr_organization.json``) built from the receipts the sandbox issued.

``POST /sandbox/fdr/publish`` plays the PSP: it takes every receipt not yet reported, groups its transfers by
(beneficiary organization, PSP) and publishes one flow per group, named as SACI requires:
``<regulation date yyyy-mm-dd><PSP id>-<progressive>``. The GPD options become PO_REPORTED (transfers
T_REPORTED) and a PAID position becomes REPORTED once every paid option is reported.
``POST /sandbox/fdr/revise`` plays a PSP correcting a flow: it publishes the next revision of a flow without the
payments of the IUVs given (a revision with fewer payments), as the FdR API lets a PSP do.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import date, datetime, timedelta

from flask import Blueprint, g, jsonify, request

from portal.pagopa.sandbox import gpd, receipts, store
from portal.pagopa.sandbox.problems import ApiError

bp = Blueprint("sandbox_fdr", __name__)

PREFIX = "/fdr-org/service/v1"
FLOW_ID = re.compile(r"^(\d{4}-\d{2}-\d{2})(.+)-([A-Za-z0-9_]+)$")


def publish(conn, *, org: str | None = None, now: datetime | None = None) -> list[dict]:
    """Publish flows for the unreported receipts (of ``org`` only, when given). Runs in its own transaction."""
    now = now or store.now_utc()
    today = now.astimezone(receipts.ROME).date().isoformat()
    created: list[dict] = []
    with store.transaction(conn):
        sql, params = "SELECT * FROM receipts WHERE reported = 0", []
        if org:
            sql += " AND org = ?"
            params.append(org)
        groups: dict[tuple[str, str], list[tuple[dict, dict, dict, dict]]] = {}
        docs: dict[tuple[str, str], dict] = {}
        handled: list[str] = []
        for row in conn.execute(sql + " ORDER BY payment_datetime, receipt_id", params).fetchall():
            key = (row["org"], row["iupd"])
            if key not in docs:
                docs[key] = gpd.load(conn, row["org"], row["iupd"], now=now)
            doc = docs[key]
            if doc is None:
                continue
            option = next(option for option in doc["paymentOption"] if option["iuv"] == row["iuv"])
            handled.append(row["receipt_id"])
            for transfer in option["transfer"]:
                beneficiary = transfer.get("organizationFiscalCode") or doc["organizationFiscalCode"]
                groups.setdefault((beneficiary, row["psp_id"]), []).append((dict(row), doc, option, transfer))
        reported: dict[tuple[str, str, str], tuple[dict, dict, set[str], str]] = {}
        for (beneficiary, psp_id), items in groups.items():
            prefix = f"{today}{psp_id}-"
            taken = conn.execute("SELECT COUNT(DISTINCT fdr) FROM flows WHERE fdr LIKE ?",
                                 (prefix + "%",)).fetchone()[0]
            flow_id = f"{prefix}{taken + 1:04d}"
            total = sum(transfer["amount"] for _, _, _, transfer in items)
            company = next((transfer.get("companyName") for _, _, _, transfer in items if transfer.get("companyName")
                            and transfer.get("organizationFiscalCode") == beneficiary), None)
            company = company or next(doc.get("companyName") for _, doc, _, _ in items)
            published = store.iso(now)
            flow = {
                "status": "PUBLISHED", "revision": 1, "created": published, "updated": published,
                "fdr": flow_id, "fdrDate": published,
                "regulation": f"SANDBOX-{uuid.uuid4().hex[:20].upper()}",
                "regulationDate": today, "bicCodePouringBank": "SANDBOXXXXX",
                "sender": {"type": "LEGAL_PERSON", "id": psp_id, "pspId": psp_id,
                           "pspName": receipts.PSP["PSPCompanyName"], "pspBrokerId": receipts.PSP["pspBrokerId"],
                           "channelId": receipts.PSP["idChannel"]},
                "receiver": {"id": beneficiary, "organizationId": beneficiary, "organizationName": company[:140]},
                "published": published,
                "computedTotPayments": len(items), "computedSumPayments": total / 100,
                "totPayments": len(items), "sumPayments": total / 100,
            }
            conn.execute("INSERT INTO flows (fdr, org, psp_id, revision, published, flow_date, doc)"
                         " VALUES (?, ?, ?, 1, ?, ?, ?)",
                         (flow_id, beneficiary, psp_id, published, published, store.dumps(flow)))
            for index, (row, doc, option, transfer) in enumerate(items, start=1):
                conn.execute("INSERT INTO flow_payments (fdr, org, psp_id, revision, idx, iuv, iur, id_transfer,"
                             " amount, pay_status, pay_date) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, 'EXECUTED', ?)",
                             (flow_id, beneficiary, psp_id, index, row["iuv"], row["receipt_id"],
                              int(transfer["idTransfer"]), transfer["amount"], row["payment_datetime"]))
                entry = reported.setdefault((doc["organizationFiscalCode"], doc["iupd"], option["iuv"]),
                                            (doc, option, set(), flow_id))
                entry[2].add(transfer["idTransfer"])
            created.append({"fdr": flow_id, "organizationId": beneficiary, "pspId": psp_id, "revision": 1,
                            "totPayments": len(items), "sumPayments": total / 100})
        for doc, option, id_transfers, flow_id in reported.values():
            gpd.mark_reported(doc, option, id_transfers, flow_id=flow_id, now=now)
        for doc in docs.values():
            if doc is not None:
                gpd.save(conn, doc)
        conn.executemany("UPDATE receipts SET reported = 1 WHERE receipt_id = ?", [(rid,) for rid in handled])
    return created


# --------------------------------------------------------------------------------------------- REST API

def _fdr_error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, code, message, app_code=code)


#: The spec takes ``page`` and ``size`` as int64 but answers them back in ``metadata`` as int32.
INT32_MAX = 2**31 - 1


def _paging(query: dict) -> tuple[int, int]:
    """``(page, size)`` of a list request; a value the int32 ``metadata`` cannot echo is a 400 FDR-1001."""
    page, size = int(query.get("page", 1)), int(query.get("size", 1000))
    for name, value in (("page", page), ("size", size)):
        if value > INT32_MAX:
            raise _fdr_error(400, "FDR-1001", f"Bad request. Field [{name}] is equals to [{value}] but this is not "
                                              f"a valid value.")
    return page, size


def _lower_bound(value) -> str:
    if value:
        moment = value if isinstance(value, datetime) else gpd.parse_dt(str(value))
        return store.iso(moment)
    start = (store.now_utc() - timedelta(days=30)).replace(hour=0, minute=0, second=0)
    return store.iso(start)


@bp.get(f"{PREFIX}/organizations/<org>/fdrs")
def list_flows(org: str):
    query = g.query
    page, size = _paging(query)
    clauses, params = ["org = ?", "flow_date >= ?", "published > ?"], [org, _lower_bound(query.get("flowDate")),
                                                                      _lower_bound(query.get("publishedGt"))]
    if query.get("pspId"):
        clauses.append("psp_id = ?")
        params.append(query["pspId"])
    where = " AND ".join(clauses)
    sql = f"SELECT * FROM flows WHERE {where} ORDER BY published, fdr"  # noqa: S608 (fixed clauses, bound values)
    rows = g.db.execute(sql, params).fetchall()
    latest: dict[tuple[str, str], dict] = {}
    for row in rows:  # only the latest revision of each flow
        latest[(row["fdr"], row["psp_id"])] = dict(row)
    items = list(latest.values())
    chunk = items[(page - 1) * size: page * size]
    return jsonify({
        "metadata": {"pageSize": size, "pageNumber": page, "totPage": math.ceil(len(items) / size)},
        "count": len(items),
        "data": [{"fdr": row["fdr"], "pspId": row["psp_id"], "revision": row["revision"],
                  "published": row["published"], "flowDate": row["flow_date"]} for row in chunk],
    })


def _flow_row(org: str, fdr: str, revision: int, psp_id: str):
    match = FLOW_ID.match(fdr)
    if not match:
        raise _fdr_error(400, "FDR-3008", f"Flow identifier [{fdr}] contains a date that is not compliant.")
    try:
        date.fromisoformat(match.group(1))
    except ValueError as exc:
        raise _fdr_error(400, "FDR-3008", f"Flow identifier [{fdr}] contains a date that is not compliant.") from exc
    if match.group(2) != psp_id:
        raise _fdr_error(400, "FDR-3009", f"Flow identifier [{fdr}] contains a PSP ID that is not compliant.")
    row = g.db.execute("SELECT * FROM flows WHERE fdr = ? AND org = ? AND psp_id = ? AND revision = ?",
                       (fdr, org, psp_id, revision)).fetchone()
    if row is None:
        raise _fdr_error(404, "FDR-3001", f"Flow with ID [{fdr}] not found.")
    return row


@bp.get(f"{PREFIX}/organizations/<org>/fdrs/<fdr>/revisions/<int:revision>/psps/<psp_id>")
def get_flow(org: str, fdr: str, revision: int, psp_id: str):
    return jsonify(store.loads(_flow_row(org, fdr, revision, psp_id)["doc"]))


@bp.get(f"{PREFIX}/organizations/<org>/fdrs/<fdr>/revisions/<int:revision>/psps/<psp_id>/payments")
def get_flow_payments(org: str, fdr: str, revision: int, psp_id: str):
    _flow_row(org, fdr, revision, psp_id)
    query = g.query
    page, size = _paging(query)
    key = (fdr, org, psp_id, revision)
    total = g.db.execute("SELECT COUNT(*) FROM flow_payments WHERE fdr = ? AND org = ? AND psp_id = ? AND revision = ?",
                         key).fetchone()[0]
    rows = g.db.execute("SELECT * FROM flow_payments WHERE fdr = ? AND org = ? AND psp_id = ? AND revision = ?"
                        " ORDER BY idx LIMIT ? OFFSET ?", (*key, size, (page - 1) * size)).fetchall()
    return jsonify({
        "metadata": {"pageSize": size, "pageNumber": page, "totPage": math.ceil(total / size)},
        "count": total,
        "data": [{"index": row["idx"], "iuv": row["iuv"], "iur": row["iur"], "idTransfer": row["id_transfer"],
                  "pay": row["amount"] / 100, "payStatus": row["pay_status"], "payDate": row["pay_date"]}
                 for row in rows],
    })


def revise(conn, *, fdr: str, psp_id: str, withdraw: set[str], now: datetime | None = None) -> dict:
    """Publish the next revision of a flow without the payments of the ``withdraw`` IUVs; returns its summary."""
    now = now or store.now_utc()
    with store.transaction(conn):
        last = conn.execute("SELECT * FROM flows WHERE fdr = ? AND psp_id = ? ORDER BY revision DESC LIMIT 1",
                            (fdr, psp_id)).fetchone()
        if last is None:
            raise _fdr_error(404, "FDR-3001", f"Flow with ID [{fdr}] not found.")
        org, revision = last["org"], last["revision"] + 1
        kept = [dict(row) for row in conn.execute(
            "SELECT * FROM flow_payments WHERE fdr = ? AND org = ? AND psp_id = ? AND revision = ? ORDER BY idx",
            (fdr, org, psp_id, last["revision"])) if row["iuv"] not in withdraw]
        total = sum(row["amount"] for row in kept)
        published = store.iso(now)
        flow = store.loads(last["doc"]) | {
            "revision": revision, "updated": published, "published": published,
            "computedTotPayments": len(kept), "computedSumPayments": total / 100,
            "totPayments": len(kept), "sumPayments": total / 100}
        conn.execute("INSERT INTO flows (fdr, org, psp_id, revision, published, flow_date, doc)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (fdr, org, psp_id, revision, published, last["flow_date"], store.dumps(flow)))
        conn.executemany("INSERT INTO flow_payments (fdr, org, psp_id, revision, idx, iuv, iur, id_transfer, amount,"
                         " pay_status, pay_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [(fdr, org, psp_id, revision, index, row["iuv"], row["iur"], row["id_transfer"],
                           row["amount"], row["pay_status"], row["pay_date"]) for index, row in enumerate(kept, 1)])
    return {"fdr": fdr, "organizationId": org, "pspId": psp_id, "revision": revision,
            "totPayments": len(kept), "sumPayments": total / 100}


@bp.post("/sandbox/fdr/revise")
def revise_endpoint():
    body = request.get_json(silent=True) or {}
    if not body.get("fdr") or not body.get("pspId"):
        raise _fdr_error(400, "FDR-1001", "Bad request. Fields [fdr] and [pspId] are required.")
    return jsonify(revise(g.db, fdr=body["fdr"], psp_id=body["pspId"], withdraw=set(body.get("withdraw") or ()))), 201


@bp.post("/sandbox/fdr/publish")
def publish_endpoint():
    body = request.get_json(silent=True) or {}
    flows = publish(g.db, org=body.get("organization"))
    return jsonify({"flows": flows}), 201 if flows else 200
