"""The delivery worker: a background service (``start()``/``stop()``) for ``segflow serve``.

One asyncio loop in its own thread schedules. A feed task moves changes from the processor's
feed into the queue; one runner per destination sends the heads of its per-profile queues
with its own ``httpx.Client`` and thread pool (``concurrency`` threads), and rate limit, so a slow or dead destination never delays the
others. Every outcome is written to ``delivery.sqlite`` before the next change of that profile
is sent.

Tests drive the same code deterministically with :meth:`DeliveryWorker.run_pass` and a
:class:`~segflow.clock.ManualClock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from segflow.activate.exceptions import (
    DestinationGoneError,
    DestinationNotFoundError,
    RejectedDeliveryError,
    RetryableDeliveryError,
)
from segflow.activate.feeder import Feeder
from segflow.activate.files import FileSink
from segflow.activate.models import Delivery, Destination
from segflow.activate.payloads import ProfileLookup
from segflow.activate.policy import next_attempt_ms
from segflow.activate.senders import RequestPool, WebhookSender, batch_id
from segflow.activate.ssrf import UrlGuard, pinned_pool
from segflow.activate.store import DeliveryStore
from segflow.clock import Clock, WallClock
from segflow.spec import ChangeFeed

log = logging.getLogger("segflow.activate")
FEED_BATCH = 1000


class TokenBucket:
    """A per-destination rate limit in requests per second: a burst of up to one second's
    worth, then one request every ``1 / rate`` seconds.

    >>> waits = []
    >>> async def sleep(s): waits.append(s)
    >>> bucket = TokenBucket(2, monotonic=lambda: 0.0, sleep=sleep)
    >>> async def take(n):
    ...     for _ in range(n): await bucket.take()
    >>> asyncio.run(take(4)); waits
    [0.5, 0.5]
    """

    def __init__(
        self,
        rate_per_s: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate_per_s
        self.capacity = max(1.0, rate_per_s)
        self.tokens = self.capacity
        self.monotonic = monotonic
        self.sleep = sleep
        self.stamp = monotonic()

    async def take(self) -> None:
        now = self.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            await self.sleep((1 - self.tokens) / self.rate)
            self.tokens = 1.0
            self.stamp = self.monotonic()
        self.tokens -= 1


class _Runner:
    """Sends one destination's queue: at most one request in flight per profile."""

    def __init__(self, worker: DeliveryWorker, name: str) -> None:
        self.worker = worker
        self.name = name
        self.busy: set[str] = set()
        self.requests = 0
        self.wake = asyncio.Event()
        self.sender: WebhookSender | None = None
        self.threads: ThreadPoolExecutor | None = None
        self.bucket: TokenBucket | None = None
        self.size = 0  # the concurrency the connections and threads were made for
        self.not_before_ms = 0

    def _sender(self, dest: Destination) -> tuple[WebhookSender, ThreadPoolExecutor]:
        """This destination's own connection pool and threads (measured: blocking requests in
        threads cost about a third of httpx's async client per request here); remade, once
        idle, when the destination's concurrency changes."""
        if self.size != dest.concurrency and self.requests <= 1:  # only the caller's in flight
            self._close()
        if self.sender is None or self.threads is None:
            n = self.size = max(1, dest.concurrency)
            pool = self.worker.pools(n)
            self.sender = WebhookSender(pool, self._secrets, wall_s=self.worker.wall_s)
            self.threads = ThreadPoolExecutor(
                max_workers=n, thread_name_prefix=f"segflow-deliver-{self.name}"
            )
        return self.sender, self.threads

    async def dispatch(self) -> list[asyncio.Task[None]]:
        """Start a request for every due head (or frozen batch) the destination has room for."""
        try:
            dest = self.worker.store.destination(self.name)
        except DestinationNotFoundError:
            return []
        free = dest.concurrency - self.requests
        if not dest.enabled or free <= 0:
            return []
        now_ms = self.worker.clock.now_ms()
        heads = self.worker.store.ready(self.name, now_ms, free * max(1, dest.batch_max), self.busy)
        tasks = []
        if (self.bucket.rate if self.bucket else None) != dest.rate_limit_per_s:
            self.bucket = TokenBucket(dest.rate_limit_per_s) if dest.rate_limit_per_s else None
        for chunk in self._chunks(dest, heads, now_ms)[:free]:
            if self.bucket is not None:
                await self.bucket.take()
            self.busy.update(d.profile_id for d in chunk)
            self.requests += 1
            tasks.append(asyncio.create_task(self._attempt(dest, chunk)))
        return tasks

    def _chunks(
        self, dest: Destination, heads: Sequence[Delivery], now_ms: int
    ) -> list[list[Delivery]]:
        """Requests to send: frozen batches whole, a change tried before alone, and new
        changes grouped by ``batch_max`` (each group frozen before its first attempt)."""
        store, size = self.worker.store, max(1, dest.batch_max)
        chunks: list[list[Delivery]] = []
        keys: dict[str, None] = {}
        new: list[Delivery] = []
        for d in heads:
            if d.batch_key is not None:
                keys[d.batch_key] = None
            elif d.attempts > 0 or d.first_attempt_ms is not None or size == 1:
                chunks.append([d])
            else:
                new.append(d)
        for key in keys:
            members, all_heads = store.batch(key)
            due = all(m.next_attempt_ms <= now_ms for m in members)
            if members and all_heads and due and not self.busy & {m.profile_id for m in members}:
                chunks.append(members)
        if 0 < len(new) < size and dest.batch_wait_ms > 0:
            wait_until = min(d.created_ms for d in new) + dest.batch_wait_ms
            if now_ms < wait_until:
                self.not_before_ms = wait_until
                new = []
        for i in range(0, len(new), size):
            group = new[i : i + size]
            chunks.append(store.freeze(group, batch_id(group)) if size > 1 else group)
        return sorted(chunks, key=lambda c: c[0].id)

    async def _attempt(self, dest: Destination, chunk: Sequence[Delivery]) -> None:
        started_ms = self.worker.clock.now_ms()
        t0 = time.perf_counter()
        status: int | None = None
        try:
            status = await self._send(dest, chunk, started_ms)
            self._record(chunk, started_ms, t0, status=status, error=None, outcome="delivered")
        except DestinationGoneError as exc:
            self._gone(dest, chunk, started_ms, t0, exc)
        except RejectedDeliveryError as exc:
            self._record(
                chunk, started_ms, t0, status=exc.status, error=exc.message, outcome="dead"
            )
        except RetryableDeliveryError as exc:
            self._retry(dest, chunk, started_ms, t0, exc)
        except Exception as exc:  # a bug must not stop the destination: retry and log it
            log.exception("delivery to %s failed unexpectedly", self.name)
            self._retry(dest, chunk, started_ms, t0, RetryableDeliveryError(repr(exc)))
        finally:
            self.busy.difference_update(d.profile_id for d in chunk)
            self.requests -= 1
            self.wake.set()

    async def _send(self, dest: Destination, chunk: Sequence[Delivery], now_ms: int) -> int:
        if dest.kind == "file":
            return await asyncio.to_thread(self.worker.file_sink.write, dest, chunk, now_ms)
        sender, threads = self._sender(dest)
        return await asyncio.get_running_loop().run_in_executor(threads, sender.send, dest, chunk)

    def _secrets(self, name: str) -> list[str]:
        return self.worker.store.live_secrets(name, int(self.worker.wall_s() * 1000))

    def _record(
        self,
        chunk: Sequence[Delivery],
        at_ms: int,
        t0: float,
        *,
        status: int | None,
        error: str | None,
        outcome: str,
        next_ms: int = 0,
    ) -> None:
        latency_ms = (time.perf_counter() - t0) * 1000
        self.worker.store.record(
            chunk,
            at_ms,
            status=status,
            error=error,
            latency_ms=latency_ms,
            outcome=outcome,
            next_attempt_ms=next_ms,
        )

    def _retry(
        self,
        dest: Destination,
        chunk: Sequence[Delivery],
        at_ms: int,
        t0: float,
        exc: RetryableDeliveryError,
    ) -> None:
        """Schedule the request again (one time for all its changes: a batch stays whole), or
        dead-letter it past the horizon (counted from its first attempt)."""
        nxt = next_attempt_ms(
            exc,
            now_ms=at_ms,
            attempt=max(d.attempts for d in chunk) + 1,
            base_ms=dest.backoff_base_ms,
            max_ms=dest.backoff_max_ms,
            jitter=0.5 + self.worker.rng.random() / 2,
        )
        first = min(d.first_attempt_ms if d.first_attempt_ms is not None else at_ms for d in chunk)
        dead = nxt > first + dest.horizon_ms
        self._record(
            chunk,
            at_ms,
            t0,
            status=exc.status,
            error=exc.message,
            outcome="dead" if dead else "pending",
            next_ms=0 if dead else nxt,
        )

    def _gone(
        self,
        dest: Destination,
        chunk: Sequence[Delivery],
        at_ms: int,
        t0: float,
        exc: DestinationGoneError,
    ) -> None:
        self._record(
            chunk, at_ms, t0, status=410, error=exc.message, outcome="pending", next_ms=at_ms
        )
        reason = f"disabled: {dest.url} answered 410 Gone; queued changes are kept"
        store = self.worker.store
        store.put_destination(
            msgspec.structs.replace(
                store.destination(dest.name),
                enabled=False,
                disabled_reason=reason,
                updated_ms=at_ms,
            ),
            create=False,
        )
        store.add_notice(dest.name, at_ms, "error", reason)
        log.error("destination %s %s", dest.name, reason)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self.wake.clear()
            try:
                await self.dispatch()
            except Exception:
                log.exception("destination %s: dispatch failed", self.name)
            await self._idle()

    async def _idle(self) -> None:
        """Sleep until woken, the next retry is due, or the poll interval passes."""
        timeout_s = self.worker.poll_interval_ms / 1000
        now_ms = self.worker.clock.now_ms()
        for when in (self.worker.store.next_due_ms(self.name), self.not_before_ms):
            if when and when > now_ms:
                timeout_s = min(timeout_s, (when - now_ms) / 1000)
        self.not_before_ms = 0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=timeout_s)

    async def aclose(self) -> None:
        self._close()

    def _close(self) -> None:
        if self.threads is not None:
            self.threads.shutdown(wait=False, cancel_futures=True)
            self.threads = None
        if self.sender is not None:
            self.sender.pool.close()
            self.sender = None


