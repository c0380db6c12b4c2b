"""Two processors owning different partitions share one state.sqlite (as two processes would)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from segflow.clock import ManualClock
from segflow.identity import IdentityRules
from segflow.log.sqlite import SqliteEventLog
from segflow.profiles import decode_profile
from segflow.spec import Event
from segflow.stream import Processor, ProcessorSettings, SqliteStateStore, timeline

NO_LIMITS = IdentityRules(
    limits={}, default_limit=10_000, max_identifiers=10_000, max_merges=10_000
)


def grouping(path: Path) -> frozenset[frozenset[str]]:
    """Identifier groups; also checks that profiles, owners and event counts agree."""
    store = SqliteStateStore(path)
    reader = store.reader()
    groups: dict[str, set[str]] = {}
    for key, pid in reader.scan("owner", "", "\U0010ffff"):
        groups.setdefault(pid.decode(), set()).add(key)
    profiles = [decode_profile(v) for _, v in reader.scan("profile", "", "\U0010ffff")]
    assert {p.profile_id for p in profiles} == set(groups)
    for p in profiles:
        assert set(p.identity_keys()) == groups[p.profile_id]
    positions = [pos for p in profiles for pos in timeline.entries(reader, p)]
    assert sum(sum(p.event_counts.values()) for p in profiles) == len(positions)
    store.close()
    return frozenset(frozenset(g) for g in groups.values())


def test_split_partitions_give_the_same_profiles(
    make_data_dir: Callable[[str, list[Event]], Path], gen_events: Callable[..., list[Event]]
) -> None:
    events = gen_events(3000, people=30)
    single, shared = make_data_dir("single", events), make_data_dir("shared", events)

    log = SqliteEventLog(single / "log.sqlite", partitions=4)
    store = SqliteStateStore(single / "state.sqlite", synchronous="OFF")
    one = Processor(log, store, clock=ManualClock(0), rules=NO_LIMITS)
    while one.run_once(7) > 0:
        pass
    store.close()
    log.close()

    log = SqliteEventLog(shared / "log.sqlite", partitions=4)
    stores = [SqliteStateStore(shared / "state.sqlite", synchronous="OFF") for _ in range(2)]
    procs = [
        Processor(log, s, clock=ManualClock(0), rules=NO_LIMITS,
                  settings=ProcessorSettings(partitions=parts, group=f"g{i}"))
        for i, (s, parts) in enumerate(zip(stores, [(0, 1), (2, 3)], strict=True))
    ]  # fmt: skip
    while sum(p.run_once(7) for p in procs) > 0:
        pass
    for s in stores:
        s.close()
    log.close()

    expected = grouping(single / "state.sqlite")
    assert len(expected) > 20
    assert grouping(shared / "state.sqlite") == expected


def test_optimistic_processors_in_threads_give_the_same_profiles(
    make_data_dir: Callable[[str, list[Event]], Path], gen_events: Callable[..., list[Event]]
) -> None:
    """Two processors at once (threads, one store each on one file), batches optimistic: the
    work overlaps, the commits validate, the identity groups equal one processor's."""
    events = gen_events(3000, people=30)
    single, shared = make_data_dir("single", events), make_data_dir("shared", events)
    log = SqliteEventLog(single / "log.sqlite", partitions=4)
    store = SqliteStateStore(single / "state.sqlite", synchronous="OFF")
    one = Processor(log, store, clock=ManualClock(0), rules=NO_LIMITS)
    while one.run_once(7) > 0:
        pass
    store.close()
    log.close()

    log = SqliteEventLog(shared / "log.sqlite", partitions=4)
    stores = [SqliteStateStore(shared / "state.sqlite", synchronous="OFF") for _ in range(2)]
    procs = [
        Processor(log, s, clock=ManualClock(0), rules=NO_LIMITS,
                  settings=ProcessorSettings(partitions=parts, group=f"g{i}", optimistic_tries=3))
        for i, (s, parts) in enumerate(zip(stores, [(0, 2), (1, 3)], strict=True))
    ]  # fmt: skip
    errors: list[BaseException] = []

    def drain(proc: Processor) -> None:
        try:
            while proc.run_once(7) > 0:
                pass
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for s in stores:
        s.close()
    log.close()
    assert grouping(shared / "state.sqlite") == grouping(single / "state.sqlite")
