"""Retention against what the rules read: refused at start-up (ConfigError) and when a rule
that needs more history is saved (400), accepted when every rule fits."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from segflow.config import Settings, load_settings
from segflow.errors import ConfigError, ValidationError
from segflow.privacy.retention import DAY_MS, check, guard, needs
from segflow.rules import compile_segments
from segflow.segments.service import SegmentService
from segflow.segments.store import DefinitionStore
from segflow.server.compose import assemble
from segflow.serving.runtime import Runtime


def need(rule: str, traits: dict[str, str] | None = None) -> float:
    program = compile_segments({"s": rule, "other": 'did "X" in last 2 days'}, traits or {})
    return next(n.need_ms for n in needs(program) if n.name == "s")


@pytest.mark.parametrize(
    ("rule", "days"),
    [
        ('did "Login" in last 7 days', 7),
        ('count("Order Completed" in last 90 days) >= 2', 90),
        ('did "Login" in at least 3 of the last 4 weeks', 28),
        ('score "churn" > 0.5', 0),
        ('did "Login" in last 7 days and in segment "other"', 7),
        ('did "Login" in last 1 day or in segment "other"', 2),
    ],
)
def test_windowed_rules_need_their_window(rule: str, days: int) -> None:
    assert need(rule) == days * DAY_MS


@pytest.mark.parametrize(
    "rule",
    [
        'did "Signed Up"',
        'trait plan = "pro"',
        "first seen in last 7 days",
        "is anonymous",
        'did "Cart Viewed" then "Order Completed" within 1 hour',
        "computed spend > 10",
    ],
)
def test_rules_without_a_window_read_all_history(rule: str) -> None:
    assert math.isinf(need(rule, {"spend": 'sum(revenue of "Order Completed")'}))


def settings(tmp_path: Path, **sections: dict[str, object]) -> Settings:
    return load_settings(env={}, overrides={"server": {"data_dir": str(tmp_path)}, **sections})


def test_a_short_retention_is_refused_with_the_rules_named(tmp_path: Path) -> None:
    s = settings(tmp_path, log={"retention_ms": 30 * DAY_MS})
    program = compile_segments(
        {"active": 'did "Login" in last 7 days', "quarter": 'did "Login" in last 90 days'}
    )
    with pytest.raises(ConfigError) as caught:
        check(s, program)
    assert 'segment "quarter" (90 days)' in caught.value.message
    assert "log.retention_ms" in caught.value.message and "active" not in caught.value.message
    check(settings(tmp_path, log={"retention_ms": 90 * DAY_MS}), program)


def test_serve_refuses_to_start_and_the_api_refuses_the_rule(tmp_path: Path) -> None:
    store = DefinitionStore(tmp_path / "catalog.sqlite")
    SegmentService(store).put_segment("quarter", 'did "Login" in last 90 days')
    store.close()
    short = settings(tmp_path, warehouse={"retention_ms": 30 * DAY_MS})
    runtime = Runtime.open(short)
    try:
        with pytest.raises(ConfigError, match=r"warehouse\.retention_ms"):
            assemble(runtime)
    finally:
        runtime.close()

    fits = settings(tmp_path, warehouse={"retention_ms": 120 * DAY_MS})
    runtime = Runtime.open(fits)
    parts = assemble(runtime)
    try:
        token = parts.tokens.create("editor")
        answer = asyncio.run(
            _post(
                parts.mounts["/api"],
                token,
                {"name": "year", "rule": 'did "Login" in last 365 days'},
            )
        )
        assert answer.status_code == 400
        details = answer.json()["error"]["details"]
        assert details["field"] == "rule" and 'segment "year" (365 days)' in details["reason"]
        ok = asyncio.run(
            _post(
                parts.mounts["/api"],
                token,
                {"name": "month", "rule": 'did "Login" in last 30 days'},
            )
        )
        assert ok.status_code == 201
    finally:
        parts.services[0].stop()
        runtime.close()


def test_the_guard_refuses_before_anything_is_stored(tmp_path: Path) -> None:
    svc = SegmentService(
        DefinitionStore(tmp_path / "c.sqlite"),
        history_check=guard(settings(tmp_path, log={"retention_ms": DAY_MS})),
    )
    with pytest.raises(ValidationError):
        svc.put_segment("ever", 'did "Signed Up"')
    assert svc.segments() == {}
    svc.store.close()


async def _post(app: Any, token: str, body: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://segflow") as client:
        return await client.post("/api/v1/segments", json=body, headers=headers)