class DeliveryWorker:
    """Feeds the queue from the change feed and delivers it; ``start()``/``stop()`` in a thread.

    >>> import tempfile, os
    >>> from segflow.activate.payloads import DictProfiles
    >>> class EmptyFeed:
    ...     def read(self, after_seq, limit=1000): return []
    >>> store = DeliveryStore(os.path.join(tempfile.mkdtemp(), "delivery.sqlite"))
    >>> worker = DeliveryWorker(store, EmptyFeed(), DictProfiles(), guard=UrlGuard())
    >>> worker.start(); worker.stop()
    """

    name = "delivery"  # a segflow.server.services.Service

    def __init__(
        self,
        store: DeliveryStore,
        feed: ChangeFeed,
        lookup: ProfileLookup,
        *,
        guard: UrlGuard,
        clock: Clock | None = None,
        wall_s: Callable[[], float] = time.time,
        poll_interval_ms: int = 50,
        feed_interval_ms: int = 5,
        rng: random.Random | None = None,
        pools: Callable[[int], RequestPool] | None = None,
        file_sink: FileSink | None = None,
        retention_ms: int | None = 7 * 86_400_000,
    ) -> None:
        self.store = store
        self.feed = feed
        self.feeder = Feeder(store, lookup, clock)
        self.guard = guard
        self.clock = clock or WallClock()
        self.wall_s = wall_s
        self.poll_interval_ms = poll_interval_ms
        self.feed_interval_ms = feed_interval_ms
        self.rng = rng or random.Random()
        self.pools = pools or (lambda size: pinned_pool(guard, size))
        self.file_sink = file_sink or FileSink()
        self.retention_ms = retention_ms
        self._pruned_ms = 0
        self._runners: dict[str, _Runner] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._feed_wake: asyncio.Event | None = None
        self._ready = threading.Event()

    # -- deterministic driving (tests, replays) ------------------------------------------
    async def run_pass(self) -> int:
        """Queue everything the feed has, then attempt every due head once; returns attempts."""
        while self.feeder.pump(self.feed, FEED_BATCH).read == FEED_BATCH:
            pass
        tasks: list[asyncio.Task[None]] = []
        for dest in self.store.destinations():
            tasks += await self._runner(dest.name).dispatch()
        await asyncio.gather(*tasks)
        return len(tasks)

    async def aclose(self) -> None:
        for runner in self._runners.values():
            await runner.aclose()
        self._runners.clear()

    def _runner(self, name: str) -> _Runner:
        if name not in self._runners:
            self._runners[name] = _Runner(self, name)
        return self._runners[name]

    # -- the background service ----------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread; returns once its loop runs."""
        if self._thread is not None:
            return
        self._ready.clear()
        self._thread = threading.Thread(target=self._main, name="segflow-delivery", daemon=True)
        self._thread.start()
        self._ready.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop sending (in-flight requests are abandoned and retried on the next start)."""
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout_s)
        self._thread = None

    def notify(self) -> None:
        """Wake the feed task now (the processor calls this after committing changes)."""
        loop, wake = self._loop, self._feed_wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._feed_wake = asyncio.Event()
        self._ready.set()
        feeding = asyncio.create_task(self._feed_loop(self._stopping))
        try:
            while not self._stopping.is_set():
                self._sync_runners(self._stopping)
                self._maybe_prune()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=1.0)
        finally:
            feeding.cancel()
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(feeding, *self._tasks.values(), return_exceptions=True)
            self._tasks.clear()
            await self.aclose()

    def _maybe_prune(self) -> None:
        """Forget delivered rows older than the retention, at most every ten minutes."""
        now_ms = self.clock.now_ms()
        if self.retention_ms is None or now_ms - self._pruned_ms < 600_000:
            return
        self._pruned_ms = now_ms
        try:
            self.store.prune(now_ms - self.retention_ms)
        except Exception:
            log.exception("pruning the delivery log failed")

    def _sync_runners(self, stopping: asyncio.Event) -> None:
        names = {d.name for d in self.store.destinations()}
        for name in names - set(self._tasks):
            self._tasks[name] = asyncio.create_task(self._runner(name).run(stopping))
        for name in set(self._tasks) - names:
            self._tasks.pop(name).cancel()

    async def _feed_loop(self, stopping: asyncio.Event) -> None:
        assert self._feed_wake is not None
        while not stopping.is_set():
            self._feed_wake.clear()
            try:
                result = await asyncio.to_thread(self.feeder.pump, self.feed, FEED_BATCH)
            except Exception:
                log.exception("reading the change feed failed")
                result = None
            if result is not None and result.queued:
                self._sync_runners(stopping)
                for runner in self._runners.values():
                    runner.wake.set()
            if result is not None and result.read == FEED_BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._feed_wake.wait(), timeout=self.feed_interval_ms / 1000)

    def status(self) -> dict[str, Any]:
        """What the worker is doing: running, and per destination the requests in flight."""
        return {
            "running": self._thread is not None,
            "in_flight": {n: r.requests for n, r in self._runners.items()},
        }
