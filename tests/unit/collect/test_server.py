"""The serve app's composition: mounts, lifespan, services, retention."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from segflow.config import load_settings
from segflow.server.app import build_app
from segflow.server.retention import LogRetention
from segflow.serving.runtime import Runtime
from segflow.spec.events import Event


class Recorder:
    name = "recorder"

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")


async def _mounted(scope: Any, receive: Any, send: Any) -> None:
    body = f"{scope['root_path']}|{scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_mounts_lifespan_and_services(tmp_path: Path) -> None:
    runtime = Runtime.open(load_settings(overrides={"server": {"data_dir": str(tmp_path)}}))
    calls: list[str] = []
    app = build_app(runtime, services=[Recorder(calls)], mounts={"/api": _mounted})

    async def go() -> tuple[str, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            mounted = (await client.get("/api/v1/x")).text
            health = (await client.get("/health")).status_code
        return mounted, health

    assert asyncio.run(go()) == ("/api|/v1/x", 200)
    assert _lifespan(app) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert calls == ["start", "stop"]


def test_retention_service_deletes_consumed_records(tmp_path: Path) -> None:
    runtime = Runtime.open(load_settings(overrides={"server": {"data_dir": str(tmp_path)}}))
    try:
        event = Event(
            type="track",
            message_id="m",
            source_id="s",
            timestamp_ms=0,
            received_at_ms=0,
            user_id="u",
            event="E",
        )
        ((partition, _),) = runtime.log.append([event])  # type: ignore[misc]
        retention = LogRetention(runtime.log, retention_ms=0, interval_s=3600)
        assert retention.run_once() == 0
        runtime.log.commit("loader", {partition: 1})
        assert retention.run_once() == 1
        retention.start()
        retention.stop()
    finally:
        runtime.close()


def _lifespan(app: Any) -> list[str]:
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    return [m["type"] for m in sent]


def test_a_server_in_its_own_process_freezes_its_start_up_heap_and_raises_the_gc_threshold(
    tmp_path: Path,
) -> None:
    import gc

    before = gc.get_threshold()
    settings = {"server": {"data_dir": str(tmp_path), "gc_threshold": before[0] + 12_345}}
    runtime = Runtime.open(load_settings(overrides=settings))
    app = build_app(runtime, own_process=True)
    try:
        assert _lifespan(app) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert gc.get_threshold()[0] == before[0] + 12_345
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_an_embedded_server_leaves_the_processs_garbage_collector_alone(tmp_path: Path) -> None:
    import gc

    before = gc.get_threshold()
    settings = {"server": {"data_dir": str(tmp_path), "gc_threshold": before[0] + 12_345}}
    app = build_app(Runtime.open(load_settings(overrides=settings)))
    assert _lifespan(app) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
