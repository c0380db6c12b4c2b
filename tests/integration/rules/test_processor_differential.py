"""The real stream processor (identity merges, timers, rule-set backfill) against SQL on DuckDB.

Events of a few people — several anonymous ids each, logging in with identify, alias or a
userId on a track — go through ``segflow.stream.Processor``. At each checkpoint T the
processor's memberships (``profile.members``, and the membership index) must equal the SQL
compiler's over a ``profile_events`` table holding the events processed so far, each attributed
to its person's current (post-merge) profile. Which events form one person is computed here
(union of the identifiers events carry together) and checked against the processor's timelines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from tests.integration.rules.test_differential import (
    BASE,
    DAY,
    MIN,
    NAMES,
    Arrival,
    _props,
    checkpoints,
    definitions,
    draw_boundaries,
    properties,
)

from segflow.clock import ManualClock
from segflow.log.base import Record, partition_for
from segflow.profiles import Profile
from segflow.rules import compile_segments
from segflow.rules.incremental import kernel
from segflow.rules.sql.compiler import compile_members, compile_traits
from segflow.spec.events import Event, encode_event
from segflow.stream import (
    MemoryStateStore,
    Processor,
    ProfileReader,
    SqliteStateStore,
    backfill,
    replay,
)
from segflow.stream.processor import ProcessorSettings
from segflow.stream.state import StateStore


class MemoryLog:
    """An in-memory partitioned log (as tests/unit/stream/conftest.py's)."""

    def __init__(self, partitions: int = 2) -> None:
        self.records: list[list[Record]] = [[] for _ in range(partitions)]

    @property
    def partitions(self) -> int:
        return len(self.records)

    def append(self, events: Sequence[Event]) -> None:
        for event in events:
            p = partition_for(event.identity_key, self.partitions)
            self.records[p].append(Record(p, len(self.records[p]), event))

    def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        return self.records[partition][offset : offset + max_records]

    def read_payloads(self, positions: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The encoded events, as ``SqliteEventLog`` hands them to a backfill (which decodes
        only the rules' fields)."""
        return {(p, o): encode_event(self.records[p][o].event) for p, o in positions}


class SequentialLog(MemoryLog):
    """:class:`MemoryLog` read in offset order as well, as ``SqliteEventLog`` is: a backfill
    then takes its events from one pass over it (``segflow.stream.replay.LogWindow``)."""

    def read_encoded(
        self, partition: int, offset: int, max_records: int = 1000
    ) -> list[tuple[int, bytes]]:
        found = self.records[partition][offset : offset + max_records]
        return [(r.offset, encode_event(r.event)) for r in found]

    def end_offsets(self) -> dict[int, int]:
        return {p: len(records) for p, records in enumerate(self.records)}


# --- people: 3 who log in (user u<k>, anonymous ids a<k>0..a<k>2), 1 who never does ----------

trait_values = st.dictionaries(
    st.sampled_from(["plan", "created_at"]),
    st.one_of(
        st.sampled_from(["pro", "free"]),
        st.integers(0, 5),
        st.none(),
        st.integers(-10, 10).map(lambda d: BASE + d * DAY),
        st.sampled_from(["2023-01-01T00:00:00Z", "not a date"]),
    ),
    max_size=2,
)


@st.composite
def people_histories(draw: Any, max_events: int = 30) -> list[Arrival]:
    """Arrivals (``profile_id`` unused) whose identifiers merge profiles as people log in."""
    n = draw(st.integers(3, max_events))
    spread = draw(st.sampled_from([1, 3, 35]))
    focus = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    out = []
    for i in range(n):
        person = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))
        anon = f"a{person}{draw(st.integers(0, 2))}"
        user = f"u{person}"
        ids = draw(st.sampled_from(["anon"] * 3 + ["user"] * 2 + ["both", "alias"]))
        if person == 3:
            ids = "anon"
        ts = BASE + draw(st.integers(0, spread)) * DAY + 600 * MIN
        ts += draw(st.integers(0, 24)) * 5 * MIN + draw(st.sampled_from([0, 0, 0, 1])) * MIN
        late = draw(st.sampled_from([0, 0, 0, 1]))
        arrived = max(BASE, ts + (draw(st.integers(-120, 60)) * MIN if late else 0))
        common: dict[str, Any] = dict(
            message_id=f"m{i:03d}",
            source_id="web",
            timestamp_ms=ts,
            received_at_ms=ts,
            user_id=None if ids == "anon" else user,
            anonymous_id=None if ids in ("user", "alias") else anon,
        )
        kind = "alias" if ids == "alias" else draw(st.sampled_from(["track"] * 5 + ["page"] * 2))
        kind = "identify" if kind == "page" and draw(st.booleans()) else kind
        if kind == "alias":
            event = Event(type="alias", previous_id=anon, **common)
        elif kind == "identify":
            event = Event(type="identify", traits=draw(trait_values), **common)
        elif kind == "page":
            page_type = draw(st.sampled_from(["page", "screen"]))
            name = draw(st.sampled_from(["Home", "Shoes"]))
            event = Event(type=page_type, name=name, properties=draw(properties), **common)
        else:
            name = draw(st.sampled_from(focus if draw(st.integers(0, 4)) else NAMES))
            event = Event(type="track", event=name, properties=_props(draw, name), **common)
        out.append(Arrival("", event, arrived))
    for person in (0, 1):  # a visit, a login elsewhere, then the link: two profiles merge
        if draw(st.integers(0, 3)):
            t = BASE + draw(st.integers(0, spread)) * DAY + draw(st.integers(0, 600)) * MIN
            link = draw(st.sampled_from(["identify", "alias", "track"]))
            anon, user = f"a{person}{draw(st.integers(0, 2))}", f"u{person}"
            for j, (kind, u, a) in enumerate(
                [("track", None, anon), ("track", user, None), (link, user, anon)]
            ):
                common = dict(
                    message_id=f"k{person}{j}",
                    source_id="web",
                    timestamp_ms=t + j * draw(st.sampled_from([1, 5 * MIN, 1_000 * MIN])),
                    received_at_ms=t,
                    user_id=u,
                    anonymous_id=None if kind == "alias" else a,
                )
                if kind == "alias":
                    event = Event(type="alias", previous_id=a, **common)
                elif kind == "identify":
                    event = Event(type="identify", traits=draw(trait_values), **common)
                else:
                    name = draw(st.sampled_from(focus))
                    event = Event(type="track", event=name, properties=_props(draw, name), **common)
                out.append(Arrival("", event, event.timestamp_ms))
    out.sort(key=lambda a: a.arrived_ms)
    return out


def identifiers(event: Event) -> list[str]:
    ids = [f"user_id:{event.user_id}"] if event.user_id else []
    ids += [f"anonymous_id:{a}" for a in (event.anonymous_id, event.previous_id) if a]
    return ids


def people(events: Sequence[Event]) -> list[list[Event]]:
    """Events grouped by person: connected by the identifiers they carry together."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for e in events:
        first, *rest = identifiers(e)
        for other in rest:
            parent[find(other)] = find(first)
    groups: dict[str, list[Event]] = {}
    for e in events:
        groups.setdefault(find(identifiers(e)[0]), []).append(e)
    return list(groups.values())


# --- the harness -----------------------------------------------------------------------------


@dataclass
class Snapshot:
    members: dict[str, set[str]]
    traits: dict[str, dict[str, Any]]
    merges: int


class Harness:
    """One processor over a shared log; ``check(T)`` compares it with SQL at T."""

    def __init__(
        self,
        log: MemoryLog,
        store: StateStore,
        con: duckdb.DuckDBPyConnection,
        segments: Mapping[str, str],
        traits: Mapping[str, str],
        clock: ManualClock,
        rules_now: bool = True,
        evaluator: str = "python",
    ) -> None:
        self.log, self.store, self.con, self.clock = log, store, con, clock
        self.segments, self.traits = dict(segments), dict(traits)
        self.evaluator = evaluator
        program = self.compile() if rules_now else None
        # the evaluator given is the one run (the processor would run a program on the kernel)
        settings = ProcessorSettings(kernel=False)
        self.proc = Processor(log, store, program, clock=clock, settings=settings)
        self.reader = ProfileReader(store.reader(), log)
        self.seen: list[Event] = []
        self._sql = {
            n: compile_members(t, segments=segments, traits=traits) for n, t in segments.items()
        }

    def run(self) -> None:
        while self.proc.run_once():
            pass

    def compile(self) -> Any:
        """The processor's evaluator: the Python program, or the compiled kernel of it."""
        program = compile_segments(self.segments, self.traits)
        return kernel.KernelProgram(program) if self.evaluator == "kernel" else program

    def set_rules(self) -> None:
        self.proc.set_evaluator(self.compile())
        self.proc.run_once()
        rounds = 0
        while self.proc.backfilling():
            self.proc.run_once()
            rounds += 1
            assert rounds < 100, "the backfill does not finish"

    def profiles(self) -> Iterator[tuple[list[Event], Profile]]:
        """Each person (as computed here) with the processor's profile of that person."""
        for events in people(self.seen):
            pids = {self.reader.resolve(*i.split(":", 1)) for e in events for i in identifiers(e)}
            assert len(pids) == 1 and None not in pids, ("one person, one profile", pids)
            profile = self.reader.get(pids.pop() or "")
            assert profile is not None
            yield events, profile

    def snapshot(self, at_ms: int) -> Snapshot:
        """Processor memberships and computed traits at ``at_ms`` (timers fired)."""
        self.clock.set(at_ms)
        self.run()  # its last round fires the timers due by ``at_ms``
        members: dict[str, set[str]] = {name: set() for name in self.segments}
        traits: dict[str, dict[str, Any]] = {}
        merges = 0
        for events, profile in self.profiles():
            timeline = self.reader.timeline(profile, limit=10_000).events
            ours = sorted(e.message_id for e in events)
            assert sorted(r.event.message_id for r in timeline) == ours, profile.profile_id
            merges += len(profile.absorbed)
            for name in profile.members:
                members[name].add(profile.profile_id)
            traits[profile.profile_id] = dict(profile.computed_traits) if self.traits else {}
        for name in self.segments:
            assert set(self.reader.members(name)) == members[name], name
        return Snapshot(members, traits, merges)

    def load_warehouse(self) -> None:
        """``profile_events``: every processed event under its person's current profile id."""
        self.con.execute("DELETE FROM profile_events")
        rows = []
        for events, profile in self.profiles():
            for e in events:
                rows.append(
                    (
                        profile.profile_id,
                        e.message_id,
                        e.source_id,
                        e.type,
                        e.event,
                        e.name,
                        e.timestamp_ms,
                        e.user_id,
                        e.anonymous_id,
                        json.dumps(e.properties),
                        json.dumps(e.traits),
                        json.dumps(e.context),
                    )
                )
        self.con.executemany(
            "INSERT INTO profile_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )

    def sql(self, at_ms: int) -> Snapshot:
        self.load_warehouse()
        members = {
            name: {r[0] for r in self.con.execute(q, {"at_ms": at_ms}).fetchall()}
            for name, q in self._sql.items()
        }
        found = self.con.execute("SELECT DISTINCT profile_id FROM profile_events").fetchall()
        traits: dict[str, dict[str, Any]] = {r[0]: {} for r in found}
        if self.traits:
            cur = self.con.execute(compile_traits(self.traits, at_ms=at_ms))
            cols = [d[0] for d in cur.description][1:]
            traits = {r[0]: dict(zip(cols, r[1:], strict=True)) for r in cur.fetchall()}
        return Snapshot(members, traits, 0)

    def process(self, arrived_ms: int, events: list[Event]) -> None:
        """The log got ``events`` (arrived at ``arrived_ms``): process them."""
        self.clock.set(arrived_ms)
        self.seen += events
        self.run()


def feed_until(
    log: MemoryLog, harnesses: Sequence[Harness], pending: list[Arrival], at_ms: int
) -> None:
    """Append, in arrival order, every arrival due by ``at_ms``; each processor consumes it."""
    while pending and pending[0].arrived_ms <= at_ms:
        arrived = pending[0].arrived_ms
        group = []
        while pending and pending[0].arrived_ms == arrived:
            group.append(pending.pop(0).event)
        log.append(group)
        for h in harnesses:
            h.process(arrived, group)


def _times(arrivals: list[Arrival], offsets: list[int], edges: Iterable[int]) -> list[int]:
    """Checkpoints, from BASE on (the clocks start there; a trait's date may lie before)."""
    found = {BASE + o for o in offsets} | {arrivals[-1].arrived_ms} | set(edges)
    return sorted(t for t in found if t >= BASE)


def _assert_same(proc: Snapshot, sql: Snapshot, segments: Mapping[str, str], at_ms: int) -> None:
    for name, text in segments.items():
        assert proc.members[name] == sql.members[name], (name, text, at_ms - BASE)
    assert proc.traits == sql.traits, at_ms - BASE


SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def check_merges(
    warehouse: Any,
    arrivals: list[Arrival],
    defs: tuple[dict[str, str], dict[str, str]],
    offsets: list[int],
    data: st.DataObject,
    evaluator: str = "python",
) -> None:
    segments, traits = defs
    edges = draw_boundaries(data, arrivals, segments, traits, per_kind=2)
    log, clock = MemoryLog(), ManualClock(BASE)
    h = Harness(log, MemoryStateStore(), warehouse(), segments, traits, clock, evaluator=evaluator)
    pending = list(arrivals)
    merges = 0
    for at_ms in _times(arrivals, offsets, edges):
        feed_until(log, [h], pending, at_ms)
        if not h.seen:
            continue
        snap = h.snapshot(at_ms)
        _assert_same(snap, h.sql(at_ms), segments, at_ms)
        merges = snap.merges
    note_event(f"merged profiles at the end: {min(merges, 2)}")


def check_backfill(
    warehouse: Any,
    tmp_path_factory: pytest.TempPathFactory,
    arrivals: list[Arrival],
    defs: tuple[dict[str, str], dict[str, str]],
    offsets: list[int],
    data: st.DataObject,
    evaluator: str = "python",
) -> None:
    """Events processed with no rules, then the rule set: the backfill (replaying each
    profile's timeline from the log) must give SQL's members, and the same members and computed
    traits as a processor that had the rules from the start — then and afterwards."""
    segments, traits = defs
    times = _times(arrivals, offsets, draw_boundaries(data, arrivals, segments, traits, 1))
    change_at = data.draw(st.sampled_from(times), label="rules set at")
    # how the backfill reads the log: each event at its position, or one pass over the whole
    # log, or a pass per run of profiles holding a few hundred bytes of events
    budget = data.draw(st.sampled_from([0, 1 << 30, 400]), label="window bytes")
    log = SequentialLog() if budget else MemoryLog()
    live = Harness(
        log,
        MemoryStateStore(),
        warehouse(),
        segments,
        traits,
        ManualClock(BASE),
        evaluator=evaluator,
    )
    store = SqliteStateStore(tmp_path_factory.mktemp("state") / "state.sqlite")
    late = Harness(
        log, store, warehouse(), segments, traits, ManualClock(BASE), False, evaluator=evaluator
    )
    pending = list(arrivals)
    default, replay.WINDOW_BYTES = replay.WINDOW_BYTES, budget
    passes, backfill.MAX_PASSES = backfill.MAX_PASSES, 1_000
    try:
        for at_ms in times:
            feed_until(log, [live, late], pending, at_ms)
            if at_ms == change_at:
                late.clock.set(at_ms)
                late.set_rules()
            if not live.seen:
                continue
            expected = live.sql(at_ms)
            got = live.snapshot(at_ms)
            _assert_same(got, expected, segments, at_ms)
            if at_ms >= change_at:
                backfilled = late.snapshot(at_ms)
                _assert_same(backfilled, expected, segments, at_ms)
                assert backfilled.members == got.members
    finally:
        replay.WINDOW_BYTES, backfill.MAX_PASSES = default, passes
        store.close()


GIVEN = given(arrivals=people_histories(), defs=definitions(), offsets=checkpoints, data=st.data())
LONG = settings(SETTINGS, max_examples=400)
Defs = tuple[dict[str, str], dict[str, str]]


@SETTINGS
@GIVEN
def test_processor_with_merges_agrees_with_sql(
    warehouse: Any, arrivals: list[Arrival], defs: Defs, offsets: list[int], data: st.DataObject
) -> None:
    check_merges(warehouse, arrivals, defs, offsets, data)


@SETTINGS
@GIVEN
def test_backfilled_rules_agree_with_sql_and_with_rules_set_from_the_start(
    warehouse: Any,
    tmp_path_factory: pytest.TempPathFactory,
    arrivals: list[Arrival],
    defs: Defs,
    offsets: list[int],
    data: st.DataObject,
) -> None:
    check_backfill(warehouse, tmp_path_factory, arrivals, defs, offsets, data)


@pytest.mark.long
@LONG
@GIVEN
def test_processor_with_merges_agrees_with_sql_long(
    warehouse: Any, arrivals: list[Arrival], defs: Defs, offsets: list[int], data: st.DataObject
) -> None:
    check_merges(warehouse, arrivals, defs, offsets, data)


@pytest.mark.long
@LONG
@GIVEN
def test_backfill_agrees_long(
    warehouse: Any,
    tmp_path_factory: pytest.TempPathFactory,
    arrivals: list[Arrival],
    defs: Defs,
    offsets: list[int],
    data: st.DataObject,
) -> None:
    check_backfill(warehouse, tmp_path_factory, arrivals, defs, offsets, data)


# --- the same with the compiled kernel as the processor's evaluator (fewer examples by default:
# tests/unit/rules/test_kernel.py holds the kernel equal to the Python program call by call) ----

needs_kernel = pytest.mark.skipif(
    not kernel.AVAILABLE, reason="the compiled rule kernel is not built (or SEGFLOW_KERNEL=0)"
)
KERNEL = settings(SETTINGS, max_examples=8)


@needs_kernel
@KERNEL
@GIVEN
def test_processor_with_merges_agrees_with_sql_on_the_kernel(
    warehouse: Any, arrivals: list[Arrival], defs: Defs, offsets: list[int], data: st.DataObject
) -> None:
    check_merges(warehouse, arrivals, defs, offsets, data, evaluator="kernel")


@needs_kernel
@KERNEL
@GIVEN
def test_backfill_agrees_on_the_kernel(
    warehouse: Any,
    tmp_path_factory: pytest.TempPathFactory,
    arrivals: list[Arrival],
    defs: Defs,
    offsets: list[int],
    data: st.DataObject,
) -> None:
    check_backfill(warehouse, tmp_path_factory, arrivals, defs, offsets, data, evaluator="kernel")


@needs_kernel
@pytest.mark.long
@LONG
@GIVEN
def test_processor_with_merges_agrees_with_sql_on_the_kernel_long(
    warehouse: Any, arrivals: list[Arrival], defs: Defs, offsets: list[int], data: st.DataObject
) -> None:
    check_merges(warehouse, arrivals, defs, offsets, data, evaluator="kernel")


@needs_kernel
@pytest.mark.long
@LONG
@GIVEN
def test_backfill_agrees_on_the_kernel_long(
    warehouse: Any,
    tmp_path_factory: pytest.TempPathFactory,
    arrivals: list[Arrival],
    defs: Defs,
    offsets: list[int],
    data: st.DataObject,
) -> None:
    check_backfill(warehouse, tmp_path_factory, arrivals, defs, offsets, data, evaluator="kernel")
