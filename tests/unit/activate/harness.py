"""A deterministic harness for the delivery worker: an in-memory change feed, a request pool
that answers from a handler (no network), a manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpcore
import httpx
import msgspec

from segflow.activate.files import ExportRoot, FileSink
from segflow.activate.payloads import DictProfiles
from segflow.activate.service import ActivationService
from segflow.activate.ssrf import UrlGuard
from segflow.activate.store import DeliveryStore
from segflow.activate.worker import DeliveryWorker
from segflow.clock import ManualClock
from segflow.spec import AnyChange, ConsentChanged, MembershipChange

PUBLIC = UrlGuard(resolver=lambda host: ["93.184.216.34"])


class ListFeed:
    def __init__(self) -> None:
        self.items: list[AnyChange] = []

    def add(self, *changes: AnyChange) -> None:
        self.items.extend(changes)

    def read(self, after_seq: int, limit: int = 1000) -> list[tuple[int, AnyChange]]:
        return [(i + 1, c) for i, c in enumerate(self.items)][after_seq : after_seq + limit]


def mc(pid: str, kind: str, seq: int, segment: str = "vip") -> MembershipChange:
    return MembershipChange(profile_id=pid, segment=segment, kind=kind, at_ms=seq, sequence=seq)  # type: ignore[arg-type]


Handler = Callable[[httpx.Request], httpx.Response]


class MockPool:
    """A :class:`~segflow.activate.senders.RequestPool` answering from ``handler``, which sees
    an ``httpx.Request`` and returns an ``httpx.Response`` (or raises an httpcore error)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: list[tuple[str, str]],
        content: bytes,
        extensions: dict[str, Any],
    ) -> httpcore.Response:
        answer = self.handler(httpx.Request(method, url, headers=headers, content=content))
        return httpcore.Response(
            answer.status_code, headers=list(answer.headers.raw), content=answer.content
        )

    def close(self) -> None:
        return None


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        handler: Handler,
        lookup: DictProfiles | None = None,
        exports: ExportRoot | None = None,
    ) -> None:
        self.clock = ManualClock(1_000_000)
        self.requests: list[httpx.Request] = []
        self.statuses: dict[int, int] = {}  # id(request) -> the status answered
        self.lookup = lookup or DictProfiles()

        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            response = handler(request)
            self.statuses[id(request)] = response.status_code
            return response

        pool = MockPool(record)
        self.store = DeliveryStore(tmp_path / "delivery.sqlite")
        self.feed = ListFeed()
        self.service = ActivationService(
            self.store, guard=PUBLIC, lookup=self.lookup, clock=self.clock, pools=lambda n: pool,
            exports=exports,
        )  # fmt: skip
        self.worker = DeliveryWorker(
            self.store, self.feed, self.lookup, guard=PUBLIC, clock=self.clock, pools=lambda n: pool,
            file_sink=FileSink(exports=exports),
        )  # fmt: skip

    def passes(self, n: int = 1, advance_ms: int = 0) -> None:
        async def go() -> None:
            for _ in range(n):
                await self.worker.run_pass()
                self.clock.advance(advance_ms)
            await self.worker.aclose()

        asyncio.run(go())

    def pass_attempts(self) -> int:
        """One pass; how many requests it started."""

        async def go() -> int:
            try:
                return await self.worker.run_pass()
            finally:
                await self.worker.aclose()

        return asyncio.run(go())

    def bodies(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(r.content) for r in self.requests]

    def ok_bodies(self) -> list[dict[str, Any]]:
        """Bodies of the requests answered 2xx, in order."""
        return [
            msgspec.json.decode(r.content)
            for r in self.requests
            if 200 <= self.statuses.get(id(r), 0) < 300
        ]


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200)


def consent(pid: str, value: Any, seq: int) -> ConsentChanged:
    return ConsentChanged(profile_id=pid, consent=value, at_ms=seq, sequence=seq)
