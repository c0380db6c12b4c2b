"""The loader's rows are the rows of a straightforward reference: decode every record, build
the Arrow table in Python (``events_table``), ``INSERT OR IGNORE`` it, batch by batch."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segflow.clock import ManualClock
from segflow.config import WarehouseSettings
from segflow.log.base import EventLog
from segflow.log.memory import MemoryEventLog
from segflow.log.sqlite import SqliteEventLog
from segflow.spec import Event
from segflow.spec.events import EVENT_TYPES
from segflow.warehouse.batches import events_table
from segflow.warehouse.connection import open_warehouse
from segflow.warehouse.loader import WarehouseLoader
from segflow.warehouse.schema import ensure_schema

LOADED_AT = 1_234
BATCH = 8
ROWS_SQL = "SELECT * FROM events ORDER BY source_id, message_id"
TYPES_SQL = (
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'events'"
)


def reference_load(
    log: EventLog, path: Path, skip: Callable[[Event], bool] | None, batch_max: int
) -> None:
    """What the loader did before it read encoded events: the same batches, decoded records."""
    per_partition = max(1, batch_max // log.partitions)
    offsets = dict.fromkeys(range(log.partitions), 0)
    con = duckdb.connect(str(path))
    ensure_schema(con)
    while True:
        records = []
        for p, start in offsets.items():
            got = log.read(p, start, per_partition)
            if got:
                records.extend(got)
                offsets[p] = got[-1].offset + 1
        if not records:
            break
        kept = [r for r in records if skip is None or not skip(r.event)]
        if kept:
            con.register("batch", events_table(kept, loaded_at_ms=LOADED_AT))
            con.execute("INSERT OR IGNORE INTO events SELECT * FROM batch")
            con.unregister("batch")
    con.close()


def loader_load(
    log: EventLog, path: Path, skip: Callable[[Event], bool] | None, batch_max: int
) -> int:
    settings = WarehouseSettings(batch_max_events=batch_max, release_between_batches=False)
    loader = WarehouseLoader(log, None, path, ManualClock(LOADED_AT), settings)
    loader.skip = skip
    try:
        return sum(info.events_read for info in loader.run_until_idle())
    finally:
        loader.stop()


def warehouse(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with open_warehouse(path, read_only=True) as con:
        return con.execute(ROWS_SQL).fetchall(), con.execute(TYPES_SQL).fetchall()


def assert_same_rows(
    log: EventLog, directory: Path, skip: Callable[[Event], bool] | None, batch_max: int = BATCH
) -> list[tuple[Any, ...]]:
    reference_load(log, directory / "reference.duckdb", skip, batch_max)
    loader_load(log, directory / "loader.duckdb", skip, batch_max)
    expected = warehouse(directory / "reference.duckdb")
    got = warehouse(directory / "loader.duckdb")
    assert got[1] == expected[1]
    assert got[0] == expected[0]
    return got[0]


# -- generated events --------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
optional_text = st.none() | st.text(max_size=10)


@st.composite
def events(draw: st.DrawFn) -> Event:
    return Event(
        type=draw(st.sampled_from(EVENT_TYPES)),
        message_id=draw(st.sampled_from(["m1", "m2", "m3", "é-4", "m\x005"]) | st.text(min_size=1, max_size=8)),
        source_id=draw(st.sampled_from(["web", "ios"])),
        timestamp_ms=draw(st.integers(-2_208_988_800_000, 4_102_444_800_000)),
        received_at_ms=draw(st.integers(0, 2**62)),
        user_id=draw(st.none() | st.sampled_from(["u1", "u2", "ü3"])),
        anonymous_id=draw(optional_text),
        event=draw(optional_text),
        name=draw(optional_text),
        category=draw(optional_text),
        group_id=draw(optional_text),
        previous_id=draw(optional_text),
        properties=draw(json_objects),
        traits=draw(json_objects),
        context=draw(json_objects),
        integrations=draw(st.dictionaries(st.text(max_size=4), st.booleans(), max_size=2)),
        original_timestamp_ms=draw(st.none() | st.integers(0, 2**50)),
        flags=draw(st.lists(st.text(max_size=5), max_size=2).map(tuple)),
    )  # fmt: skip


def blocks_u2(event: Event) -> bool:
    return event.user_id == "u2"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(events(), max_size=30),
    partitions=st.integers(1, 3),
    skip=st.sampled_from([None, blocks_u2]),
    batch_max=st.sampled_from([1, 5, 64]),
)
def test_loaded_rows_are_the_reference_rows(
    batch: list[Event], partitions: int, skip: Callable[[Event], bool] | None, batch_max: int
) -> None:
    log = MemoryEventLog(partitions=partitions)  # keeps duplicates: within and across batches
    log.append(batch)
    with tempfile.TemporaryDirectory() as d:
        assert_same_rows(log, Path(d), skip, batch_max)


def varied_events() -> Sequence[Event]:
    def event(message_id: str, **kw: Any) -> Event:
        base: dict[str, Any] = {
            "type": "track",
            "source_id": "web",
            "timestamp_ms": 1_700_000_000_123,
        }
        base.update(kw)
        return Event(message_id=message_id, received_at_ms=base["timestamp_ms"] + 5, **base)

    nested = {
        "a": [1, 2.5, {"b": None, "c": [True, False]}],
        "ü": "日本語 ✓ \u2028",
        "big": 2**64 - 1,
    }
    return [
        event("t1", user_id="u1", event="Order Completed", properties={"total": 1e20, "tiny": 5e-324}),
        event("t2", anonymous_id="a1", event="Viewed", properties=nested, context={"ip": "10.0.0.1"}),
        event("i1", type="identify", user_id="u2", traits={"email": "x@y.z", "n": -(2**63)}),
        event("p1", type="page", user_id="u1", name="Home", category="Docs", properties={"s": '"\\\n\t\x00'}),
        event("s1", type="screen", anonymous_id="a2", name="Cart"),
        event("g1", type="group", user_id="u1", group_id="g-1", traits={"plan": None}),
        event("al1", type="alias", user_id="u1", previous_id="a1"),
        event("t1", user_id="u1", event="Order Completed", properties={"total": 2}),  # a repeat
        event("t3", type="track", user_id="u3", event="Blocked", timestamp_ms=-86_400_001),
    ]  # fmt: skip


def test_the_sqlite_logs_encoded_events_load_as_the_reference_rows(tmp_path: Path) -> None:
    log = SqliteEventLog(str(tmp_path / "log.sqlite"), partitions=2)
    try:
        log.append(varied_events())
        rows = assert_same_rows(log, tmp_path, lambda e: e.user_id == "u3", batch_max=4)
    finally:
        log.close()
    assert [r[0] for r in rows] == ["al1", "g1", "i1", "p1", "s1", "t1", "t2"]


def test_suppressed_events_are_read_past_but_not_loaded(tmp_path: Path) -> None:
    log = MemoryEventLog(partitions=2)
    log.append(varied_events())
    read = loader_load(log, tmp_path / "w.duckdb", lambda e: True, batch_max=4)
    assert read == len(varied_events())
    assert warehouse(tmp_path / "w.duckdb")[0] == []


def test_empty_suppressions_are_not_asked_and_listed_ones_are(tmp_path: Path) -> None:
    log = MemoryEventLog(partitions=2)
    log.append(varied_events()[:4])
    listed: list[str] = []
    asked: list[str] = []

    def blocks(event: Event) -> bool:
        asked.append(event.message_id)
        return event.user_id in listed

    settings = WarehouseSettings(batch_max_events=100, release_between_batches=False)
    loader = WarehouseLoader(log, None, tmp_path / "w.duckdb", ManualClock(LOADED_AT), settings)
    loader.skip, loader.suppressions = blocks, listed
    try:
        loader.run_until_idle()
        assert asked == []  # an empty list: nothing asked, every event loaded
        listed.append("u1")
        log.append(varied_events()[4:])
        loader.run_until_idle()
    finally:
        loader.stop()
    assert sorted(asked) == sorted(e.message_id for e in varied_events()[4:])
    loaded = {r[0] for r in warehouse(tmp_path / "w.duckdb")[0]}
    assert loaded == {"t1", "t2", "i1", "p1", "s1", "t3"}  # u1's later events (g1, al1) not
