"""Rate limits (token buckets per key) and admission control (requests in flight).

A :class:`TokenBuckets` holds one bucket per key (a source's id, an API token's id): it
refills at ``rate`` per second up to ``burst``; a request costs its message count (collection)
or 1 (admin API). A request costing more than ``burst`` passes when the bucket is full and
leaves it in debt, so a big batch is slowed down, never refused forever. Refusals raise
:class:`~segflow.collect.exceptions.RateLimited` with the seconds until the cost is
available (``Retry-After``).

>>> from segflow.collect.exceptions import RateLimited
>>> now = [0.0]
>>> buckets = TokenBuckets(rate=10, burst=20, now=lambda: now[0])
>>> buckets.take("src", 15); buckets.take("src", 5)
>>> try:
...     buckets.take("src", 10)
... except RateLimited as exc:
...     print(exc.retry_after_s)
1.0
>>> now[0] = 1.0; buckets.take("src", 10)

With ``shared=PATH`` the buckets live in a small memory-mapped file that every process of a
``segflow serve`` maps (:class:`SharedBucketTable`), so the limit holds for the whole server
however many HTTP workers share the port, not once per worker: the supervised server passes
``DATA_DIR/run/buckets-collect.bin`` and ``buckets-api.bin``. ``time.monotonic`` is the
system's clock, the same in every process.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from segflow.collect.exceptions import Overloaded, RateLimited

_MAX_KEYS = 100_000
_R = TypeVar("_R")


class SharedBucketTable:
    """Buckets ``key -> (tokens, at)`` in a memory-mapped file shared by processes.

    A fixed table of ``slots`` slots (24 bytes each: an 8-byte hash of the key, the tokens,
    the time) addressed by the key's hash with 8 probes; when all 8 are taken by other keys the
    least recently used one is reused (its key starts again from a full bucket, as a key the
    in-memory table dropped does). Each read-modify-write holds an exclusive ``flock`` on the
    file (across processes) and a lock (across this process's threads).

    >>> import tempfile
    >>> table = SharedBucketTable(Path(tempfile.mkdtemp()) / "b.bin", slots=16)
    >>> table.get("k") is None
    True
    >>> table.put("k", 3.5, 10.0); table.get("k")
    (3.5, 10.0)
    >>> SharedBucketTable(table.path, slots=16).get("k")  # another process's view
    (3.5, 10.0)
    """

    _SLOT = struct.Struct("<Qdd")
    _PROBES = 8

    def __init__(self, path: Path, slots: int = 16_384) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._slots = slots
        size = slots * self._SLOT.size
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)
        self._thread_lock = threading.Lock()

    def __enter__(self) -> SharedBucketTable:
        self._thread_lock.acquire()
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    @staticmethod
    def _hash(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") | 1

    def _find(self, key: str) -> tuple[int, bool, int]:
        """The slot holding ``key`` (``True``), or the one to put it in (``False``), and the
        key's hash."""
        h = self._hash(key)
        free, oldest, oldest_at = -1, -1, math.inf
        for i in range(self._PROBES):
            slot = (h + i) % self._slots
            found, _, at = self._SLOT.unpack_from(self._map, slot * self._SLOT.size)
            if found == h:
                return slot, True, h
            if found == 0 and free < 0:
                free = slot
            elif found != 0 and at < oldest_at:
                oldest, oldest_at = slot, at
        return (free if free >= 0 else oldest), False, h

    def get(self, key: str) -> tuple[float, float] | None:
        """``(tokens, at)`` of ``key``, or ``None``; call inside ``with table:``."""
        slot, found, _ = self._find(key)
        if not found:
            return None
        _, tokens, at = self._SLOT.unpack_from(self._map, slot * self._SLOT.size)
        return tokens, at

    def put(self, key: str, tokens: float, at: float) -> None:
        slot, _, h = self._find(key)
        self._SLOT.pack_into(self._map, slot * self._SLOT.size, h, tokens, at)

    def update(
        self,
        key: str,
        default: tuple[float, float],
        charge: Callable[[tuple[float, float]], tuple[tuple[float, float], _R]],
    ) -> _R:
        """Replace ``key``'s ``(tokens, at)`` (``default`` when absent) by the bucket
        ``charge`` makes of it, finding the slot once, and return what else ``charge``
        returned; call inside ``with table:``."""
        slot, found, h = self._find(key)
        offset = slot * self._SLOT.size
        if found:
            _, tokens, at = self._SLOT.unpack_from(self._map, offset)
            bucket = (tokens, at)
        else:
            bucket = default
        (tokens, at), result = charge(bucket)
        self._SLOT.pack_into(self._map, offset, h, tokens, at)
        return result

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


class TokenBuckets:
    """Token buckets by key (thread-safe); ``rate <= 0`` disables them. ``shared``: a file
    the buckets live in for every process of the server (module docstring)."""

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        now: Callable[[], float] = time.monotonic,
        shared: Path | None = None,
    ) -> None:
        self.rate = rate
        self.burst = max(burst, rate, 1.0) if rate > 0 else 0.0
        self.now = now
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()
        self._shared = SharedBucketTable(shared) if shared is not None and rate > 0 else None

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, cost: float = 1.0) -> None:
        """Spend ``cost`` from ``key``'s bucket, or raise ``RateLimited``."""
        if self.rate <= 0:
            return
        now = self.now()
        if self._shared is not None:
            with self._shared as table:
                refused = table.update(
                    key, (self.burst, now), lambda bucket: self._charge(bucket, now, cost)
                )
        else:
            with self._lock:
                after, refused = self._charge(self._buckets.get(key, (self.burst, now)), now, cost)
                if len(self._buckets) >= _MAX_KEYS and key not in self._buckets:
                    self._buckets.clear()  # bounded memory: full buckets are the default anyway
                self._buckets[key] = after
        if refused is not None:
            raise refused

    def _charge(
        self, bucket: tuple[float, float], now: float, cost: float
    ) -> tuple[tuple[float, float], RateLimited | None]:
        """The bucket after this request at ``now``, and the refusal when it cannot pay."""
        tokens, at = bucket
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        need = min(cost, self.burst)
        if tokens < need:
            wait = math.ceil((need - tokens) / self.rate)
            return (tokens, now), RateLimited(
                f"rate limit of {self.rate:g}/s exceeded",
                retry_after_s=float(max(1, wait)),
                details={"rate_per_s": self.rate, "burst": self.burst},
            )
        return (tokens - cost, now), None


class Admission:
    """At most ``limit`` requests in flight (``limit <= 0``: no bound); the rest get
    :class:`~segflow.collect.exceptions.Overloaded` (503 + ``Retry-After``) before their
    body is read. Used from the event loop only.

    >>> gate = Admission(1)
    >>> gate.enter(); gate.inflight
    1
    >>> try:
    ...     gate.enter()
    ... except Overloaded as exc:
    ...     print(exc.code)
    overloaded
    >>> gate.leave(); gate.inflight
    0
    """

    def __init__(self, limit: int, retry_after_s: float = 1.0) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.inflight = 0

    def enter(self) -> None:
        if 0 < self.limit <= self.inflight:
            raise Overloaded(
                "too many requests in flight",
                retry_after_s=self.retry_after_s,
                details={"max_inflight_requests": self.limit},
            )
        self.inflight += 1

    def leave(self) -> None:
        self.inflight -= 1
