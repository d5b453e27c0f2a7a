"""Where the time of one request goes: named phases, summed, rendered as a ``Server-Timing`` header.

The SOAP endpoint turns it on with ``PAGOPA_SERVER_TIMING`` (``bench/receipts.py`` reads the header to print its
breakdown), the citizens' portal with ``CITIZEN_SERVER_TIMING`` (``bench/citizen.py``). Code on the request's
path marks its phases with :func:`phase`, which costs one context-variable look-up when nobody is measuring; SQL
statements and garbage-collection pauses are added up by the hooks of
:func:`install_hooks`. Plain Python: no Flask.
"""

import functools
import gc
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy import event

P = ParamSpec("P")
R = TypeVar("R")

#: The name of the summed SQL statement time (its ``desc`` in the header says how many statements).
SQL = "sql"
#: The name of the summed garbage-collection pauses.
GC = "gc"
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")


class Timings:
    """Durations (milliseconds) by phase name, in the order the phases first ended."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, seconds: float) -> None:
        if not _TOKEN.match(name):
            raise ValueError(f"not a Server-Timing metric name: {name!r}")
        self.durations[name] = self.durations.get(name, 0.0) + seconds * 1000
        self.counts[name] = self.counts.get(name, 0) + 1

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def header(self) -> str:
        """``name;dur=1.23, ...``; the SQL phase also says how many statements it summed (``desc``)."""
        parts = []
        for name, ms in self.durations.items():
            desc = f';desc="{self.counts[name]} statements"' if name == SQL else ""
            parts.append(f"{name};dur={ms:.2f}{desc}")
        return ", ".join(parts)


_current: ContextVar[Timings | None] = ContextVar("paybox_timings", default=None)


def begin(timings: Timings | None):
    """Make ``timings`` the current one until :func:`end` with the returned token (for request hooks, where a
    ``with`` block cannot span the view)."""
    return _current.set(timings)


def end(token) -> None:
    _current.reset(token)


@contextmanager
def collecting(timings: Timings | None) -> Iterator[Timings | None]:
    """Make ``timings`` the one :func:`phase` and the SQL timing add to, for the duration of the block."""
    token = _current.set(timings)
    try:
        yield timings
    finally:
        _current.reset(token)


def current() -> Timings | None:
    return _current.get()


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as ``name`` when a request is being measured; otherwise do nothing."""
    timings = _current.get()
    if timings is None:
        yield
        return
    with timings.measure(name):
        yield


def timed(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: every call of the function is a :func:`phase` named ``name``."""
    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            timings = _current.get()
            if timings is None:
                return function(*args, **kwargs)
            with timings.measure(name):
                return function(*args, **kwargs)
        return wrapper
    return decorate


def queued_seconds(value: str | None, now: float) -> float | None:
    """Seconds since ``X-Request-Start`` (``t=<epoch seconds>``, as a proxy or the benchmark sets it), if sent.

    What the call waited before the view ran: the connection, the listen queue, gunicorn's parsing. Values in
    milliseconds or microseconds (other proxies' habit) are recognised by their size.
    """
    if not value:
        return None
    raw = value.strip().removeprefix("t=")
    try:
        stamp = float(raw)
    except ValueError:
        return None
    if stamp > 1e14:
        stamp /= 1e6
    elif stamp > 1e11:
        stamp /= 1e3
    waited = now - stamp
    return waited if 0 <= waited < 3600 else None


def parse_header(value: str) -> dict[str, float]:
    """The durations of a ``Server-Timing`` header (what :meth:`Timings.header` writes), in milliseconds."""
    result: dict[str, float] = {}
    for metric in value.split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        if not name:
            continue
        for param in params:
            key, _, raw = param.partition("=")
            if key.strip() == "dur":
                with suppress(ValueError):
                    result[name] = float(raw)
    return result


_START = "paybox_timing_start"
_GC_START = threading.local()
_installed = False


def install_hooks() -> None:
    """Add SQL statement time (``sql``) and garbage-collection pauses (``gc``) to the request's :class:`Timings`.

    Process-wide hooks, installed once (idempotent); they do nothing for a thread that is not being measured.
    Every cursor execution counts, so waiting for a row lock shows up as SQL time.
    """
    global _installed
    if _installed:
        return
    _installed = True
    if not event.contains(sa.engine.Engine, "before_cursor_execute", _before):
        event.listen(sa.engine.Engine, "before_cursor_execute", _before)
        event.listen(sa.engine.Engine, "after_cursor_execute", _after)
    if _gc_callback not in gc.callbacks:
        gc.callbacks.append(_gc_callback)


def _before(conn, cursor, statement, parameters, context, executemany) -> None:
    if _current.get() is not None:
        conn.info[_START] = time.perf_counter()


def _after(conn, cursor, statement, parameters, context, executemany) -> None:
    timings = _current.get()
    start = conn.info.pop(_START, None)
    if timings is not None and start is not None:
        timings.add(SQL, time.perf_counter() - start)


def _gc_callback(stage: str, info: dict) -> None:
    # The collector runs in the thread whose allocation triggered it: that thread's request pays the pause.
    if stage == "start":
        _GC_START.value = time.perf_counter() if _current.get() is not None else None
        return
    start = getattr(_GC_START, "value", None)
    timings = _current.get()
    if timings is not None and start is not None:
        timings.add(GC, time.perf_counter() - start)
