"""``/healthz``, ``/readyz`` and ``/metrics``: what a load balancer and Prometheus ask a web node.

- ``GET /healthz``: the process answers (no database, no Redis): 200 ``{"status": "ok"}``. For the process
  supervisor and a liveness probe: restarting the process is the cure only when this fails.
- ``GET /readyz``: :func:`portal.ops.health.readiness` as JSON, 200 when every check passes, else 503.
  ``?check=database&check=migrations`` runs only those (a load balancer that should keep serving receipts while
  the scheduler is down, say).
- ``GET /metrics``: Prometheus text format, every process of this machine (multiprocess mode, see
  :mod:`portal.metrics`) plus the backlog gauges of :mod:`portal.ops.collectors`. With ``METRICS_TOKEN`` set it
  asks for ``Authorization: Bearer <token>``; without, it answers only a caller on this machine that came through
  no proxy (no ``X-Forwarded-For``/``X-Real-IP``/``Forwarded`` header), anyone else gets 403 (404 would hide it
  but confuse whoever configures the scraper).

:func:`register` also times every request by route (the URL rule, ``/officer/positions/<int:position_id>``, never
the raw path, so the number of series stays bounded).
"""

from __future__ import annotations

import hmac
import ipaddress
import time

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from portal import metrics
from portal.config import ROOT
from portal.extensions import csrf, db
from portal.ops import health

bp = Blueprint("ops", __name__)
csrf.exempt(bp)

#: Headers a reverse proxy adds: a call carrying one did not come from this machine, whatever its peer address.
PROXY_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")
#: The route label of a request that matched no URL rule (404s, scanners): one series for all of them.
UNMATCHED = "<unmatched>"
#: Methods counted by name; anything else (a scanner's invention) is counted as ``OTHER``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    config = current_app.config
    only = request.args.getlist("check")
    unknown = sorted(set(only) - set(health.CHECKS))
    if unknown:
        return jsonify(error=f"controlli sconosciuti: {', '.join(unknown)}", checks=list(health.CHECKS)), 400
    report = health.readiness(
        db.engine, migrations_dir=ROOT / "migrations", redis=_health_redis(current_app),
        scheduler_max_age=int(config.get("READYZ_SCHEDULER_SECONDS") or 0),
        max_queued=int(config.get("READYZ_MAX_QUEUED") or 0), only=only or None)
    response = jsonify(report.as_dict())
    response.status_code = 200 if report.ok else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/metrics")
def prometheus_metrics():
    if not _metrics_allowed():
        return Response("Forbidden: set METRICS_TOKEN and send it as a Bearer token\n", status=403,
                        mimetype="text/plain")
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from portal.ops.collectors import StateCollector

    registry = CollectorRegistry()
    registry.register(_Forward(metrics.scrape_registry()))
    registry.register(StateCollector(db.engine, _health_redis(current_app)))
    response = Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


class _Forward:
    """Expose another registry's metrics inside a per-scrape registry."""

    def __init__(self, source):
        self.source = source

    def collect(self):
        yield from self.source.collect()


def _metrics_allowed() -> bool:
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        scheme, _, given = (request.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    if any(request.headers.get(name) for name in PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _health_redis(app: Flask):
    """A Redis connection with short timeouts for the checks (the job backend's has none), when jobs go to RQ."""
    from portal.jobs.queue import get_backend

    backend = get_backend(app)
    if backend.mode != "rq":
        return None
    client = app.extensions.get("paybox_health_redis")
    if client is None:
        from redis import Redis

        client = Redis.from_url(backend.redis_url, socket_timeout=2, socket_connect_timeout=2)
        app.extensions["paybox_health_redis"] = client
    return client


def register(app: Flask) -> None:
    """Mount the blueprint and time every request by route."""
    app.register_blueprint(bp)

    @app.before_request
    def _start_timer():
        g.paybox_request_start = time.perf_counter()

    @app.after_request
    def _observe(response):
        start = g.pop("paybox_request_start", None)
        if start is not None:
            rule = request.url_rule.rule if request.url_rule is not None else UNMATCHED
            method = request.method if request.method in METHODS else "OTHER"
            metrics.REQUEST_SECONDS.labels(method, rule, str(response.status_code)).observe(
                time.perf_counter() - start)
        return response
