"""``/api/v1/profiles/{ident}/scores``: a profile's scores with the reasons the job stored."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from segflow.config import load_settings
from segflow.ml.registry import Registry
from segflow.server.compose import assemble
from segflow.serving.runtime import Runtime
from segflow.spec import Event
from segflow.stream.compose import build_reader


def test_scores_come_with_their_reasons(tmp_path: Path) -> None:
    runtime = Runtime.open(load_settings(overrides={"server": {"data_dir": str(tmp_path)}}))
    parts = assemble(runtime)
    try:
        runtime.log.append(
            [
                Event(
                    type="track",
                    message_id="m1",
                    source_id="s",
                    timestamp_ms=1_000,
                    received_at_ms=1_000,
                    user_id="u1",
                    event="Viewed",
                )
            ]
        )
        parts.processor.run_once()

        found = build_reader(runtime.settings, runtime.log).lookup("user_id", "u1")
        assert found is not None
        parts.processor.put_scores("churn", [(found.profile_id, 0.83)], at_ms=2_000)
        parts.processor.put_scores("churn:top", [(found.profile_id, 0.25)], at_ms=2_000)
        parts.processor.run_once()
        con = parts.segments.warehouse()  # type: ignore[misc]
        Registry(con)  # the ML schema, as a job creates it
        con.execute(
            "INSERT INTO ml_score_reasons VALUES (?, 'churn', ?)",
            [found.profile_id, '[{"feature": "recency_days", "contribution": 0.4}]'],
        )
        con.close()
        token = parts.tokens.create("read")
        body = asyncio.run(_get(parts.mounts["/api"], token, "/api/v1/profiles/user_id:u1/scores"))
        # the run's rank is shown with the model's score, not as a model of its own
        assert body["scores"] == {
            "churn": {
                "score": 0.83,
                "reasons": [{"feature": "recency_days", "contribution": 0.4}],
                "top_share": 0.25,
            }
        }
    finally:
        for service in parts.services[:1]:
            service.stop()
        runtime.close()


async def _get(app: Any, token: str, path: str) -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://segflow") as client:
        r = await client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return r.json()
