"""A small keep-alive HTTP/1.1 load generator (asyncio + uvloop) for the ingest benchmark.

No compiled generator (wrk) is installed on these machines; this one pre-builds request
bytes and does the minimum per request, and runs on its own core.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

BodyFactory = Callable[[int], bytes]


@dataclass
class Outcome:
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


def request_bytes(path: str, body: bytes, write_key: str) -> bytes:
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> int:
    """Send one request (``payload``: its bytes) on a keep-alive connection, read the whole
    answer; returns its status."""
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    at = lower.find(b"content-length:")
    length = int(lower[at + 15 : lower.find(b"\r\n", at)]) if at >= 0 else 0
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


async def _worker(
    port: int,
    path: str,
    key: str,
    bodies: BodyFactory,
    counter: itertools.count[int],
    deadline: float,
    out: Outcome,
    interval: float | None,
    start: float,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    scheduled = start
    try:
        while True:
            if interval is not None:
                scheduled += interval
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent_at = scheduled if interval is not None else time.perf_counter()
            if sent_at >= deadline or time.perf_counter() >= deadline:
                return  # paced and behind schedule at the end: the rest is not sent in a burst
            status = await exchange(reader, writer, request_bytes(path, bodies(next(counter)), key))
            if status == 200:
                out.ok += 1
            else:
                out.failed += 1
            if interval is not None:
                out.latencies_ms.append((time.perf_counter() - sent_at) * 1000)
    finally:
        writer.close()


def run_load(
    port: int,
    path: str,
    key: str,
    bodies: BodyFactory,
    counter: itertools.count[int],
    *,
    seconds: float,
    connections: int,
    rate: float | None = None,
) -> Outcome:
    """Closed loop (as fast as possible) when ``rate`` is None, else paced at ``rate`` req/s."""

    async def main() -> Outcome:
        out = Outcome()
        start = time.perf_counter()
        deadline = start + seconds
        interval = connections / rate if rate else None
        tasks = [
            _worker(
                port,
                path,
                key,
                bodies,
                counter,
                deadline,
                out,
                interval,
                start + (interval or 0) * i / connections,
            )
            for i in range(connections)
        ]
        await asyncio.gather(*tasks)
        out.seconds = time.perf_counter() - start
        return out

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())
