"""Backup during real traffic, restore into an empty directory, compare every table of every
store with the source as of the backup's consistent point, then serve the restored copy."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from tests.support.cli import cli, run
from tests.support.net import free_port
from tests.support.serve import make_source, make_token
from tests.support.state import dump_state
from tests.support.wait import until

from segflow.backup import create_backup
from segflow.backup.archive import SQLITE_STORES

Dump = dict[str, dict[str, list[tuple[Any, ...]]]]


def _rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=repr)


def dump_sqlite(con: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    names = [
        r[0]
        for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {name: _rows(con.execute(f'SELECT * FROM "{name}"').fetchall()) for name in names}


def dump_duckdb(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    names = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            " AND table_catalog = current_database()"
        ).fetchall()
    ]
    return {name: _rows(con.execute(f'SELECT * FROM "{name}"').fetchall()) for name in names}


def dump_rocks(state: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The RocksDB state as tables: one per namespace, plus ``_offsets``."""
    return {ns: [tuple(row) for row in rows] for ns, rows in dump_state(state).items()}


def stores_of(store: str) -> list[str]:
    """The stores an embedded deployment has (``keys.sqlite`` is the Kafka driver's)."""
    embedded = [n for n in SQLITE_STORES if n != "keys.sqlite"]
    if store == "rocksdb":
        return [*(n for n in embedded if n != "state.sqlite"), "state"]
    return embedded


def dump_dir(data: Path, store: str) -> Dump:
    out: Dump = {}
    for name in stores_of(store):
        if name == "state":
            out[name] = dump_rocks(data / "state")
            continue
        con = sqlite3.connect(data / name)
        out[name] = dump_sqlite(con)
        con.close()
    con_wh = duckdb.connect(str(data / "warehouse.duckdb"))
    out["warehouse.duckdb"] = dump_duckdb(con_wh)
    con_wh.close()
    return out


