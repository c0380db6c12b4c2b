from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from segflow.clock import DAY_MS, ManualClock
from segflow.identity import IdentityRules
from segflow.rules import compile_segments
from segflow.spec import IdentityLinked, MembershipChange, ProfileMerged
from segflow.stream import MemoryStateStore, Processor, ProfileReader, SqliteStateStore
from segflow.stream.processor import ProcessorSettings
from segflow.stream.state.rocksdb import RocksStateStore

MemoryLog = Any
EventFactory = Callable[..., Any]
T0 = 1_700_000_000_000


def drain(proc: Processor) -> int:
    total = 0
    while (n := proc.run_once(50)) > 0:
        total += n
    return total


@pytest.fixture
def type_of_log(memory_log: MemoryLog) -> Any:
    return type(memory_log)


@pytest.fixture(params=["memory", "sqlite", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    s: Any
    if request.param == "rocksdb":
        s = RocksStateStore(tmp_path / "state", sync=False)
    else:
        s = SqliteStateStore(tmp_path / "state.sqlite", synchronous="OFF")
    yield s
    s.close()


def seed_scenario(log: MemoryLog, make_event: EventFactory) -> None:
    anon = "anon_123xyz"
    log.append(
        [
            make_event("page", T0, anonymous_id=anon, name="Home"),
            make_event("track", T0 + 1000, anonymous_id=anon, event="Product Viewed"),
            make_event("track", T0 + 2000, anonymous_id=anon, event="Product Added"),
            make_event(
                "identify",
                T0 + DAY_MS,
                anonymous_id=anon,
                user_id="user_42",
                traits={"email": "Ann@Example.com", "plan": "free"},
            ),
            make_event(
                "track",
                T0 + DAY_MS + 5000,
                user_id="support-bot-ignored",
                anonymous_id="null",
                event="Noise",
            ),
            make_event(
                "track",
                T0 + 2 * DAY_MS,
                event="Support Ticket Created",
                context={"traits": {"email": " ann@example.COM"}},
                anonymous_id="srv-1",
                properties={"subject": "refund"},
            ),
            make_event(
                "identify", T0 + 2 * DAY_MS + 1, user_id="user_42", traits={"company": "Acme"}
            ),
        ]
    )


def test_seed_scenario_one_profile_one_timeline(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    seed_scenario(memory_log, make_event)
    proc = Processor(memory_log, store, clock=ManualClock(T0))
    assert drain(proc) == 7
    reader = ProfileReader(store.reader(), memory_log)
    by_anon = reader.lookup("anonymous_id", "anon_123xyz")
    by_user = reader.lookup("user_id", "user_42")
    by_email = reader.lookup("email", "ANN@example.com")
    assert by_anon is not None and by_user is not None and by_email is not None
    assert by_anon.profile_id == by_user.profile_id == by_email.profile_id
    assert by_user.traits == {"email": "Ann@Example.com", "plan": "free", "company": "Acme"}
    names = [e.event or e.name or e.type for e in reader.events(by_user, limit=10)]
    assert names == [
        "identify",
        "Support Ticket Created",
        "identify",
        "Product Added",
        "Product Viewed",
        "Home",
    ]
    assert by_user.first_seen_ms == T0 and by_user.last_seen_ms == T0 + 2 * DAY_MS + 1
    assert by_user.event_counts["Product Added"] == 1


def test_timeline_pages_newest_first(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    memory_log.append(
        [make_event("track", T0 + i, anonymous_id="a", event=f"e{i}") for i in range(7)]
    )
    drain(Processor(memory_log, store, clock=ManualClock(T0)))
    reader = ProfileReader(store.reader(), memory_log)
    profile = reader.lookup("anonymous_id", "a")
    assert profile is not None
    seen, before = [], None
    while True:
        page = reader.timeline(profile, limit=3, before=before)
        seen += [r.event.event for r in page.events]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == [f"e{i}" for i in reversed(range(7))]


def test_two_users_one_device_do_not_collapse(
    store: Any, type_of_log: Any, make_event: EventFactory
) -> None:
    memory_log = type_of_log(partitions=1)  # one partition: arrival order is alice, then bob
    memory_log.append(
        [
            make_event("identify", T0, anonymous_id="shared-ipad", user_id="alice"),
            make_event("track", T0 + 10, anonymous_id="shared-ipad", user_id="alice", event="A"),
            make_event("identify", T0 + 20, anonymous_id="shared-ipad", user_id="bob"),
            make_event("track", T0 + 30, anonymous_id="shared-ipad", user_id="bob", event="B"),
        ]
    )
    drain(Processor(memory_log, store, clock=ManualClock(T0)))
    reader = ProfileReader(store.reader(), memory_log)
    alice, bob = reader.lookup("user_id", "alice"), reader.lookup("user_id", "bob")
    assert alice is not None and bob is not None
    assert alice.profile_id != bob.profile_id
    assert reader.resolve("anonymous_id", "shared-ipad") == alice.profile_id
    assert bob.event_counts == {"identify": 1, "B": 1}
    assert [c.rule for c in reader.conflicts(bob)] == ["limit:user_id", "limit:user_id"]


def test_merge_keeps_older_profile_and_explains_itself(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    memory_log.append(
        [
            make_event("track", T0, anonymous_id="phone", event="Viewed"),
            make_event("identify", T0 + 100, user_id="u1", traits={"plan": "pro"}),
            make_event("alias", T0 + 200, user_id="u1", previous_id="phone"),
        ]
    )
    proc = Processor(memory_log, store, clock=ManualClock(T0))
    drain(proc)
    reader = ProfileReader(store.reader(), memory_log)
    phone = reader.lookup("anonymous_id", "phone")
    assert phone is not None and phone.user_id == "u1"
    merges = reader.merges(phone)
    assert len(merges) == 1 and merges[0].identifier in {"user_id:u1", "anonymous_id:phone"}
    assert merges[0].survivor == phone.profile_id and phone.created_ms == T0
    absorbed = reader.lookup("profile_id", merges[0].absorbed)
    assert absorbed is not None and absorbed.profile_id == phone.profile_id
    changes = [c for _, c in proc.change_feed().read(0)]
    assert [type(c) for c in changes].count(ProfileMerged) == 1
    assert {(c.id_type, c.id_value) for c in changes if isinstance(c, IdentityLinked)} == {
        ("anonymous_id", "phone"),
        ("user_id", "u1"),
    }
    assert phone.traits == {"plan": "pro"} and phone.event_counts == {
        "Viewed": 1,
        "identify": 1,
        "alias": 1,
    }


def test_traits_last_write_wins_by_event_time(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    memory_log.append(
        [
            make_event("identify", T0 + 50, user_id="u", traits={"plan": "pro"}),
            make_event("identify", T0 + 10, user_id="u", traits={"plan": "free", "age": 3}),
        ]
    )
    drain(Processor(memory_log, store, clock=ManualClock(T0)))
    profile = ProfileReader(store.reader(), memory_log).lookup("user_id", "u")
    assert profile is not None and profile.traits == {"plan": "pro", "age": 3}


def test_blocked_identifier_event_is_dead_lettered(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    memory_log.append([make_event("track", T0, anonymous_id="undefined", event="x")])
    proc = Processor(memory_log, store, clock=ManualClock(T0))
    assert drain(proc) == 1
    assert store.reader().scan("dead", "", "~") != []
    assert ProfileReader(store.reader(), memory_log).lookup("anonymous_id", "undefined") is None


def test_offsets_commit_with_state(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    memory_log.append(
        [make_event("track", T0 + i, anonymous_id=f"a{i}", event="x") for i in range(20)]
    )
    proc = Processor(memory_log, store, clock=ManualClock(T0))
    drain(proc)
    again = Processor(memory_log, store, clock=ManualClock(T0))
    assert again.run_once() == 0
    assert sum(memory_log.committed("processor").values()) == 20


def test_a_restart_resumes_from_the_store_without_reading_the_log_again(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    program = compile_segments({"viewers": 'did "Viewed" at least 2 times'})
    memory_log.append(
        [make_event("track", T0 + i, user_id="u1", event="Viewed") for i in range(30)]
    )
    drain(Processor(memory_log, store, program, clock=ManualClock(T0 + 100)))
    reads: list[tuple[int, int]] = []
    read = memory_log.read

    def counted(partition: int, offset: int, max_records: int = 1000) -> list[Any]:
        reads.append((partition, offset))
        return read(partition, offset, max_records)

    memory_log.read = counted  # type: ignore[method-assign]
    done = {p: len(records) for p, records in enumerate(memory_log.records)}
    memory_log.append([make_event("track", T0 + 50, user_id="u2", event="Viewed")])
    again = Processor(memory_log, store, program, clock=ManualClock(T0 + 100))
    assert drain(again) == 1  # the new event only: state and offsets came from the store
    assert reads and all(offset >= done[p] for p, offset in reads)
    reader = ProfileReader(store.reader(), memory_log)
    assert reader.lookup("user_id", "u1").members == ["viewers"]  # type: ignore[union-attr]


def test_external_ids_from_config(memory_log: MemoryLog, make_event: EventFactory) -> None:
    rules = msgspec.convert(
        {"external_ids": [{"type": "phone", "path": "traits.phone"}, {"type": "device_id"}]},
        IdentityRules,
    )
    memory_log.append(
        [
            make_event("identify", T0, anonymous_id="a1", traits={"phone": "+100"}),
            make_event(
                "track",
                T0 + 1,
                anonymous_id="a2",
                event="x",
                context={"externalIds": [{"id": "dev-9", "type": "device_id"}]},
            ),
            make_event(
                "identify",
                T0 + 2,
                user_id="u",
                traits={"phone": "+100"},
                context={"externalIds": [{"id": "dev-9", "type": "device_id"}]},
            ),
        ]
    )
    store = MemoryStateStore()
    drain(Processor(memory_log, store, clock=ManualClock(T0), rules=rules))
    reader = ProfileReader(store.reader(), memory_log, rules)
    p = reader.lookup("phone", "+100")
    assert p is not None
    assert {f"{e.type}:{e.value}" for e in p.identities} == {
        "anonymous_id:a1",
        "anonymous_id:a2",
        "phone:+100",
        "device_id:dev-9",
        "user_id:u",
    }


class WindowEvaluator:
    """A tiny rule: 'active' while an event was seen in the last day (timer on expiry)."""

    def on_event(self, profile: Any, state: bytes | None, event: Any, now_ms: int) -> Any:
        from segflow.stream import Evaluation

        return Evaluation(
            state=b"x",
            members=frozenset({"active"}),
            computed_traits={"n": 1},
            next_wakeup_ms=event.timestamp_ms + DAY_MS,
        )

    def on_time(self, profile: Any, state: bytes | None, now_ms: int) -> Any:
        from segflow.stream import Evaluation

        due = (profile.last_seen_ms or 0) + DAY_MS
        if now_ms >= due:
            return Evaluation(state=state, members=frozenset(), computed_traits={"n": 0})
        return Evaluation(state=state, members=frozenset(profile.members), next_wakeup_ms=due)

    def can_merge(self, survivor: bytes | None, absorbed: bytes | None) -> bool:
        return True

    def merge_states(self, survivor: bytes | None, absorbed: bytes | None) -> bytes | None:
        return survivor or absorbed


def test_timers_fire_membership_exit(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    clock = ManualClock(T0)
    memory_log.append([make_event("track", T0, anonymous_id="a", event="x")])
    proc = Processor(memory_log, store, clock=clock, evaluator=WindowEvaluator())
    drain(proc)
    clock.advance(DAY_MS - 1)
    assert proc.fire_timers() == 0
    clock.advance(1)
    assert proc.fire_timers() == 1
    changes = [c for _, c in proc.change_feed().read(0) if isinstance(c, MembershipChange)]
    assert [(c.kind, c.sequence) for c in changes] == [("entered", 2), ("exited", 3)]
    assert changes[1].at_ms == T0 + DAY_MS
    reader = ProfileReader(store.reader(), memory_log)
    profile = reader.lookup("anonymous_id", "a")
    assert profile is not None and profile.members == [] and profile.computed_traits == {"n": 0}
    assert list(reader.members("active")) == []
    assert proc.fire_timers() == 0


def test_an_event_appended_while_the_batch_began_is_recorded_no_earlier_than_it_happened(
    store: Any, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    clock = ManualClock(T0)
    read, arrived = memory_log.read, [False]

    def late_read(partition: int, offset: int, limit: int = 1000) -> Any:
        # the event arrives between the transaction's start and the log reads
        if not arrived[0]:
            arrived[0] = True
            clock.advance(5)
            memory_log.append([make_event("track", clock.now_ms(), anonymous_id="a", event="x")])
        return read(partition, offset, limit)

    memory_log.read = late_read
    proc = Processor(memory_log, store, clock=clock, evaluator=WindowEvaluator())
    drain(proc)
    changes = [c for _, c in proc.change_feed().read(0) if isinstance(c, MembershipChange)]
    assert [c.kind for c in changes] == ["entered"]
    recorded = changes[0].recorded_at_ms
    assert recorded is not None and recorded >= changes[0].at_ms == T0 + 5


def test_set_evaluator_applies_at_next_batch(
    memory_log: MemoryLog, make_event: EventFactory
) -> None:
    store = MemoryStateStore()
    proc = Processor(memory_log, store, clock=ManualClock(T0))
    memory_log.append([make_event("track", T0, anonymous_id="a", event="x")])
    drain(proc)
    proc.set_evaluator(WindowEvaluator())
    memory_log.append([make_event("track", T0 + 1, anonymous_id="a", event="y")])
    drain(proc)
    reader = ProfileReader(store.reader(), memory_log)
    profile = reader.lookup("anonymous_id", "a")
    assert profile is not None and profile.members == ["active"]
    assert list(reader.members("active")) == [profile.profile_id]
    assert reader.identities(profile.profile_id) == [("anonymous_id", "a")]
    # activation reads computed traits as traits (as Segment sends them)
    assert reader.traits(profile.profile_id) == {"n": 1} and reader.identities("p_nope") == []


def test_offsets_are_mirrored_to_the_log_when_idle_not_per_batch(
    memory_log: MemoryLog, make_event: EventFactory
) -> None:
    memory_log.append(
        [make_event("track", T0 + i, anonymous_id=f"a{i}", event="x") for i in range(20)]
    )
    settings = ProcessorSettings(mirror_interval_ms=3_600_000)
    proc = Processor(memory_log, MemoryStateStore(), clock=ManualClock(T0), settings=settings)
    proc._mirrored_at = time.monotonic()  # as if mirrored a moment ago
    batches = 0
    while proc.run_once(1):
        batches += 1
        assert memory_log.committed("processor") == {}  # committed with the state only
    assert batches > 1  # run_once returned 0: idle, the mirror caught up
    assert sum(memory_log.committed("processor").values()) == 20


def test_a_state_ahead_of_its_mirror_is_mirrored_at_the_first_idle_batch(
    memory_log: MemoryLog, make_event: EventFactory
) -> None:
    """SIGKILL between the state's commit and the mirror (or a backup whose log copy predates
    the mirror): the restarted processor has nothing to read, and mirrors what the state holds
    instead of showing a lag that never drains."""
    memory_log.append(
        [make_event("track", T0 + i, anonymous_id=f"a{i}", event="x") for i in range(20)]
    )
    store = MemoryStateStore()
    settings = ProcessorSettings(mirror_interval_ms=3_600_000)
    first = Processor(memory_log, store, clock=ManualClock(T0), settings=settings)
    while first.run_once():
        pass
    # the mirror behind the state, as a kill between the two leaves it
    memory_log.commit("processor", {p: 0 for p in range(memory_log.partitions)})
    # killed: no stop(), so no flush; a new process on the same state and log
    again = Processor(memory_log, store, clock=ManualClock(T0), settings=settings)
    assert again.run_once() == 0
    assert memory_log.committed("processor") == memory_log.end_offsets()
