"""Erasing from the warehouse (every table keyed by profile or identifier), through the
loader's command intake, and rewriting the file so deleted values leave no byte."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from segflow.clock import ManualClock
from segflow.config import WarehouseSettings
from segflow.log.base import partition_for
from segflow.log.memory import MemoryEventLog
from segflow.spec import Event, IdentityLinked, MembershipChange
from segflow.warehouse.connection import connect
from segflow.warehouse.erase import erase, exclusive, rewrite
from segflow.warehouse.exceptions import WarehouseBusy
from segflow.warehouse.loader import WarehouseLoader


class Feed:
    def __init__(self, changes: list[Any]) -> None:
        self.changes = list(enumerate(changes, start=1))

    def read(self, after_seq: int, limit: int = 1000) -> list[tuple[int, Any]]:
        return [(s, c) for s, c in self.changes if s > after_seq][:limit]


def loaded(tmp_path: Path, event_factory: Callable[..., Event]) -> WarehouseLoader:
    log = MemoryEventLog(partitions=2)
    log.append(
        [
            event_factory(user_id="canary-u", anonymous_id="canary-a", message_id="c1"),
            event_factory(user_id=None, anonymous_id="canary-a", message_id="c2"),
            # on the canary's timeline, though its anonymousId was never linked (refused)
            event_factory(user_id=None, anonymous_id="refused-link", message_id="c3"),
            event_factory(user_id="control-u", message_id="k1"),
        ]
    )
    feed = Feed(
        [
            IdentityLinked(
                profile_id="p_c", id_type="user_id", id_value="canary-u", at_ms=1, sequence=1
            ),
            IdentityLinked(
                profile_id="p_c", id_type="email", id_value="c@x.org", at_ms=1, sequence=2
            ),
            IdentityLinked(
                profile_id="p_k", id_type="user_id", id_value="control-u", at_ms=1, sequence=1
            ),
            MembershipChange(profile_id="p_c", segment="s", kind="entered", at_ms=1, sequence=3),
            MembershipChange(profile_id="p_k", segment="s", kind="entered", at_ms=1, sequence=2),
        ]
    )
    loader = WarehouseLoader(log, feed, tmp_path / "warehouse.duckdb", ManualClock(5))
    loader.run_until_idle()
    return loader


def test_erase_reaches_every_table_keyed_by_profile_or_identifier(
    tmp_path: Path, event_factory: Callable[..., Event]
) -> None:
    loader = loaded(tmp_path, event_factory)
    con = connect(loader.path)
    try:  # a table added later (features, a user's model output) is covered without a list
        con.execute(
            "CREATE TABLE my_features AS SELECT * FROM (VALUES ('p_c', 1), ('p_k', 2)) t(profile_id, x)"
        )
        con.execute(
            "CREATE TABLE fallback AS SELECT * FROM (VALUES ('user:canary-u'), ('p_k')) t(profile_id)"
        )
        [position] = con.execute(
            "SELECT log_partition, log_offset FROM events WHERE message_id = 'c3'"
        ).fetchall()
        con.execute("BEGIN")
        counts = erase(
            con,
            ["p_c"],
            [("user_id", "canary-u"), ("anonymous_id", "canary-a"), ("email", "c@x.org")],
            [position],
        )
        con.execute("COMMIT")
        assert counts["events"] == 3 and counts["identities"] == 2 and counts["memberships"] == 1
        assert counts["my_features"] == 1 and counts["fallback"] == 1 and counts["changes"] == 3
        rows = con.execute("SELECT message_id FROM events ORDER BY 1").fetchall()
        assert rows == [("k1",)]
        assert con.execute("SELECT profile_id FROM my_features").fetchall() == [("p_k",)]
        assert con.execute("SELECT count(*) FROM changes WHERE profile_id = 'p_k'").fetchone() == (
            2,
        )
    finally:
        con.close()


def test_the_loader_runs_commands_after_its_barrier(
    tmp_path: Path, event_factory: Callable[..., Event]
) -> None:
    loader = loaded(tmp_path, event_factory)
    part = partition_for("late-user", 2)
    end = loader.log.end_offsets()
    later = loader.submit(lambda con: "ran", after={part: end[part] + 1})
    now = loader.submit(lambda con: con.execute("SELECT count(*) FROM events").fetchone())
    loader.run_once()
    assert now.result(timeout=0) == (4,) and not later.done()
    loader.log.append([event_factory(user_id="late-user", message_id="late-a")])
    loader.run_once()
    assert later.result(timeout=0) == "ran"
    failing = loader.submit(lambda con: con.execute("DELETE FROM events") and 1 / 0)
    loader.run_once()
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=0)
    with connect(loader.path) as con:  # type: ignore[attr-defined]
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] > 0  # rolled back


def test_rewrite_leaves_no_byte_of_deleted_rows(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    con = connect(path)
    con.execute(
        "INSERT INTO identities VALUES ('email', 'canary-5e1f@example.org', 'p1', 1, 1),"
        " ('email', 'control-5e1f@example.org', 'p2', 1, 1)"
    )
    con.execute("CHECKPOINT")
    con.execute("DELETE FROM identities WHERE profile_id = 'p1'")
    con.execute("CHECKPOINT")
    con.close()
    assert b"canary-5e1f@example.org" in path.read_bytes()  # a checkpoint is not enough
    rewrite(path)
    data = path.read_bytes()
    assert b"canary-5e1f@example.org" not in data and b"control-5e1f@example.org" in data
    again = duckdb.connect(str(path))
    with pytest.raises(duckdb.ConstraintException):  # keys survive: the primary key refuses
        again.execute(
            "INSERT INTO identities VALUES ('email', 'control-5e1f@example.org', 'p3', 1, 1)"
        )
    again.close()


def test_a_rewrite_waits_for_connections_of_this_process(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    reader = connect(path)
    with pytest.raises(WarehouseBusy), exclusive(path, timeout_s=0.2):
        pass
    reader.close()
    with exclusive(path, timeout_s=1):
        opened: list[object] = []
        thread = threading.Thread(target=lambda: opened.append(connect(path, timeout_s=5)))
        thread.start()  # waits while the file is held
        thread.join(0.3)
        assert opened == []
    thread.join(10)
    assert len(opened) == 1
    opened[0].close()  # type: ignore[attr-defined]


def test_warehouse_retention_deletes_old_events_only(
    tmp_path: Path, event_factory: Callable[..., Event]
) -> None:
    log = MemoryEventLog(partitions=1)
    log.append(
        [
            event_factory(timestamp_ms=1_000, message_id="old"),
            event_factory(timestamp_ms=9_000, message_id="new"),
        ]
    )
    settings = WarehouseSettings(retention_ms=5_000, retention_interval_s=0)
    loader = WarehouseLoader(log, None, tmp_path / "w.duckdb", ManualClock(10_000), settings)
    loader.run_until_idle()
    loader.run_once()
    with connect(loader.path) as con:  # type: ignore[attr-defined]
        assert con.execute("SELECT message_id FROM events").fetchall() == [("new",)]
