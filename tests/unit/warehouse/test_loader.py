from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from segflow.clock import ManualClock
from segflow.config import WarehouseSettings
from segflow.log.memory import ListChangeFeed, MemoryEventLog
from segflow.spec import IdentityLinked, MembershipChange, ProfileMerged
from segflow.warehouse import loader as loader_module
from segflow.warehouse.connection import open_warehouse
from segflow.warehouse.loader import CONSUMER_GROUP, WarehouseLoader
from segflow.warehouse.schema import log_cursor_name


def _loader(
    tmp_path: Path, log: MemoryEventLog, feed: ListChangeFeed | None = None, **kw: object
) -> WarehouseLoader:
    settings = WarehouseSettings(**kw)  # type: ignore[arg-type]
    return WarehouseLoader(log, feed, tmp_path / "warehouse.duckdb", ManualClock(10), settings)


def _count(path: Path, sql: str = "SELECT count(*) FROM events") -> int:
    with open_warehouse(path, read_only=True) as con:
        row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_loads_every_event_with_typed_columns(tmp_path: Path, event_factory) -> None:
    log = MemoryEventLog(partitions=3)
    events = [
        event_factory(user_id=f"u{i}", timestamp_ms=1000 * i, properties={"i": i})
        for i in range(50)
    ]
    log.append(events)
    loader = _loader(tmp_path, log)
    infos = loader.run_until_idle()
    assert sum(i.events_loaded for i in infos) == 50
    with open_warehouse(loader.path, read_only=True) as con:
        row = con.execute(
            "SELECT timestamp_ms, epoch_ms(timestamp), properties->>'$.i', received_at_ms, loaded_at_ms "
            "FROM events WHERE user_id = 'u7'"
        ).fetchone()
    assert row == (7000, 7000, "7", 7000, 10)
    assert log.committed(CONSUMER_GROUP) == log.end_offsets()


def test_replaying_the_log_creates_no_duplicates(tmp_path: Path, event_factory) -> None:
    log = MemoryEventLog(partitions=2)
    log.append([event_factory(user_id=f"u{i}") for i in range(20)])
    _loader(tmp_path, log).run_until_idle()
    # Wipe the cursors: the loader re-reads the whole log, as after a restore.
    with open_warehouse(tmp_path / "warehouse.duckdb") as con:
        con.execute("DELETE FROM warehouse_cursors")
    infos = _loader(tmp_path, log).run_until_idle()
    assert sum(i.events_read for i in infos) == 20
    assert sum(i.duplicates for i in infos) == 20
    assert _count(tmp_path / "warehouse.duckdb") == 20


def test_same_message_id_twice_in_the_log_is_stored_once(tmp_path: Path, event_factory) -> None:
    log = MemoryEventLog(partitions=1)
    e = event_factory(message_id="dup")
    log.append([e, e])
    log.append([e])
    loader = _loader(tmp_path, log, batch_max_events=2)
    loader.run_until_idle()
    assert _count(loader.path) == 1


def test_same_message_id_in_two_sources_is_two_events(tmp_path: Path, event_factory) -> None:
    log = MemoryEventLog(partitions=1)
    log.append(
        [event_factory(message_id="x", source_id="a"), event_factory(message_id="x", source_id="b")]
    )
    loader = _loader(tmp_path, log)
    loader.run_once()
    assert _count(loader.path) == 2


def test_cursor_commits_with_the_data(tmp_path: Path, event_factory) -> None:
    log = MemoryEventLog(partitions=1)
    log.append([event_factory() for _ in range(5)])
    loader = _loader(tmp_path, log, batch_max_events=3)
    first = loader.run_once()
    assert first.offsets == {0: 3}
    with open_warehouse(loader.path, read_only=True) as con:
        pos = con.execute(
            "SELECT position FROM warehouse_cursors WHERE name = ?", [log_cursor_name(0)]
        ).fetchone()
    assert pos == (3,)
    assert loader.run_once().events_loaded == 2


def test_a_failed_batch_rolls_back_events_and_cursors(tmp_path: Path, event_factory) -> None:
    class BrokenFeed(ListChangeFeed):
        def read(self, after_seq: int, limit: int = 1000):  # type: ignore[no-untyped-def]
            return [(1, "not a change")]  # type: ignore[list-item]

    log = MemoryEventLog(partitions=1)
    log.append([event_factory()])
    loader = _loader(tmp_path, log, BrokenFeed())
    try:
        loader.run_once()
    except Exception:
        pass
    else:  # pragma: no cover
        raise AssertionError("a bad change must fail the batch")
    assert _count(loader.path) == 0
    assert _count(loader.path, "SELECT count(*) FROM warehouse_cursors") == 0


