"""A real HTTP receiver for webhook tests: records every call and answers as told (status, delay, redirect)."""

import threading
import time
from contextlib import contextmanager

from werkzeug.wrappers import Request, Response

from tests.servers import serving


class Receiver:
    """A WSGI app: ``script`` is a list of answers (status, or ``("sleep", s)``, or ``("redirect", url)``) used
    one per call, then ``default``; ``hook(headers, body)``, when given, runs first on each call (tests hold a call
    there to prove what runs at the same time)."""

    def __init__(self, default: int = 200, delay: float = 0.0, hook=None):
        self.calls: list[dict] = []
        self.script: list = []
        self.default = default
        self.delay = delay
        self.hook = hook
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        request = Request(environ)
        body = request.get_data(as_text=True)
        if self.hook is not None:
            self.hook(dict(request.headers), body)
        with self.lock:
            answer = self.script.pop(0) if self.script else self.default
        if self.delay:
            time.sleep(self.delay)
        if isinstance(answer, tuple) and answer[0] == "sleep":
            time.sleep(answer[1])
            answer = 200
        if isinstance(answer, tuple) and answer[0] == "redirect":
            response = Response("moved", status=302, headers={"Location": answer[1]})
        else:
            response = Response(f"ok {answer}", status=answer)
        with self.lock:
            self.calls.append({"headers": dict(request.headers), "body": body, "status": response.status_code})
        return response(environ, start_response)

    def ok_calls(self) -> list[dict]:
        return [c for c in self.calls if 200 <= c["status"] < 300]


@contextmanager
def receiving(**kwargs):
    receiver = Receiver(**kwargs)
    with serving(receiver) as base:
        yield receiver, base
