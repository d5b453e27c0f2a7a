"""The citizen pages' ``Server-Timing`` header (what bench/citizen.py reads): only when asked for, with the wait
before the view, its SQL, wall and CPU time."""

import time

from portal import timing


def test_no_header_unless_turned_on(client, ctx, form_service):
    form_service()
    assert "Server-Timing" not in client.get("/servizi/CERT").headers


def test_the_header_breaks_the_request_down(app, client, ctx, form_service, monkeypatch):
    form_service()
    monkeypatch.setitem(app.config, "CITIZEN_SERVER_TIMING", True)
    response = client.get("/servizi/CERT", headers={"X-Request-Start": f"t={time.time() - 0.05:.6f}"})
    phases = timing.parse_header(response.headers["Server-Timing"])
    assert {"queue", "sql", "app", "cpu"} <= set(phases)
    assert 40 <= phases["queue"] < 5000
    assert phases["app"] >= phases["sql"]
    # A form post also shows its rate counters' transaction.
    posted = client.post("/servizi/CERT", data={"codice_fiscale": ""})
    assert "ratelimit" in timing.parse_header(posted.headers["Server-Timing"])
    # Nothing is left measuring in this thread afterwards.
    assert timing.current() is None