def test_anonymous_events_belong_to_the_merged_profile(tmp_path: Path, event_factory) -> None:
    log = MemoryEventLog(partitions=2)
    feed = ListChangeFeed()
    log.append([event_factory(anonymous_id="a1", user_id=None, event="Viewed")])
    loader = _loader(tmp_path, log, feed)
    loader.run_once()
    with open_warehouse(loader.path, read_only=True) as con:
        before = con.execute("SELECT profile_id FROM profile_events").fetchall()
    assert before == [("anon:a1",)]  # the documented fallback before any link
    feed.add(
        IdentityLinked(
            profile_id="p-anon", id_type="anonymousId", id_value="a1", at_ms=1, sequence=1
        )
    )
    log.append([event_factory(user_id="u9", event="Logged In")])
    feed.add(
        IdentityLinked(profile_id="p-user", id_type="user_id", id_value="u9", at_ms=2, sequence=1)
    )
    feed.add(
        ProfileMerged(survivor="p-user", absorbed="p-anon", reason="login", at_ms=3, sequence=2)
    )
    loader.run_until_idle()
    with open_warehouse(loader.path, read_only=True) as con:
        rows = con.execute("SELECT event, profile_id FROM profile_events ORDER BY event").fetchall()
        merged = con.execute(
            "SELECT merged_into FROM profiles WHERE profile_id = 'p-anon'"
        ).fetchone()
    assert rows == [("Logged In", "p-user"), ("Viewed", "p-user")]
    assert merged == ("p-user",)


def test_link_to_an_absorbed_profile_goes_to_the_survivor(tmp_path: Path) -> None:
    feed = ListChangeFeed()
    feed.add(ProfileMerged(survivor="b", absorbed="a", reason="r", at_ms=1, sequence=1))
    feed.add(ProfileMerged(survivor="c", absorbed="b", reason="r", at_ms=2, sequence=2))
    loader = _loader(tmp_path, MemoryEventLog(1), feed)
    loader.run_once()
    feed.add(IdentityLinked(profile_id="a", id_type="email", id_value="x@y", at_ms=3, sequence=3))
    loader.run_once()
    assert _count(loader.path, "SELECT count(*) FROM identities WHERE profile_id = 'c'") == 1


def test_memberships_become_intervals(tmp_path: Path) -> None:
    feed = ListChangeFeed()
    for kind, at in (("entered", 1), ("exited", 5), ("entered", 7)):
        feed.add(MembershipChange(profile_id="p", segment="s", kind=kind, at_ms=at, sequence=at))  # type: ignore[arg-type]
    loader = _loader(tmp_path, MemoryEventLog(1), feed)
    loader.run_once()
    feed.add(MembershipChange(profile_id="p", segment="s", kind="exited", at_ms=9, sequence=9))
    loader.run_once()
    with open_warehouse(loader.path, read_only=True) as con:
        rows = con.execute(
            "SELECT entered_at_ms, exited_at_ms FROM memberships ORDER BY entered_at_ms"
        ).fetchall()
        n_changes = con.execute("SELECT count(*), max(seq) FROM changes").fetchone()
    assert rows == [(1, 5), (7, 9)]
    assert n_changes == (4, 4)


