"""Sandbox-only controls: fault injection, duplicate receipts, state summary, reset.

``POST /sandbox/faults`` ``{"match": "POST /gpd/", "status": 503, "count": 2, "delay_seconds": 0, "retry_after": 5}``
makes the next ``count`` requests whose path starts with the prefix (and, when given, whose method matches)
sleep ``delay_seconds`` and then answer ``status`` (with ``Retry-After`` when given). Without ``status`` the
request is only delayed and then served normally. ``DELETE /sandbox/faults`` clears them.
"""

from __future__ import annotations

import time

from flask import Blueprint, current_app, g, jsonify, request

from portal.pagopa.sandbox import store
from portal.pagopa.sandbox.problems import ApiError, reason

bp = Blueprint("sandbox_admin", __name__)

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


def parse_match(match: str) -> tuple[str | None, str]:
    parts = match.strip().split(None, 1)
    if len(parts) == 2 and parts[0].upper() in METHODS:
        return parts[0].upper(), parts[1].strip()
    return None, match.strip()


def take_fault(conn, method: str, path: str) -> dict | None:
    """Consume one use of the first fault that matches this request (atomically, across processes)."""
    if conn.execute("SELECT 1 FROM faults WHERE remaining > 0 LIMIT 1").fetchone() is None:
        return None  # the common case: no write lock taken
    with store.transaction(conn):
        for row in conn.execute("SELECT * FROM faults WHERE remaining > 0 ORDER BY id").fetchall():
            if row["method"] and row["method"] != method:
                continue
            if not path.startswith(row["prefix"]):
                continue
            if row["remaining"] <= 1:
                conn.execute("DELETE FROM faults WHERE id = ?", (row["id"],))
            else:
                conn.execute("UPDATE faults SET remaining = remaining - 1 WHERE id = ?", (row["id"],))
            return dict(row)
    return None


def apply_fault(fault: dict):
    """Sleep, then return the error (or ``None`` to let the request through)."""
    if fault["delay"]:
        time.sleep(float(fault["delay"]))
    if not fault["status"]:
        return None
    headers = {"Retry-After": str(fault["retry_after"])} if fault["retry_after"] is not None else {}
    return ApiError(int(fault["status"]), reason(int(fault["status"])),
                    f"Injected by the sandbox (fault #{fault['id']})", headers=headers)


@bp.post("/sandbox/faults")
def add_fault():
    body = request.get_json(silent=True) or {}
    if not body.get("match"):
        raise ApiError(400, "Bad Request", "'match' (a path prefix, optionally preceded by a method) is required")
    method, prefix = parse_match(str(body["match"]))
    status = body.get("status")
    if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
        raise ApiError(400, "Bad Request", "'status' must be an HTTP error status (400-599)")
    count = int(body.get("count", 1))
    delay = float(body.get("delay_seconds", 0) or 0)
    if count < 1 or delay < 0 or (status is None and not delay):
        raise ApiError(400, "Bad Request", "'count' must be >= 1 and a fault needs a 'status' or a 'delay_seconds'")
    retry_after = body.get("retry_after")
    with store.transaction(g.db):
        cursor = g.db.execute("INSERT INTO faults (method, prefix, status, remaining, delay, retry_after)"
                              " VALUES (?, ?, ?, ?, ?, ?)",
                              (method, prefix, status, count, delay, None if retry_after is None else int(retry_after)))
    return jsonify({"id": cursor.lastrowid, "method": method, "prefix": prefix, "status": status, "count": count,
                    "delay_seconds": delay, "retry_after": retry_after}), 201


@bp.delete("/sandbox/faults")
def clear_faults():
    with store.transaction(g.db):
        g.db.execute("DELETE FROM faults")
    return jsonify({"faults": 0})


@bp.post("/sandbox/rt/duplicate")
def toggle_duplicate():
    """Body ``{"enabled": true|false}``; without a body, toggle. Each RT is then sent twice, concurrently."""
    body = request.get_json(silent=True) or {}
    with store.transaction(g.db):
        current = store.get_flag(g.db, "rt_duplicate") == "1"
        enabled = bool(body["enabled"]) if "enabled" in body else not current
        store.set_flag(g.db, "rt_duplicate", "1" if enabled else "0")
    return jsonify({"rt_duplicate": enabled})


@bp.post("/sandbox/rt/retry")
def retry_failed():
    """Put the deliveries that ran out of attempts back in the queue (what pagoPA support does on request)."""
    with store.transaction(g.db):
        cursor = g.db.execute("UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?"
                              " WHERE status = 'failed'", (time.time(),))
    worker = current_app.extensions.get("sandbox_worker")
    if worker is not None:
        worker.wake()
    return jsonify({"requeued": cursor.rowcount})


@bp.post("/sandbox/rt/deliver")
def deliver_now():
    """Attempt every due delivery now, in this request (handy without the background thread)."""
    from portal.pagopa.sandbox.receipts import deliver_due

    with store.transaction(g.db):
        g.db.execute("UPDATE deliveries SET next_attempt_at = ? WHERE status = 'pending'", (time.time(),))
    attempted = deliver_due(current_app.config["SANDBOX_DATABASE"], current_app.config)
    return jsonify({"attempted": attempted})


def _counts(sql: str) -> dict:
    return {row[0]: row[1] for row in g.db.execute(sql).fetchall()}


def _positions_by_status() -> dict:
    from portal.pagopa.sandbox.gpd import refresh_status

    now = store.now_utc()
    counts: dict[str, int] = {}
    for row in g.db.execute("SELECT doc FROM positions").fetchall():
        doc = store.loads(row["doc"])
        refresh_status(doc, now)
        counts[doc["status"]] = counts.get(doc["status"], 0) + 1
    return counts


@bp.get("/sandbox/state")
def state():
    deliveries = [dict(row) for row in g.db.execute(
        "SELECT id, receipt_id, url, status, attempts, last_error, created_at, delivered_at FROM deliveries"
        " ORDER BY id DESC LIMIT 50").fetchall()]
    return jsonify({
        "positions": g.db.execute("SELECT COUNT(*) FROM positions").fetchone()[0],
        "positions_by_status": _positions_by_status(),
        "receipts": g.db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0],
        "receipts_unreported": g.db.execute("SELECT COUNT(*) FROM receipts WHERE reported = 0").fetchone()[0],
        "deliveries_by_status": _counts("SELECT status, COUNT(*) FROM deliveries GROUP BY status"),
        "deliveries": deliveries,
        "carts_by_status": _counts("SELECT status, COUNT(*) FROM carts GROUP BY status"),
        "flows": g.db.execute("SELECT COUNT(*) FROM flows").fetchone()[0],
        "faults": [dict(row) for row in g.db.execute("SELECT * FROM faults ORDER BY id").fetchall()],
        "rt_duplicate": store.get_flag(g.db, "rt_duplicate") == "1",
    })


@bp.post("/sandbox/reset")
def reset():
    store.reset(g.db)
    return jsonify({"reset": True})
