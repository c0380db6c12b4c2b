"""After a deletion, no byte of the data directory holds the person: the canary test.

A real ``segflow serve`` (a child process) gets real traffic over the collection API: canary
identifiers (a userId, an anonymousId, an email, and strings inside properties and traits) of
one person, and the same for a control person. The canary's profile enters a segment, is
delivered to a real webhook receiver and to a file destination inside the data directory, has
a dead letter and warehouse rows. One ``POST /api/v1/regulations`` naming only the email
deletes it; once the regulation is ``finished`` (which includes compaction), every file under
the data directory — the log, state, delivery and catalog databases and their ``-wal``/``-shm``
files or the RocksDB state's WAL, SST and MANIFEST files, ``warehouse.duckdb`` and its
``.wal``, the file destination's outputs — is searched for the canaries' bytes (on each
embedded state store: RocksDB, the default, with its blocks uncompressed so that bytes can be
searched, and ``state.sqlite``). The control's identifiers must still be found in each store (which
proves the search can see what is there).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.support.serve import ALLOW_LOOPBACK
from tests.support.wait import until

TAG = uuid.uuid4().hex[:10]


def person(kind: str) -> dict[str, str]:
    return {
        "user": f"{kind}-user-{TAG}",
        "anon": f"{kind}-anon-{TAG}",
        "email": f"{kind}.{TAG}@example.org",
        "prop": f"{kind}-in-properties-{TAG}",
        "trait": f"{kind}-in-traits-{TAG}",
    }


def traffic(p: dict[str, str]) -> list[dict[str, Any]]:
    mid = uuid.uuid4().hex
    return [
        {"type": "page", "anonymousId": p["anon"], "name": "Home", "messageId": f"{mid}-1"},
        {
            "type": "identify",
            "anonymousId": p["anon"],
            "userId": p["user"],
            "messageId": f"{mid}-2",
            "traits": {"email": p["email"].upper(), "note": f"says {p['trait']}", "plan": "pro"},
        },
        {
            "type": "track",
            "userId": p["user"],
            "event": "Order Completed",
            "messageId": f"{mid}-3",
            "properties": {"revenue": 40, "comment": p["prop"]},
        },
    ]


def files_under(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def holding(files: dict[Path, bytes], needle: str) -> list[str]:
    """The stores holding ``needle``: a file's name (a RocksDB state file: ``state``)."""
    return [label(p) for p, data in files.items() if needle.encode() in data]


def label(path: Path) -> str:
    return "state" if path.parent.name == "state" else path.name


