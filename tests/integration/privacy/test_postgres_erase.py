"""The warehouse part of a deletion on the PostgreSQL engine: the same rows go as on DuckDB."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segflow.clock import ManualClock
from segflow.log.memory import ListChangeFeed, MemoryEventLog
from segflow.spec import Event, IdentityLinked, MembershipChange
from segflow.warehouse.connection import open_warehouse
from segflow.warehouse.erase import erase
from segflow.warehouse.loader import WarehouseLoader
from segflow.warehouse.postgres import connect_postgres
from segflow.warehouse.postgres_loader import PostgresLoader

_db = itertools.count()


@pytest.fixture
def pg_dsn(postgres_dsn: str) -> Iterator[str]:
    name = f"erase{next(_db)}"
    admin = connect_postgres(postgres_dsn, schema=False)
    admin.execute(f"CREATE DATABASE {name}")
    yield postgres_dsn.replace("dbname=postgres", f"dbname={name}")
    admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def history() -> tuple[MemoryEventLog, ListChangeFeed]:
    log = MemoryEventLog(partitions=2)
    log.append(
        [
            Event(type="track", message_id=f"m{i}", source_id="web", timestamp_ms=i,
                  received_at_ms=i, user_id=user, anonymous_id=anon, event="E")
            for i, (user, anon) in enumerate(
                [("ann", "a1"), (None, "a1"), (None, "a-refused"), ("bob", "b1")]
            )
        ]
    )  # fmt: skip
    feed = ListChangeFeed()
    for change in (
        IdentityLinked(profile_id="p_ann", id_type="user_id", id_value="ann", at_ms=1, sequence=1),
        IdentityLinked(
            profile_id="p_ann", id_type="anonymous_id", id_value="a1", at_ms=1, sequence=2
        ),
        IdentityLinked(profile_id="p_bob", id_type="user_id", id_value="bob", at_ms=1, sequence=1),
        MembershipChange(profile_id="p_ann", segment="s", kind="entered", at_ms=1, sequence=3),
        MembershipChange(profile_id="p_bob", segment="s", kind="entered", at_ms=1, sequence=2),
    ):
        feed.add(change)
    return log, feed


def remaining(con: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "events": con.execute("SELECT message_id FROM events ORDER BY 1").fetchall(),
        "identities": con.execute("SELECT id_value FROM identities ORDER BY 1").fetchall(),
        "memberships": con.execute("SELECT profile_id FROM memberships ORDER BY 1").fetchall(),
        "changes": con.execute("SELECT profile_id FROM changes ORDER BY 1").fetchall(),
    }


def test_postgres_erases_what_duckdb_erases(tmp_path: Path, pg_dsn: str) -> None:
    log, feed = history()
    duck = WarehouseLoader(log, feed, tmp_path / "w.duckdb", ManualClock(5))
    duck.run_until_idle()
    pg = PostgresLoader(log, feed, pg_dsn, ManualClock(5))
    pg.run_until_idle()
    refused = [
        (r.partition, r.offset)
        for p in range(2)
        for r in log.read(p, 0)
        if r.event.message_id == "m2"
    ]
    args: dict[str, Any] = {
        "profile_ids": ["p_ann"],
        "identifiers": [("user_id", "ann"), ("anonymous_id", "a1")],
        "positions": refused,
    }
    counts = {}
    for loader in (duck, pg):
        future = loader.submit(lambda con: erase(con, **args))
        loader.run_once()
        counts[type(loader).__name__] = future.result(timeout=0)
    pg.stop()
    assert counts["PostgresLoader"] == counts["WarehouseLoader"]
    assert counts["WarehouseLoader"]["events"] == 3
    with open_warehouse(tmp_path / "w.duckdb") as d, connect_postgres(pg_dsn) as p:
        assert remaining(p) == remaining(d)
        assert remaining(d)["events"] == [("m3",)]
