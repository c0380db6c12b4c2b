"""A ``segflow serve`` killed (SIGKILL) in the middle of a deletion resumes it on restart,
and the CLI queues and follows regulations like the API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.support.cli import run
from tests.support.serve import ALLOW_LOOPBACK
from tests.support.wait import until

TAG = uuid.uuid4().hex[:10]


def batch(user: str, anon: str, email: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "identify",
            "userId": user,
            "anonymousId": anon,
            "messageId": uuid.uuid4().hex,
            "traits": {"email": email},
        },
        {
            "type": "track",
            "userId": user,
            "event": "Order Completed",
            "messageId": uuid.uuid4().hex,
        },
    ]


@pytest.mark.slow
@pytest.mark.long  # ~35 s: a server killed and restarted at each step
def test_a_deletion_killed_midway_resumes_after_restart(
    tmp_path: Path,
    serve_factory: Callable[..., Any],
    receiver_factory: Callable[..., Any],
) -> None:
    data = tmp_path / "data"
    hooks = receiver_factory()
    env = {"SEGFLOW_PRIVACY__POLL_INTERVAL_S": "0.2", "SEGFLOW_PRIVACY__NOTIFY_TIMEOUT_S": "600"}
    serve = serve_factory(data=data, env={**ALLOW_LOOPBACK, **env})
    api = serve.api
    assert (
        api.post(
            "/api/v1/segments", json={"name": "buyers", "rule": 'did "Order Completed"'}
        ).status_code
        == 201
    )
    made = api.post(
        "/api/v1/destinations",
        json={
            "name": "crm",
            "url": hooks.url,
            "backoff_base_ms": 100,
            "backoff_max_ms": 200,
            "subscriptions": [{"segment": "buyers"}],
        },
    )
    assert made.status_code == 201, made.text
    ann = (f"ann-{TAG}", f"anon-ann-{TAG}", f"ann.{TAG}@example.org")
    bob = (f"bob-{TAG}", f"anon-bob-{TAG}", f"bob.{TAG}@example.org")
    for p in (ann, bob):
        assert serve.collector.post("/v1/batch", json={"batch": batch(*p)}).status_code == 200
    until(lambda: sum(b"segment.entered" in b for b in hooks.bodies) == 2)

    hooks.status = 503  # the exit cannot be delivered: the regulation waits in "notify"
    asked = api.post(
        "/api/v1/regulations",
        json={"type": "delete", "identifiers": [{"type": "user_id", "value": ann[0]}]},
    )
    reg_id = asked.json()["id"]
    until(lambda: api.get(f"/api/v1/regulations/{reg_id}").json()["step"] == "notify")
    serve.kill()

    hooks.status = 204
    serve.start()  # a new process on the same data directory
    restarted = serve
    until(
        lambda: (
            restarted.api.get(f"/api/v1/regulations/{reg_id}").json()["status"]
            in ("finished", "failed")
        ),
        deadline_s=120,
    )
    shown = json.loads(run("privacy", "status", reg_id, "--data-dir", str(data), check=True).stdout)
    assert shown["status"] == "finished", shown
    assert shown["attempts"] == 2  # resumed once
    exits = [json.loads(b) for b in hooks.bodies if b"segment.exited" in b]
    assert [e["data"]["identifiers"][0]["value"] for e in exits][:1] == [
        ann[0]
    ]  # sent after restart
    assert restarted.api.get(f"/api/v1/profiles/user_id:{ann[0]}").status_code == 404
    everything = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert ann[0].encode() not in everything and ann[2].encode() not in everything
    assert bob[0].encode() in everything

    # the CLI queues a regulation that the running server executes; --wait follows it
    out = json.loads(
        run(
            "privacy",
            "delete",
            "--suppress",
            "--email",
            bob[2],
            "--wait",
            "--data-dir",
            str(data),
            check=True,
        ).stdout
    )
    assert out["status"] == "finished" and out["type"] == "suppress_and_delete"
    assert restarted.api.get(f"/api/v1/profiles/user_id:{bob[0]}").status_code == 404
    listed = json.loads(run("privacy", "suppressions", "--data-dir", str(data), check=True).stdout)
    assert sorted(s["type"] for s in listed) == ["anonymous_id", "email", "user_id"]
    dropped = restarted.collector.post("/v1/batch", json={"batch": batch(*bob)})
    assert dropped.status_code == 200 and dropped.json()["accepted"] == 2