class Traffic(threading.Thread):
    """Batches of 40 events, users moving forward in a window so early users finish early."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.stop = threading.Event()
        self.acked: dict[str, str] = {}  # messageId -> userId, for 200-acked batches
        self.batches = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, auth=(self.key, ""), timeout=30) as client:
            k = 0
            while not self.stop.is_set():
                events = []
                for i in range(40):
                    user = f"u{k * 4 + i % 16}"
                    kind = "Order Completed" if i % 3 == 0 else "Product Viewed"
                    events.append({"type": "track", "userId": user, "event": kind,
                                   "messageId": f"b{k}-{i}", "properties": {"revenue": i},
                                   "context": {"traits": {"email": f"{user}@example.com"}}})  # fmt: skip
                events.append({"type": "identify", "userId": f"u{k * 4}", "messageId": f"b{k}-id",
                               "traits": {"plan": "pro" if k % 2 else "free"}})  # fmt: skip
                answer = client.post("/v1/batch", json={"batch": events})
                if answer.status_code == 200:
                    for e in events:
                        self.acked[e["messageId"]] = e["userId"]
                k += 1
                self.batches = k


@pytest.mark.slow
@pytest.mark.parametrize("store", ["rocksdb", pytest.param("sqlite", marks=pytest.mark.long)])
def test_backup_during_traffic_restores_every_table_and_serves_the_same_profiles(
    store: str, tmp_path: Path, serve_factory: Callable[..., Any], request: pytest.FixtureRequest
) -> None:
    data = tmp_path / "data"
    key = make_source(data, "web")
    token = make_token(data, "admin")
    env = {"SEGFLOW_ACTIVATE__ALLOW_LIST": '["127.0.0.1/32"]', "SEGFLOW_WAREHOUSE__FLUSH_INTERVAL_MS": "100", "SEGFLOW_STREAM__STORE": store}  # fmt: skip
    source = serve_factory(data=data, env=env, source=None, role=None)
    auth = {"Authorization": f"Bearer {token}"}
    api = httpx.Client(base_url=source.url, headers=auth, timeout=30)
    request.addfinalizer(api.close)  # closed however the test ends
    rules = [("segments", "buyers", 'did "Order Completed"'),
             ("traits", "spent", 'sum(revenue of "Order Completed")')]  # fmt: skip
    for kind, name, rule in rules:
        assert api.post(f"/api/v1/{kind}", json={"name": name, "rule": rule}).status_code == 201
    hook = f"http://127.0.0.1:{free_port()}/closed"  # failing deliveries: the queue moves
    made = api.post("/api/v1/destinations", json={"name": "crm", "url": hook, "subscriptions": [{"segment": "buyers"}]})  # fmt: skip
    assert made.status_code == 201, made.text

    traffic = Traffic(source.url, key)
    traffic.start()
    until(lambda: traffic.batches >= 20)
    reference: Dump = {}

    def at_point(readers: dict[str, sqlite3.Connection], wh: Any) -> None:
        # every writer is blocked now: fresh connections see exactly the consistent point
        for path in readers:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            reference[Path(path).name] = dump_sqlite(con)
            con.close()
        if store == "rocksdb":  # its commits are held too: a fresh secondary sees the point
            reference["state"] = dump_rocks(data / "state")
        reference["warehouse.duckdb"] = dump_duckdb(wh)

    out = tmp_path / "backup"
    manifest = create_backup(data, out, while_locked=at_point)
    during = traffic.batches
    until(lambda: traffic.batches >= during + 10)  # traffic went on after the backup
    traffic.stop.set()
    traffic.join(30)
    assert sorted(reference) == sorted([*stores_of(store), "warehouse.duckdb"])
    assert sum(len(reference["log.sqlite"]["records"]) for _ in [0]) > 0

    # the consistent point: every consumer is at or behind what it consumes
    point = manifest.point
    ends = point["log"]["end_offsets"]
    assert all(point["state"]["offsets"].get(p, 0) <= e for p, e in ends.items())
    wh_cursors = point["warehouse"]["cursors"]
    assert all(wh_cursors.get(f"log:{p}", 0) <= e for p, e in ends.items())
    assert wh_cursors.get("changes", 0) <= point["state"]["outbox_seq"]
    assert point["delivery"]["cursors"].get("feed", 0) <= point["state"]["outbox_seq"]
    names = {f.name.split("/")[0] for f in manifest.files}
    assert names >= {*stores_of(store), "warehouse.duckdb", "console_secret"}
    assert store == "sqlite" or "state.sqlite" not in names
    assert all(f.kind == "rocksdb" for f in manifest.files if f.name.startswith("state/"))

    # restore: refused into a non-empty directory, then into an empty one
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "x").write_text("x")
    refused = subprocess.run([sys.executable, "-m", "segflow.cli.main", "restore", str(out), "--data-dir", str(occupied)],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 2 and "target_not_empty" in refused.stderr
    restored = tmp_path / "restored"
    cli("restore", str(out), "--data-dir", str(restored))
    assert (restored / "console_secret").read_bytes() == (data / "console_secret").read_bytes()
    copy = dump_dir(restored, store)
    for store, tables in reference.items():
        assert sorted(copy[store]) == sorted(tables), store
        for table, rows in tables.items():
            assert len(copy[store][table]) == len(rows), (store, table)
            assert copy[store][table] == rows, (store, table)

    # the log is append-only: the backup's records are the source's, at the same offsets
    until(lambda: api.get("/api/v1/status").json()["parts"]["processor"]["lag"] == 0)
    live = sqlite3.connect(f"file:{data / 'log.sqlite'}?mode=ro", uri=True)
    source_records = {(p, o): payload for p, o, _, payload in live.execute("SELECT * FROM records")}
    positions = _positions(live)
    live.close()
    for p, o, _, payload in reference["log.sqlite"]["records"]:
        assert source_records[(p, o)] == payload

    # serve the restored copy: same profiles and memberships for people whose every event
    # is in the backup (the others got events after the consistent point)
    assert len(traffic.acked) == len(positions)  # every acked message is in the source log
    cut = {int(p): e for p, e in ends.items()}
    users: dict[str, bool] = {}
    for message_id, user in traffic.acked.items():
        p, o = positions[message_id]
        users[user] = users.get(user, True) and o < cut[p]
    complete = sorted(u for u, inside in users.items() if inside)
    assert len(complete) >= 10, "too few people entirely before the backup"
    copy_server = serve_factory(data=restored, env=env, source=None, role=None)
    copy_api = httpx.Client(base_url=copy_server.url, headers=auth, timeout=30)
    request.addfinalizer(copy_api.close)

    last: dict[str, Any] = {}

    def drained() -> bool:
        # lag 0 and no backfill: the source may have been mid-way through backfilling the
        # rules (made while its first events were processed) at the consistent point, and
        # the copy finishes that backfill after it has read the log to its end
        parts = last["parts"] = copy_api.get("/api/v1/status").json()["parts"]
        processor, loader = parts["processor"], parts["warehouse_loader"]
        return bool(processor["lag"] == 0 and not processor["backfilling"] and loader["lag"] == 0)

    try:  # a liveness bound: a loaded machine replays slowly, a hang still fails
        until(drained, deadline_s=90)
    except AssertionError as exc:
        raise AssertionError(f"the restored copy did not drain: {last.get('parts')}") from exc
    for user in complete:
        mine = copy_api.get(f"/api/v1/profiles/user_id:{user}")
        theirs = api.get(f"/api/v1/profiles/user_id:{user}")
        assert mine.status_code == theirs.status_code == 200
        assert mine.json() == theirs.json(), user
    members_copy = set(
        copy_api.get("/api/v1/segments/buyers/members?limit=10000").json()["members"]
    )
    members_source = set(api.get("/api/v1/segments/buyers/members?limit=10000").json()["members"])
    ids = {api.get(f"/api/v1/profiles/user_id:{u}").json()["id"] for u in complete}
    assert ids & members_copy == ids & members_source and ids & members_source
    api.close()
    copy_api.close()


def _positions(log: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    from segflow.spec.events import decode_event

    return {
        decode_event(payload).message_id: (int(p), int(o))
        for p, o, payload in log.execute("SELECT partition, offset, payload FROM records")
    }


@pytest.mark.long  # ~25 s: three server starts
def test_backup_through_the_server_when_it_keeps_the_warehouse_open(
    tmp_path: Path, serve_factory: Callable[..., Any]
) -> None:
    data = tmp_path / "data"
    key = make_source(data, "web")
    token = make_token(data, "admin")
    reader = make_token(data, "editor")
    env = {"SEGFLOW_WAREHOUSE__RELEASE_BETWEEN_BATCHES": "false", "SEGFLOW_WAREHOUSE__LOCK_TIMEOUT_S": "1"}  # fmt: skip
    server = serve_factory(data=data, env=env, source=None, role=None)
    events = [{"type": "track", "userId": f"u{i}", "event": "E", "messageId": f"m{i}"} for i in range(50)]  # fmt: skip
    assert httpx.post(f"{server.url}/v1/batch", json={"batch": events}, auth=(key, "")).status_code == 200  # fmt: skip
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
    until(lambda: api.get("/api/v1/status").json()["parts"]["warehouse_loader"]["lag"] == 0)

    # another process cannot open the warehouse the server keeps open: a clear error
    local = subprocess.run([sys.executable, "-m", "segflow.cli.main", "backup", str(tmp_path / "local"), "--data-dir", str(data)],
                           capture_output=True, text=True, timeout=120, env={**os.environ, **env})  # fmt: skip
    assert local.returncode == 2 and "warehouse_busy" in local.stderr, local.stderr

    out = tmp_path / "remote"
    editor = httpx.post(f"{server.url}/api/v1/backups", json={"path": str(out)}, headers={"Authorization": f"Bearer {reader}"})  # fmt: skip
    assert editor.status_code == 403  # admin only
    relative = api.post("/api/v1/backups", json={"path": "relative/dir"})
    assert relative.status_code == 400
    assert relative.json()["error"]["details"]["field"] == "path"
    printed = run("backup", str(out), "--url", server.url, "--token", token, check=True).stdout
    assert "backup written to" in printed
    again = api.post("/api/v1/backups", json={"path": str(out)})
    assert again.status_code == 409 and again.json()["error"]["code"] == "target_not_empty"
    audit = api.get("/api/v1/audit", params={"action": "backup."}).json()["entries"]
    assert [e["action"] for e in audit] == ["backup.create"]
    api.close()

    restored = tmp_path / "restored"
    cli("restore", str(out), "--data-dir", str(restored))
    con = duckdb.connect(str(restored / "warehouse.duckdb"))
    assert con.execute("SELECT count(*) FROM events").fetchone() == (50,)
    con.close()
    log = sqlite3.connect(restored / "log.sqlite")
    assert log.execute("SELECT count(*) FROM records").fetchone() == (50,)
    log.close()


def test_a_damaged_backup_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_source(data, "web")
    out = tmp_path / "backup"
    cli("backup", str(out), "--data-dir", str(data))
    with (out / "catalog.sqlite").open("r+b") as f:
        f.seek(200)
        f.write(b"\x00damaged")
    refused = subprocess.run([sys.executable, "-m", "segflow.cli.main", "restore", str(out), "--data-dir", str(tmp_path / "r")],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 2 and "backup_corrupt" in refused.stderr
    assert not (tmp_path / "r").exists()


def test_the_kafka_drivers_shredding_keys_are_backed_up_and_restored(tmp_path: Path) -> None:
    """Without its keys a restored Kafka deployment could not read its own topic: the key
    table is a store of the backup, copied at the consistent point, and restored as it was."""
    from segflow.backup import restore_backup
    from segflow.log.keys import SqliteKeyTable
    from segflow.log.shredding import Shredder
    from segflow.spec.events import Event

    data = tmp_path / "data"
    make_source(data, "web")
    shredder = Shredder(SqliteKeyTable(data / "keys.sqlite"))
    event = Event(message_id="m1", source_id="web", type="track", user_id="ann", event="Paid",
                  timestamp_ms=1, received_at_ms=1)  # fmt: skip
    sealed = shredder.seal_events([event], [b"ann paid"])
    shredder.table.close()
    manifest = create_backup(data, tmp_path / "backup")
    assert {f.name: f.kind for f in manifest.files}["keys.sqlite"] == "sqlite"
    restore_backup(tmp_path / "backup", tmp_path / "restored")
    restored = Shredder(SqliteKeyTable(tmp_path / "restored" / "keys.sqlite"))
    try:
        assert restored.open_many(sealed) == [b"ann paid"]
    finally:
        restored.table.close()
