"""The warehouse on a real PostgreSQL server: the same loads, changes, previews and features as
on DuckDB (each test loads one history into both and compares)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from segflow.clock import DAY_MS, MINUTE_MS, ManualClock
from segflow.config import CustomFeature, WarehouseSettings, load_settings
from segflow.log.memory import ListChangeFeed, MemoryEventLog
from segflow.segments.service import SegmentService, profile_history, recorded_members_at
from segflow.segments.store import DefinitionStore
from segflow.spec import Event, IdentityLinked, MembershipChange, ProfileMerged
from segflow.warehouse import backends
from segflow.warehouse.connection import connect, open_warehouse
from segflow.warehouse.features import compute_features
from segflow.warehouse.loader import WarehouseLoader
from segflow.warehouse.postgres import PgConnection, connect_postgres
from segflow.warehouse.postgres_loader import PostgresLoader

T0 = 1_700_000_000_000
_db = itertools.count()


@pytest.fixture
def pg_dsn(postgres_dsn: str) -> Iterator[str]:
    """A fresh database on the test server."""
    name = f"wh{next(_db)}"
    admin = connect_postgres(postgres_dsn, schema=False)
    admin.execute(f"CREATE DATABASE {name}")
    yield postgres_dsn.replace("dbname=postgres", f"dbname={name}")
    admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def _ev(i: int, user: str | None, anon: str, at: int, name: str = "Clicked", **props: Any) -> Event:
    return Event(type="track", message_id=f"m{i}", source_id="web", timestamp_ms=at,
                 received_at_ms=at, user_id=user, anonymous_id=anon, event=name,
                 properties=props)  # fmt: skip


def _history() -> tuple[MemoryEventLog, ListChangeFeed]:
    log = MemoryEventLog(partitions=3)
    events = [
        _ev(0, None, "a1", T0 - 40 * DAY_MS, "Order Completed", revenue=100),
        _ev(1, "u1", "a1", T0 - 10 * DAY_MS, "Order Completed", revenue=20.5),
        _ev(2, "u1", "a1", T0 - 10 * DAY_MS + 5 * MINUTE_MS, "Report Built", url="/r"),
        _ev(3, "u1", "a2", T0 - 2 * DAY_MS, "Support Ticket Created"),
        _ev(4, None, "a3", T0 - DAY_MS, "Order Completed", revenue="12.5"),
        _ev(5, "u2", "a4", T0 - 3 * MINUTE_MS, "Product Viewed", category="shoes", price=3),
    ]
    log.append(events)
    log.append(events[:2])  # a replay: stored once
    feed = ListChangeFeed()
    feed.add(IdentityLinked(profile_id="p1", id_type="anonymousId", id_value="a1", at_ms=T0 - 40 * DAY_MS, sequence=1))  # fmt: skip
    feed.add(IdentityLinked(profile_id="p1", id_type="userId", id_value="u1", at_ms=T0 - 10 * DAY_MS, sequence=2))  # fmt: skip
    feed.add(IdentityLinked(profile_id="p2", id_type="anonymousId", id_value="a2", at_ms=T0 - 2 * DAY_MS, sequence=1))  # fmt: skip
    feed.add(ProfileMerged(survivor="p1", absorbed="p2", reason="userId", at_ms=T0 - 2 * DAY_MS, sequence=3))  # fmt: skip
    feed.add(MembershipChange(profile_id="p1", segment="buyers", kind="entered", at_ms=T0 - 40 * DAY_MS, sequence=4))  # fmt: skip
    feed.add(MembershipChange(profile_id="p1", segment="buyers", kind="exited", at_ms=T0 - DAY_MS, sequence=5))  # fmt: skip
    feed.add(MembershipChange(profile_id="p1", segment="buyers", kind="entered", at_ms=T0, sequence=6))  # fmt: skip
    return log, feed


def _both(tmp_path: Path, dsn: str) -> tuple[Any, PgConnection]:
    log, feed = _history()
    duck = WarehouseLoader(log, feed, tmp_path / "w.duckdb", ManualClock(7), WarehouseSettings(batch_max_events=3))  # fmt: skip
    duck.run_until_idle()
    pg = PostgresLoader(log, feed, dsn, ManualClock(7), WarehouseSettings(batch_max_events=3))
    infos = pg.run_until_idle()
    pg.stop()
    assert sum(i.events_read for i in infos) == 8
    assert sum(i.events_loaded for i in infos) == 6
    assert sum(i.duplicates for i in infos) == 2
    return open_warehouse(tmp_path / "w.duckdb"), connect_postgres(dsn)


def _rows(con: Any, sql: str) -> list[tuple[Any, ...]]:
    return [
        tuple(float(v) if isinstance(v, Decimal) else v for v in r)
        for r in con.execute(sql).fetchall()
    ]


TABLES = {
    "events": "SELECT message_id, source_id, type, event, timestamp_ms, user_id, anonymous_id,"
    " CAST(properties AS TEXT), log_partition, log_offset, loaded_at_ms FROM events ORDER BY 1",
    "profile_events": "SELECT profile_id, message_id FROM profile_events ORDER BY 2",
    "identities": "SELECT * FROM identities ORDER BY 1, 2",
    "profiles": "SELECT * FROM profiles ORDER BY 1",
    "memberships": "SELECT * FROM memberships ORDER BY 1, 2, 3",
    "changes": "SELECT seq, kind, profile_id, at_ms, sequence FROM changes ORDER BY 1",
    "cursors": "SELECT * FROM warehouse_cursors ORDER BY 1",
}


def test_postgres_loads_the_same_warehouse_as_duckdb(tmp_path: Path, pg_dsn: str) -> None:
    duck_cm, pg = _both(tmp_path, pg_dsn)
    with duck_cm as duck, pg:
        for name, sql in TABLES.items():
            assert _rows(pg, sql) == _rows(duck, sql), name
        # loading again reads nothing new; a second loader is idempotent on messageId
        log, feed = _history()
        again = PostgresLoader(log, feed, pg_dsn, ManualClock(8))
        again.run_until_idle()
        assert _rows(pg, TABLES["events"]) == _rows(duck, TABLES["events"])
        pg.execute("DELETE FROM warehouse_cursors")
        infos = again.run_until_idle()
        again.stop()
        assert sum(i.duplicates for i in infos) == 8
        assert _rows(pg, "SELECT count(*) FROM events") == [(6,)]


def test_segment_previews_and_history_on_postgres(tmp_path: Path, pg_dsn: str) -> None:
    duck_cm, pg = _both(tmp_path, pg_dsn)
    with duck_cm as duck, pg:
        assert recorded_members_at(pg, "buyers", T0 - 2 * DAY_MS, 10) == ["p1"]
        assert recorded_members_at(pg, "buyers", T0 - DAY_MS, 10) == []
        assert profile_history(pg, ["p1", "p2"]) == profile_history(duck, ["p1", "p2"])
    store = DefinitionStore(tmp_path / "catalog.sqlite")
    settings = load_settings(env={"SEGFLOW_WAREHOUSE__ENGINE": "postgres",
                                  "SEGFLOW_WAREHOUSE__DSN": pg_dsn})  # fmt: skip
    on_pg = SegmentService(store, warehouse=backends.opener(settings), clock=ManualClock(T0))
    on_duck = SegmentService(
        store, warehouse=lambda: connect(tmp_path / "w.duckdb"), clock=ManualClock(T0)
    )
    for rule in (
        'did "Order Completed" at least 2 times',
        'sum(revenue of "Order Completed" in last 90 days) > 20',
        'did "Product Viewed" where (category = "shoes" and price >= 3) in last 1 hour',
        'did "Order Completed" then not "Support Ticket Created" within 1 hour',
    ):
        got, want = on_pg.preview(rule), on_duck.preview(rule)
        assert (got.count, got.sample) == (want.count, want.sample), rule
        assert want.count > 0, rule
    assert on_pg.score_reasons(["p1"]) == {}  # no ML tables on PostgreSQL: nothing, not an error
    # valid-time answers (the SQL at each instant) agree too
    on_duck.put_segment("buyers", 'sum(revenue of "Order Completed" in last 90 days) > 20')
    instants = [T0 - d * DAY_MS for d in (40, 20, 5, 0)]
    sizes = on_duck.sizes(["buyers"], instants)
    assert on_pg.sizes(["buyers"], instants) == sizes and any(sizes["buyers"]), sizes
    # on the time grid (one query for the four instants) as one query per instant
    assert on_pg.sizes_per_instant(["buyers"], instants) == sizes
    assert isinstance(on_pg.loaded_position(), tuple)
    assert on_pg.members_at("buyers", T0, 10) == on_duck.members_at("buyers", T0, 10)


def test_features_on_postgres_equal_duckdb(tmp_path: Path, pg_dsn: str) -> None:
    settings = WarehouseSettings(
        key_features=("Report Built", "Product Viewed"),
        custom_features=(
            CustomFeature(
                name="orders_all", sql="count(*) FILTER (WHERE event = 'Order Completed')"
            ),
            CustomFeature(name="views_30d", rule='count("Product Viewed" in last 30 days)'),
        ),
    )
    duck_cm, pg = _both(tmp_path, pg_dsn)
    with duck_cm as duck, pg:
        for s in (settings, WarehouseSettings()):
            got = compute_features(pg, T0, s)
            want = compute_features(duck, T0, s)
            assert got.columns == want.columns and got.profiles == want.profiles == 3
            sql = "SELECT * FROM features ORDER BY profile_id"
            got_rows, want_rows = _rows(pg, sql), _rows(duck, sql)
            assert len(got_rows) == len(want_rows) == 3
            for g, w in zip(got_rows, want_rows, strict=True):
                assert g[0] == w[0] and list(g[1:]) == pytest.approx(list(w[1:]), rel=1e-12)


def test_the_engine_is_chosen_by_configuration(tmp_path: Path) -> None:
    from segflow.errors import ConfigError

    s = load_settings(env={"SEGFLOW_WAREHOUSE__ENGINE": "postgres"})
    with pytest.raises(ConfigError, match=r"warehouse\.dsn"):
        backends.opener(s)
    with pytest.raises(ConfigError, match="unknown engine"):
        backends.opener(load_settings(env={"SEGFLOW_WAREHOUSE__ENGINE": "oracle"}))
    duck = load_settings(overrides={"server": {"data_dir": str(tmp_path)}})
    assert isinstance(
        backends.build_loader(duck, MemoryEventLog(1), None, ManualClock(0)), WarehouseLoader
    )