def test_background_service_loads_and_releases_the_file(tmp_path: Path, event_factory) -> None:
    log = MemoryEventLog(partitions=1)
    loader = _loader(tmp_path, log, flush_interval_ms=10)
    loader.start()
    try:
        log.append([event_factory()])
        # Readers wait for the lock between batches; poll the count (no timing assertion).
        for _ in range(500):
            with open_warehouse(loader.path) as con:  # in-process: shares the instance
                row = con.execute("SELECT count(*) FROM events").fetchone()
            if row == (1,):
                break
        assert row == (1,)
    finally:
        loader.stop()
    assert loader.last_error is None
    duckdb.connect(str(loader.path)).close()  # released: a writer can open it


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every opening of the warehouse file by the loader (its ``connect``'s arguments)."""
    calls: list[object] = []
    real = loader_module.connect
    monkeypatch.setattr(loader_module, "connect", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def test_an_idle_loader_does_not_open_the_file(
    tmp_path: Path, event_factory, opened: list[object]
) -> None:
    log = MemoryEventLog(partitions=2)
    feed = ListChangeFeed()
    log.append([event_factory(user_id="u1")])
    loader = _loader(tmp_path, log, feed)
    loader.run_until_idle()
    before = len(opened)
    for _ in range(3):
        assert loader.run_once().empty
    assert len(opened) == before  # nothing new: the file stays closed
    log.append([event_factory(user_id="u2")])
    assert loader.run_once().events_loaded == 1  # a new record: opened and loaded
    feed.add(MembershipChange(profile_id="p1", segment="s", kind="entered", at_ms=5, sequence=1))
    assert loader.run_once().changes_applied == 1  # a new change too
    assert _count(tmp_path / "warehouse.duckdb") == 2
    assert len(opened) == before + 2


def _every_table(path: Path) -> dict[str, list[tuple[object, ...]]]:
    tables = ("events", "identities", "identity_history", "profiles", "profile_merges",
              "memberships", "changes", "warehouse_cursors")  # fmt: skip
    with open_warehouse(path, read_only=True) as con:
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}


def test_a_file_held_between_batches_gets_the_same_rows(
    tmp_path: Path, event_factory, opened: list[object]
) -> None:
    log = MemoryEventLog(partitions=2)
    feed = ListChangeFeed()
    for i in range(12):
        log.append([event_factory(user_id=f"u{i % 4}", anonymous_id=f"a{i}", timestamp_ms=i)])
        feed.add(IdentityLinked(profile_id=f"p{i % 4}", id_type="anonymous_id", id_value=f"a{i}", at_ms=i, sequence=i))  # fmt: skip
        kind = "entered" if i % 3 else "exited"
        feed.add(MembershipChange(profile_id=f"p{i % 4}", segment="s", kind=kind, at_ms=i, sequence=i))  # fmt: skip
        if i == 6:
            feed.add(ProfileMerged(survivor="p0", absorbed="p1", reason="login", at_ms=i, sequence=i))  # fmt: skip
    log.append([event_factory(message_id="dup", user_id="u9")] * 2)  # a duplicate is dropped
    found = {}
    for held in (False, True):
        settings = WarehouseSettings(batch_max_events=3)
        path = tmp_path / f"held-{held}.duckdb"
        loader = WarehouseLoader(log, feed, path, ManualClock(10), settings)
        if held:
            loader.watch_release_requests()
        opened.clear()
        infos = loader.run_until_idle()
        assert len(infos) > 3
        assert len(opened) == (1 if held else len(infos))  # held: opened once
        assert loader._con is None  # the last, empty batch found it idle: let go
        loader.stop()
        found[held] = _every_table(path)
    assert found[True] == found[False]
    assert len(found[True]["events"]) == 13


def test_the_changes_table_holds_each_change_as_its_own_json(tmp_path: Path) -> None:
    import msgspec

    from segflow.warehouse.changes import profile_of

    feed = ListChangeFeed()
    odd = 'line\nbreak "quoted" \\ é ✓'
    changes = [
        IdentityLinked(profile_id="p1", id_type="email", id_value=odd, at_ms=1, sequence=1),
        MembershipChange(
            profile_id=odd, segment="s\n2", kind="entered", at_ms=2, sequence=2, recorded_at_ms=3
        ),
        ProfileMerged(survivor="p2", absorbed="p1", reason="login", at_ms=4, sequence=3),
        MembershipChange(profile_id="p2", segment="s", kind="exited", at_ms=5, sequence=4),
    ]
    for change in changes:
        feed.add(change)
    loader = _loader(tmp_path, MemoryEventLog(partitions=1), feed)
    assert loader.run_once().changes_applied == 4
    with open_warehouse(loader.path, read_only=True) as con:
        rows = con.execute(
            "SELECT seq, kind, profile_id, at_ms, sequence, payload::VARCHAR FROM changes ORDER BY seq"
        ).fetchall()
    expected = [
        (i, type(c).__struct_config__.tag, profile_of(c), c.at_ms, c.sequence,
         msgspec.json.encode(c).decode())
        for i, c in enumerate(changes, start=1)
    ]  # fmt: skip
    assert rows == expected
