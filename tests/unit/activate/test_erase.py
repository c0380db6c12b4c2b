"""Activation's part of a deletion: notices only to destinations that knew the person, in
the destination's format; queue entries gone; file outputs scrubbed only inside the data dir."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from segflow.activate.erase import (
    deletion_payload,
    erase_deliveries,
    pending,
    queue_deletion_notices,
    scrub_files,
)
from segflow.activate.files import LocalWriter, write_snapshot
from segflow.activate.models import Destination
from segflow.activate.store import DeliveryStore, NewDelivery


def change(dest: str, pid: str, kind: str = "entered") -> NewDelivery:
    return NewDelivery(
        destination=dest,
        profile_id=pid,
        webhook_id=f"w-{dest}-{pid}-{kind}",
        segment="vip",
        kind=kind,
        sequence=1,
        at_ms=1,
        payload={"data": {"identifiers": [{"type": "email", "value": f"{pid}@x.io"}]}},
    )


def test_notices_go_to_destinations_that_knew_the_profile(tmp_path: Path) -> None:
    store = DeliveryStore(tmp_path / "delivery.sqlite")
    for dest in (
        Destination(name="told", url="https://a.example", deletion_notice=True),
        Destination(name="never", url="https://b.example", deletion_notice=True),
        Destination(name="quiet", url="https://c.example"),
    ):
        store.put_destination(dest, create=True)
    with store.transaction() as con:
        store.enqueue(con, [change("told", "p1"), change("quiet", "p1")], now_ms=1)
    identities = {"p1": [("user_id", "u1"), ("email", "p1@x.io")]}
    assert queue_deletion_notices(store, identities, "reg_1", now_ms=5) == 1
    assert queue_deletion_notices(store, identities, "reg_1", now_ms=6) == 0  # idempotent
    [notice] = [d for d in store.deliveries("told") if d.kind == "deleted"]
    assert notice.payload["type"] == "profile.deleted"
    assert notice.payload["data"]["identifiers"][1] == {"type": "email", "value": "p1@x.io"}
    assert store.deliveries("never") == []
    assert pending(store, ["p1"]) == 3

    with store.transaction() as con:
        store.set_consent(con, "p1", {"advertising": False})
        store.set_consent(con, "p2", {"advertising": True})
    counts = erase_deliveries(store, ["p1"])
    assert counts == {
        "deliveries": 3, "attempts": 0, "sent_state": 2, "last_delivered": 0, "consents": 1,
    }  # fmt: skip
    with store.transaction() as con:
        assert store.consents(con, ["p1", "p2"]) == {"p2": {"advertising": True}}
    assert pending(store, ["p1"]) == 0 and store.deliveries("told") == []
    store.close()


def test_notice_formats() -> None:
    idents = [("user_id", "u1"), ("anonymous_id", "a1"), ("email", "Ann@X.io")]
    track = deletion_payload(
        Destination(name="d", url="https://x", payload_format="segment_track"),
        "p1",
        idents,
        "msg_1",
        0,
    )
    assert (track["event"], track["userId"], track["anonymousId"]) == (
        "Profile Deleted",
        "u1",
        "a1",
    )
    hashed = deletion_payload(
        Destination(name="d", url="https://x", identifiers="hashed"), "p1", idents, "msg_1", 0
    )
    assert hashed["data"]["identifiers"][2]["type"] == "email_sha256"
    assert "Ann@X.io" not in str(hashed)


def test_file_outputs_are_scrubbed_inside_the_data_directory_only(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "elsewhere"
    store = DeliveryStore(tmp_path / "delivery.sqlite")
    for name, root in (("in", data / "exports"), ("out", outside)):
        store.put_destination(Destination(name=name, kind="file", directory=str(root)), create=True)
        writer = LocalWriter(root)
        writer.append(
            "changes/h.csv", b"webhook_id,profile_id,payload\nw1,p1,ann@x.io\nw2,p2,bob@x.io\n"
        )
        write_snapshot(
            writer,
            "vip",
            [{"profile_id": "p1", "email": "ann@x.io"}, {"profile_id": "p2", "email": "bob@x.io"}],
            1_000,
        )
    assert scrub_files(store, data, ["p1"], ["ann@x.io"]) == 3  # change row, CSV and Parquet rows
    inside = (data / "exports").rglob("*")
    blobs = {p.name: p.read_bytes() for p in inside if p.is_file()}
    assert not any(b"ann@x.io" in b or b"p1" in b for b in blobs.values())
    assert all(b"bob@x.io" in b for b in blobs.values())
    [parquet] = (data / "exports").rglob("*.parquet")
    assert pq.read_table(parquet).to_pylist() == [{"email": "bob@x.io", "profile_id": "p2"}]
    untouched = [p.read_bytes() for p in outside.rglob("*") if p.is_file()]
    assert all(b"ann@x.io" in b for b in untouched)  # a downstream system's, not ours
    store.close()
