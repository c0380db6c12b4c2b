"""Regressions for the 5xx answers the fuzzers found (tests/integration/ops/test_fuzz.py):
each request below once answered 500; each must now be a 4xx naming the field."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from segflow.config import load_settings
from segflow.server.compose import assemble
from segflow.serving.runtime import Runtime


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    settings = load_settings(
        overrides={
            "server": {"data_dir": str(tmp_path)},
            "activate": {"allow_list": ["127.0.0.1/32"]},
        }
    )
    runtime = Runtime.open(settings)
    parts = assemble(runtime)
    token = parts.tokens.create("admin")
    try:
        yield parts.mounts["/api"], token
    finally:
        parts.services[0].stop()  # the stores' closer
        runtime.close()


def call(app: Any, token: str, method: str, path: str, body: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://x", headers=headers
        ) as c:
            return await c.request(method, path, json=body)

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"since_ms": {"I": 222999340}}, "since_ms"),
        ({"since_ms": [None]}, "since_ms"),
        ({"since_ms": 2**70}, "since_ms"),
        ({"ids": [{"": 1}]}, "ids"),
        ({"ids": 5}, "ids"),
        ({"ids": [2**64]}, "ids"),
    ],
)
def test_dead_letter_replay_refuses_bad_fields(api: tuple[Any, str], body: Any, field: str) -> None:
    app, token = api
    made = call(
        app, token, "POST", "/api/v1/destinations", {"name": "crm", "url": "http://127.0.0.1:9/h"}
    )
    assert made.status_code == 201, made.text
    answer = call(app, token, "POST", "/api/v1/destinations/crm/dead-letters/replay", body)
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["error"]["details"]["field"] == field
    ok = call(
        app,
        token,
        "POST",
        "/api/v1/destinations/crm/dead-letters/replay",
        {"since_ms": 0, "ids": [1]},
    )
    assert ok.status_code == 200 and ok.json() == {"replayed": 0, "superseded": 0}


@pytest.mark.parametrize("job", [[""], {"a": 1}, "nonsense", 3])
def test_a_model_run_with_a_bad_job_is_refused(api: tuple[Any, str], job: Any) -> None:
    app, token = api
    made = call(app, token, "PUT", "/api/v1/models/churn", {"kind": "cluster", "k": 2})
    assert made.status_code == 200, made.text
    answer = call(app, token, "POST", "/api/v1/models/churn/runs", {"job": job})
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["error"]["details"]["field"] == "job"


@pytest.mark.parametrize("limit", ["x", "-1", "99999999999999999999"])
def test_model_runs_refuse_a_bad_limit(api: tuple[Any, str], limit: str) -> None:
    app, token = api
    assert call(app, token, "PUT", "/api/v1/models/churn", {"kind": "cluster"}).status_code == 200
    answer = call(app, token, "GET", f"/api/v1/models/churn/runs?limit={limit}", None)
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["error"]["details"]["field"] == "limit"
