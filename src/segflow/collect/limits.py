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
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from segflow.collect.exceptions import Overloaded, RateLimited

_MAX_KEYS = 100_000


class TokenBuckets:
    """Token buckets by key (thread-safe); ``rate <= 0`` disables them."""

    def __init__(
        self, *, rate: float, burst: float, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, rate, 1.0) if rate > 0 else 0.0
        self.now = now
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, cost: float = 1.0) -> None:
        """Spend ``cost`` from ``key``'s bucket, or raise ``RateLimited``."""
        if self.rate <= 0:
            return
        now = self.now()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            need = min(cost, self.burst)
            if tokens < need:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((need - tokens) / self.rate)
                raise RateLimited(
                    f"rate limit of {self.rate:g}/s exceeded",
                    retry_after_s=float(max(1, wait)),
                    details={"rate_per_s": self.rate, "burst": self.burst},
                )
            if len(self._buckets) >= _MAX_KEYS and key not in self._buckets:
                self._buckets.clear()  # bounded memory: full buckets are the default anyway
            self._buckets[key] = (tokens - cost, now)


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
