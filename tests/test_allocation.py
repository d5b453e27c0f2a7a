"""IUV allocation on PostgreSQL: concurrency-safe across processes, in blocks, never reused."""

import multiprocessing

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.ledger import allocation, notice_numbers
from portal.ledger.models import NumberCounter

WORKERS = 4
SINGLES = 200
BLOCKS = 4
BLOCK_SIZE = 50


def _allocate_concurrently(url: str, creditor_id: int, barrier, results) -> None:
    """One OS process: its own engine, single numbers interleaved with blocks, as fast as it can."""
    from sqlalchemy.orm import Session

    engine = sa.create_engine(url)
    singles, blocks = [], []
    try:
        with Session(engine) as session:
            barrier.wait(timeout=30)
            for n in range(SINGLES):
                singles.extend(allocation.allocate_bases(session, creditor_id))
                if n % (SINGLES // BLOCKS) == 0:
                    blocks.append(list(allocation.allocate_bases(session, creditor_id, BLOCK_SIZE)))
        results.put((singles, blocks, None))
    except Exception as exc:  # pragma: no cover - reported to the parent
        results.put(([], [], repr(exc)))
    finally:
        engine.dispose()


def test_concurrent_processes_never_share_a_number(app, creditor):
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    mp = multiprocessing.get_context("spawn")
    barrier = mp.Barrier(WORKERS)
    results = mp.Queue()
    workers = [mp.Process(target=_allocate_concurrently, args=(url, creditor.id, barrier, results))
               for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    assert [error for _, _, error in outcomes] == [None] * WORKERS
    everything = []
    for singles, blocks, _ in outcomes:
        assert len(singles) == SINGLES
        assert len(singles) == len(set(singles))
        assert singles == sorted(singles)  # one process sees its own numbers increase
        assert len(blocks) == BLOCKS
        for block in blocks:
            assert block == list(range(block[0], block[0] + BLOCK_SIZE))  # contiguous
        everything += singles + [base for block in blocks for base in block]

    total = WORKERS * (SINGLES + BLOCKS * BLOCK_SIZE)
    assert len(everything) == total
    assert len(set(everything)) == total  # no duplicates across processes
    assert set(everything) == set(range(1, total + 1))  # and, without rollbacks, no gaps
    db.session.expire_all()
    assert db.session.get(NumberCounter, creditor.id).next_value == total + 1


def test_numbers_are_never_reused_after_a_rollback(creditor):
    creditor_id = creditor.id
    first = allocation.allocate(db.session, creditor, 3)
    db.session.rollback()
    second = allocation.allocate(db.session, db.session.get(type(creditor), creditor_id), 3)
    assert min(int(n.nav[3:16]) for n in second) > max(int(n.nav[3:16]) for n in first)
    assert not {n.iuv for n in first} & {n.iuv for n in second}
    # The counter moved in its own committed transaction: a fresh connection sees it.
    with db.engine.connect() as conn:
        next_value = conn.scalar(sa.select(NumberCounter.next_value).where(NumberCounter.creditor_id == creditor_id))
    assert next_value == 7


def test_block_allocation_returns_consecutive_valid_numbers(creditor):
    allocation.allocate(db.session, creditor)  # base 1
    numbers = allocation.allocate(db.session, creditor, 50)
    bases = [int(n.nav[3:16]) for n in numbers]
    assert bases == list(range(2, 52))
    for number in numbers:
        assert notice_numbers.is_valid_nav(number.nav)
        assert number.nav == "3" + number.iuv
        assert number.iuv.startswith(creditor.segregation_code)
    assert allocation.allocate_bases(db.session, creditor.id, 5) == range(52, 57)


def test_bad_requests(creditor):
    with pytest.raises(ValueError, match="positive"):
        allocation.allocate_bases(db.session, creditor.id, 0)
    with pytest.raises(LookupError):
        allocation.allocate_bases(db.session, creditor.id + 1000)


def test_sequence_exhaustion(creditor):
    with db.engine.begin() as conn:
        conn.execute(sa.update(NumberCounter).values(next_value=notice_numbers.MAX_BASE))
    [last] = allocation.allocate(db.session, creditor)
    assert last.nav[3:16] == "9" * 13
    with pytest.raises(notice_numbers.NoticeNumberError, match="esaurita"):
        allocation.allocate(db.session, creditor)