@pytest.mark.parametrize("store", ["rocksdb", "sqlite"])
def test_a_deleted_person_leaves_no_byte_in_the_data_directory(
    store: str,
    tmp_path: Path,
    serve_factory: Callable[..., Any],
    receiver_factory: Callable[..., Any],
) -> None:
    data = tmp_path / "data"
    hooks = receiver_factory()
    env = {"SEGFLOW_PRIVACY__POLL_INTERVAL_S": "0.2", "SEGFLOW_STREAM__STORE": store}
    # RocksDB's SST blocks as they are: compressed ones would hide the bytes searched for
    # (the control's, which must be found, as much as the canary's)
    env["SEGFLOW_STREAM__ROCKSDB_COMPRESSION"] = "none"
    serve = serve_factory(data=data, env={**ALLOW_LOOPBACK, **env})
    state = "state" if store == "rocksdb" else "state.sqlite"
    api, collector = serve.api, serve.collector
    canary, control = person("canary"), person("control")
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
            "deletion_notice": True,
            "subscriptions": [{"segment": "buyers", "traits": ["email", "note"]}],
        },
    )
    assert made.status_code == 201, made.text
    exports = data / "exports"
    made = api.post(
        "/api/v1/destinations",
        json={
            "name": "files",
            "kind": "file",
            "directory": str(exports),
            "subscriptions": [{"segment": "buyers", "traits": ["email"]}],
        },
    )
    assert made.status_code == 201, made.text

    for p in (canary, control):
        answer = collector.post("/v1/batch", json={"batch": traffic(p)})
        assert answer.status_code == 200 and answer.json()["refused"] == [], answer.text
        refused = collector.post(
            "/v1/track", json={"userId": p["user"], "properties": {"x": p["prop"]}}
        )
        assert refused.status_code == 400  # no event name: a dead letter holding the identifiers

    def member(p: dict[str, str]) -> bool:
        found = api.get(f"/api/v1/profiles/user_id:{p['user']}/segments/history")
        return found.status_code == 200 and bool(found.json()["recorded"])  # warehouse rows

    until(lambda: member(canary) and member(control))
    until(lambda: sum(b"segment.entered" in b for b in hooks.bodies) == 2)
    snap = api.post("/api/v1/destinations/files/snapshots/buyers")
    assert snap.status_code == 200, snap.text
    canary_id = api.get(f"/api/v1/profiles/user_id:{canary['user']}").json()["id"]
    before = files_under(data)
    assert holding(before, canary["email"]) and holding(before, canary["prop"])

    asked = api.post(
        "/api/v1/regulations",
        json={
            "type": "delete",
            "identifiers": [{"type": "email", "value": canary["email"].title()}],
        },
    )
    assert asked.status_code == 202, asked.text
    reg_id = asked.json()["id"]
    assert asked.json()["status"] == "pending"
    done = until(
        lambda: (
            (r := api.get(f"/api/v1/regulations/{reg_id}").json())["status"]
            in ("finished", "failed")
            and r
        ),
        deadline_s=120,
    )
    assert done["status"] == "finished", done
    assert done["result"]["profiles"] >= 1 and "compacted_ms" in done["result"]
    assert canary["email"] not in str(done)  # regulations show hashes, never identifiers

    # destinations heard the exit (with the identifiers) and the deletion notice, before erasure
    sent = [msgspec.json.decode(b) for b in hooks.bodies]
    exits = [s for s in sent if s["type"] == "segment.exited"]
    assert [e["data"]["profile_id"] for e in exits] == [canary_id]
    assert {"type": "email", "value": canary["email"]} in exits[0]["data"]["identifiers"]
    notices = [s for s in sent if s["type"] == "profile.deleted"]
    assert [n["data"]["profile_id"] for n in notices] == [canary_id]

    assert api.get(f"/api/v1/profiles/user_id:{canary['user']}").status_code == 404
    assert api.get(f"/api/v1/profiles/user_id:{control['user']}").status_code == 200

    assert "state_s" in done["result"]["compaction"]
    after = files_under(data)
    names = {label(p) for p in after}
    assert {
        "log.sqlite",
        state,
        "delivery.sqlite",
        "catalog.sqlite",
        "warehouse.duckdb",
    } <= names
    for needle in (
        canary["user"],
        canary["anon"],
        canary["email"],
        canary["prop"],
        canary["trait"],
    ):
        assert holding(after, needle) == [], needle
        assert holding(after, needle.upper()) == [], needle
    stores = {"log.sqlite", state, "delivery.sqlite", "warehouse.duckdb"}
    expected = {
        "user": stores,
        "anon": stores,
        "email": stores,
        "trait": stores,
        "prop": {"log.sqlite", "warehouse.duckdb"},
    }
    for key, where in expected.items():
        needle = control[key]
        found = {*holding(after, needle), *holding(after, needle.upper())}
        assert where <= found, (needle, found)
    exported = {p.name for p in after if exports in p.parents}
    assert exported and all(
        holding({p: d}, control["user"])
        for p, d in after.items()
        if p.name in exported and p.suffix == ".csv"
    )

    serve.stop()  # shutting down (checkpoints, closes) brings nothing back
    for needle in (
        canary["user"],
        canary["anon"],
        canary["email"],
        canary["prop"],
        canary["trait"],
    ):
        assert holding(files_under(data), needle) == [], needle
