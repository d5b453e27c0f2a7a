"""Serving a WSGI app over real HTTP on a free loopback port, for tests that cross the wire."""

import threading
from contextlib import contextmanager

from werkzeug.serving import make_server


@contextmanager
def serving(app, *, public_url_key: str | None = None):
    """Serve ``app`` in a background thread and yield its base URL; stop it on exit.

    :param public_url_key: a config key of ``app`` to set to the base URL (e.g. the sandbox's own address,
        known only once the port is).
    """
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    if public_url_key:
        app.config[public_url_key] = base
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
