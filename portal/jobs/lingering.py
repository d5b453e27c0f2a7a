"""Lingering jobs, and the changes that ask for one, never miss each other.

A lingering job (the webhook delivery run) keeps looking for new work for a while before it ends, so a steady
stream of changes is served by one run. Deduplicating its requests on "a job with this id is queued or started"
leaves a gap: a change that commits just as the run decides to end sees the run still *started*, enqueues nothing,
and its work waits for the next periodic run. A *bell* per deterministic job id closes that gap:

- the change, after its commit, **rings**: if a run is inside (entered, not left) the bell notes the ring and
  nothing is enqueued; if a run is queued and not yet inside, nothing is needed (it will look after entering);
  otherwise a new run is enqueued under a fresh run id (``<job id>.<n>``), never over a job that is still ending;
- the run **enters** before its first look, and **leaves** only when no ring came since it last looked: the check
  and the leave are one atomic step, so a ring either lands before it (the run looks once more) or after it (the
  ring finds nobody inside and enqueues a new run).

:class:`RedisBell` does this with a Lua script per step (the RQ backend, across machines); :class:`LocalBell`
with a lock (the in-process backend). A run inside renews its entry as it looks (:data:`PRESENCE_SECONDS`); a
run killed inside stops counting once its entry expires, and the next commit enqueues a new run. An entry that
expires under a run still alive (one very slow batch) only costs a second run beside it.
"""

from __future__ import annotations

import threading
import time
import uuid

#: Seconds an entered run counts as inside without renewing its entry (it renews every third of that).
PRESENCE_SECONDS = 15.0
#: Redis keys of a bell: its runs inside (a sorted set, scored by expiry), the queued run, the ring, the run counter.
_KEYS = ("runners", "queued", "rung", "seq")

_RING = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) > 0 then
  redis.call('SET', KEYS[3], '1')
  return false
end
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local n = redis.call('INCR', KEYS[4])
redis.call('SET', KEYS[2], n, 'EX', ARGV[2])
return n
"""
_ENTER = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""
_STAY = """
return redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[2])
"""
_LEAVE = """
if ARGV[2] == '0' and redis.call('GET', KEYS[3]) then
  redis.call('DEL', KEYS[3])
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""


class RedisBell:
    """The bell of one deterministic job id, in Redis.

    :param queued_seconds: how long a queued run that never entered counts as coming: the job's time in the queue.
    :param clock: epoch seconds (tests drive it).
    """

    def __init__(self, redis, name: str, *, queued_seconds: int, presence_seconds: float = PRESENCE_SECONDS,
                 clock=time.time):
        self.redis = redis
        self.name = name
        self.presence_seconds = presence_seconds
        self.queued_seconds = max(int(queued_seconds), 1)
        self.clock = clock
        self.keys = [f"paybox:linger:{name}:{key}" for key in _KEYS]

    def ring(self) -> str | None:
        """After a commit: the run id to enqueue, or ``None`` when a run inside or queued will see the change."""
        n = self.redis.eval(_RING, len(self.keys), *self.keys, self.clock(), self.queued_seconds)
        return None if n is None else f"{self.name}.{int(n)}"

    def enter(self) -> str:
        """A run starts looking; its token."""
        token = uuid.uuid4().hex
        self.redis.eval(_ENTER, len(self.keys), *self.keys, self.clock() + self.presence_seconds, token)
        return token

    def stay(self, token: str) -> None:
        """Renew the entry of a run still inside."""
        self.redis.eval(_STAY, len(self.keys), *self.keys, self.clock() + self.presence_seconds, token)

    def leave(self, token: str, *, final: bool = False) -> bool:
        """Leave unless a ring came since the last look (then the ring is taken and ``False`` returned: look again);
        ``final`` leaves in any case."""
        return bool(self.redis.eval(_LEAVE, len(self.keys), *self.keys, token, "1" if final else "0"))


class LocalBell:
    """The same bell inside one process (the in-process job backend)."""

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._inside: set[str] = set()
        self._queued = False
        self._rung = False
        self._seq = 0

    def ring(self) -> str | None:
        with self._lock:
            if self._inside:
                self._rung = True
                return None
            if self._queued:
                return None
            self._queued = True
            self._seq += 1
            return f"{self.name}.{self._seq}"

    def enter(self) -> str:
        token = uuid.uuid4().hex
        with self._lock:
            self._inside.add(token)
            self._queued = False
        return token

    def stay(self, token: str) -> None:
        """Nothing to renew: a run of this process ends in a ``finally`` that leaves."""

    def leave(self, token: str, *, final: bool = False) -> bool:
        with self._lock:
            if self._rung and not final:
                self._rung = False
                return False
            self._inside.discard(token)
            return True

    def forget_queued(self) -> None:
        """The queued run will not enter (it could not start): the next ring enqueues again."""
        with self._lock:
            self._queued = False


class Presence:
    """A run inside its bell: :meth:`may_stop` before ending for lack of work, :meth:`close` in any case."""

    def __init__(self, bell=None, clock=time.monotonic):
        self.bell = bell
        self.clock = clock
        self.token = bell.enter() if bell is not None else None
        self.left = bell is None
        self.renewed = clock()

    def stay(self) -> None:
        """Before each look: renew the entry every third of :data:`PRESENCE_SECONDS`."""
        if not self.left and self.clock() - self.renewed >= PRESENCE_SECONDS / 3:
            self.bell.stay(self.token)
            self.renewed = self.clock()

    def may_stop(self) -> bool:
        """Whether the run may end now (it left); ``False``: a change asked for it meanwhile, look again."""
        if self.left:
            return True
        self.left = self.bell.leave(self.token)
        return self.left

    def close(self) -> None:
        """Leave, whatever rang (a run ending on its time limit hands over to a successor instead)."""
        if not self.left:
            self.bell.leave(self.token, final=True)
            self.left = True
