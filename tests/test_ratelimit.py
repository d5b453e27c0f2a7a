"""The rate counters (``portal.ratelimit``): every key of a request counted in one statement, each against its
own limit and window; on PostgreSQL and on SQLite."""

import pytest
import sqlalchemy as sa

from portal import ratelimit
from portal.extensions import db
from tests.test_sqlite import sqlite_app


@pytest.fixture(params=["postgresql", "sqlite"])
def backend(request, tmp_path):
    if request.param == "postgresql":
        request.getfixturevalue("ctx")
        yield
    else:
        with sqlite_app(tmp_path / "paybox.db"):
            yield


def test_every_key_counts_against_its_own_limit(backend):
    limits = [("t:ip:203.0.113.7", 3, 60), ("t:cf:abc", 2, 3600)]
    assert [ratelimit.hit_all(db.engine, limits, now=7200.0) for _ in range(4)] == [True, True, False, False]
    rows = db.session.execute(sa.select(ratelimit.RateCounter.key, ratelimit.RateCounter.window_start,
                                        ratelimit.RateCounter.count).order_by(ratelimit.RateCounter.key)).all()
    assert [tuple(row) for row in rows] == [("t:cf:abc", 7200, 4), ("t:ip:203.0.113.7", 7200, 4)]
    # A new minute: the address counts afresh, the fiscal code's hour goes on.
    assert ratelimit.hit_all(db.engine, [limits[0]], now=7260.0)
    assert not ratelimit.hit_all(db.engine, limits, now=7261.0)
    assert ratelimit.hit_all(db.engine, [], now=7262.0)
