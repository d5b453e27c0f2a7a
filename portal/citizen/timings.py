"""Where a citizen page's time goes, as a ``Server-Timing`` header, when ``CITIZEN_SERVER_TIMING`` is on
(``bench/citizen.py`` turns it on and prints the breakdown): the wait before the view (``queue``, from the
``X-Request-Start`` a proxy or the benchmark sends), the phases the payment marks (``position``, ``publish``,
``checkout``), SQL statements (``sql``), garbage collection (``gc``), the view's wall time (``app``) and the CPU
its thread used (``cpu``). Off, it costs one configuration look-up per request."""

from __future__ import annotations

import time

from flask import current_app, g, request

from portal import timing
from portal.citizen import bp


@bp.before_request
def _start():
    if not current_app.config.get("CITIZEN_SERVER_TIMING"):
        return
    timing.install_hooks()
    timings = timing.Timings()
    queued = timing.queued_seconds(request.headers.get("X-Request-Start"), time.time())
    if queued is not None:
        timings.add("queue", queued)
    g.citizen_timing = (timings, timing.begin(timings), time.perf_counter(), time.thread_time())


@bp.after_request
def _finish(response):
    started = g.pop("citizen_timing", None)
    if started is None:
        return response
    timings, token, start, cpu_start = started
    timing.end(token)
    timings.add("cpu", time.thread_time() - cpu_start)
    timings.add("app", time.perf_counter() - start)
    response.headers["Server-Timing"] = timings.header()
    return response


@bp.teardown_request
def _forget(exc):
    """A view that raised never reached :func:`_finish`: stop measuring in this thread all the same."""
    started = g.pop("citizen_timing", None)
    if started is not None:
        timing.end(started[1])
