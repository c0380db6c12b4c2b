"""Token buckets and admission, with an injected clock."""

from __future__ import annotations

import pytest

from segflow.collect.exceptions import Overloaded, RateLimited
from segflow.collect.limits import Admission, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=100, burst=200, now=clock)
    buckets.take("a", 200)
    with pytest.raises(RateLimited) as refused:
        buckets.take("a", 50)
    assert refused.value.retry_after_s == 1.0
    clock.now = 0.5  # 50 tokens back
    buckets.take("a", 50)
    clock.now = 100.0  # never more than the burst
    buckets.take("a", 200)
    with pytest.raises(RateLimited):
        buckets.take("a", 1)


def test_keys_have_their_own_buckets() -> None:
    buckets = TokenBuckets(rate=1, burst=5, now=Clock())
    buckets.take("a", 5)
    buckets.take("b", 5)
    with pytest.raises(RateLimited):
        buckets.take("a", 1)


def test_a_request_over_the_burst_passes_on_a_full_bucket_and_leaves_debt() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=10, burst=20, now=clock)
    buckets.take("a", 100)  # a big batch is slowed down, never refused forever
    clock.now = 5.0  # 50 tokens repaid of the 80 owed: still in debt
    with pytest.raises(RateLimited) as refused:
        buckets.take("a", 1)
    assert refused.value.retry_after_s == 4.0  # 40 tokens at 10/s: (-30 + 40) >= 1 at t=9.1
    clock.now = 10.0
    buckets.take("a", 1)


def test_rate_zero_disables_the_limit() -> None:
    buckets = TokenBuckets(rate=0, burst=0)
    assert not buckets.enabled
    for _ in range(1000):
        buckets.take("a", 10_000)


def test_admission_bounds_requests_in_flight() -> None:
    gate = Admission(2, retry_after_s=3)
    gate.enter()
    gate.enter()
    with pytest.raises(Overloaded) as refused:
        gate.enter()
    assert refused.value.retry_after_s == 3 and gate.inflight == 2
    gate.leave()
    gate.enter()
    unbounded = Admission(0)
    for _ in range(10_000):
        unbounded.enter()
