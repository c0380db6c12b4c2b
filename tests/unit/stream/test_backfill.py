"""A changed rule set is backfilled from each profile's history, resumably, emitting only differences."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segflow.clock import HOUR_MS, ManualClock
from segflow.log.sqlite import SqliteEventLog
from segflow.rules import compile_segments
from segflow.spec import MembershipChange
from segflow.stream import MemoryStateStore, Processor, ProfileReader, backfill
from segflow.stream.processor import ProcessorSettings

T0 = 1_700_000_000_000


def _members(proc: Processor, log: Any, user: str) -> list[str]:
    profile = ProfileReader(proc.store.reader(), log).lookup("user_id", user)
    assert profile is not None
    return list(profile.members)


def _changes(proc: Processor) -> list[tuple[str, str, int]]:
    return [
        (c.segment, c.kind, c.at_ms)
        for _, c in proc.change_feed().read(0)
        if isinstance(c, MembershipChange)
    ]


def test_a_new_segment_sees_the_history_before_it(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    clock = ManualClock(T0 + 10)
    proc = Processor(memory_log, MemoryStateStore(), clock=clock)
    for n in range(3):
        memory_log.append([make_event("track", ts=T0 + n, user_id="u1", event="Product Viewed")])
    memory_log.append([make_event("track", ts=T0, user_id="u2", event="Product Viewed")])
    while proc.run_once() > 0:
        pass
    assert _changes(proc) == []

    rules = {"viewed_3": 'did "Product Viewed" at least 3 times in last 1 hour'}
    proc.set_evaluator(compile_segments(rules))
    proc.run_once()
    assert _members(proc, memory_log, "u1") == ["viewed_3"]
    assert _members(proc, memory_log, "u2") == []
    assert _changes(proc) == [("viewed_3", "entered", T0 + 10)]
    assert not proc.backfilling()

    # the window still slides: the backfilled state carries the events' times
    clock.set(T0 + HOUR_MS)
    proc.run_once()
    assert _members(proc, memory_log, "u1") == []
    assert _changes(proc)[-1] == ("viewed_3", "exited", T0 + HOUR_MS)

    # the same rule set again: nothing is rebuilt, nothing emitted
    proc.set_evaluator(compile_segments(rules))
    assert proc.run_once() == 0 and proc.backfill_step() == 0
    assert len(_changes(proc)) == 2


def test_backfill_resumes_after_a_restart_and_restarts_on_a_new_rule_set(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    store = MemoryStateStore()
    clock = ManualClock(T0 + 10)
    proc = Processor(memory_log, store, clock=clock)
    users = [f"u{n}" for n in range(5)]
    memory_log.append(
        [make_event("track", ts=T0, user_id=u, event="Order Completed") for u in users]
    )
    while proc.run_once() > 0:
        pass
    buyers = compile_segments({"buyers": 'did "Order Completed"'})
    proc.set_evaluator(buyers)
    proc._swap_evaluator()
    assert proc.backfill_step(limit=2) == 2  # then the process "dies"

    restarted = Processor(memory_log, store, evaluator=buyers, clock=clock)
    assert restarted.backfilling()
    assert restarted.backfill_step(limit=2) == 2
    assert restarted.backfill_step(limit=2) == 1
    assert not restarted.backfilling()
    assert all(_members(restarted, memory_log, u) == ["buyers"] for u in users)
    entered = [c for c in _changes(restarted) if c[1] == "entered"]
    assert len(entered) == 5  # each profile once, none twice

    both = compile_segments({"buyers": 'did "Order Completed"', "none": 'did "Refund"'})
    restarted.set_evaluator(both)
    restarted._swap_evaluator()
    assert restarted.backfilling()
    assert restarted.backfill_step(limit=10) == 5
    assert len(_changes(restarted)) == 5  # the new rule matches nobody: no change


def test_the_backfill_says_which_segments_are_filling_and_how_far_it_is(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    store = MemoryStateStore()
    clock = ManualClock(T0 + 10)
    buyers = {"buyers": 'did "Order Completed"'}
    proc = Processor(memory_log, store, evaluator=compile_segments(buyers), clock=clock)
    memory_log.append(
        [make_event("track", ts=T0, user_id=f"u{n}", event="Order Completed") for n in range(40)]
    )
    while proc.run_once() > 0:
        pass
    assert proc.progress == backfill.Progress(running=False)

    both = {**buyers, "refunders": 'did "Refund"'}
    proc.set_evaluator(compile_segments(both))
    proc._swap_evaluator()
    proc.backfill_step(limit=20)
    found = proc.progress
    assert found.running and found.segments == ("refunders",)  # "buyers" is unchanged
    assert 0.2 < found.done < 0.8  # 20 of 40 hashed profile ids behind the cursor
    fingerprint = proc.handler.evaluator.plan.fingerprint  # type: ignore[attr-defined]
    assert backfill.progress(store.reader(), fingerprint, both) == found  # the CLI's view

    while proc.backfill_step(limit=20) == 20:
        pass
    assert proc.progress == backfill.Progress(running=False)
    assert not backfill.progress(store.reader(), fingerprint, both).running


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "python"])
def test_a_backfill_over_the_sqlite_log_reads_the_rules_fields_and_agrees_with_live_rules(
    tmp_path: Path, make_event: Callable[..., Any], kernel: bool
) -> None:
    # every field a rule reads: a track's name and properties, a page's name, an identify's
    # traits, the userId; the rest of the event (context, other ids) is not decoded
    rules = {
        "shoe_fans": 'did "Product Viewed" where category = "shoes" at least 2 times',
        "pro": 'did identify and trait plan = "pro"',
        "home": 'did page "Home" in last 1 hour',
        "known": 'is identified and sum(revenue of "Order Completed") >= 10',
    }
    context = {"userAgent": "x" * 200, "ip": "10.0.0.1", "library": {"name": "analytics.js"}}
    events = []
    for n in range(30):
        anon, ts = f"a{n}", T0 + n
        events.append(
            make_event(
                ts=ts,
                anonymous_id=anon,
                event="Product Viewed",
                properties={"category": "shoes" if n % 2 else "hats"},
                context=context,
            )
        )
        events.append(
            make_event(
                ts=ts + 1,
                anonymous_id=anon,
                event="Product Viewed",
                properties={"category": "shoes"},
                context=context,
            )
        )
        events.append(
            make_event("page", ts=ts + 2, anonymous_id=anon, name="Home" if n % 3 else "Search")
        )
        if n % 4 == 0:
            events.append(
                make_event(
                    "identify",
                    ts=ts + 3,
                    anonymous_id=anon,
                    user_id=f"u{n}",
                    traits={"plan": "pro" if n % 8 else "free"},
                )
            )
            events.append(
                make_event(
                    ts=ts + 4,
                    user_id=f"u{n}",
                    event="Order Completed",
                    properties={"revenue": 5 * (n % 3)},
                )
            )
    clock = ManualClock(T0 + 100)
    logs = [SqliteEventLog(tmp_path / f"{name}.sqlite", partitions=4) for name in ("a", "b")]
    settings = ProcessorSettings(kernel=kernel)
    live = Processor(logs[0], MemoryStateStore(), compile_segments(rules), clock, settings)
    late = Processor(logs[1], MemoryStateStore(), clock=clock, settings=settings)
    try:
        for log in logs:
            log.append(events)
        for proc in (live, late):
            while proc.run_once() > 0:
                pass
        late.set_evaluator(compile_segments(rules))
        late._swap_evaluator()
        while late.backfill_step(limit=7) > 0:
            pass
        assert set(late.backfill_stages) >= {"timelines", "read", "decode", "rules", "commit"}

        def members(proc: Processor, log: Any) -> dict[str, list[str]]:
            reader = ProfileReader(proc.store.reader(), log)
            return {seg: sorted(reader.members(seg)) for seg in rules}

        expected = members(live, logs[0])
        assert [s for s, found in expected.items() if not found] == []  # every rule has members
        assert members(late, logs[1]) == expected
    finally:
        for log in logs:
            log.close()


def test_a_backfill_step_without_a_limit_sizes_itself_from_the_steps_before(
    memory_log: Any, make_event: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from segflow.stream import processor as processor_module

    proc = Processor(memory_log, MemoryStateStore(), clock=ManualClock(T0 + 10))
    memory_log.append(
        [make_event("track", ts=T0, user_id=f"u{n}", event="Order Completed") for n in range(600)]
    )
    while proc.run_once() > 0:
        pass
    proc.set_evaluator(compile_segments({"buyers": 'did "Order Completed"'}))
    proc._swap_evaluator()
    # steps may take as long as they like: after a first step of the default size, the
    # next one takes every profile left (up to the 5,000 cap)
    monkeypatch.setattr(processor_module, "BACKFILL_STEP_S", 1e9)
    assert proc.backfill_step() == 200
    assert proc.backfill_step() == 400
    assert not proc.backfilling()


def test_the_rule_set_the_state_is_complete_for_is_read_once_per_backfill_not_per_step(
    tmp_path: Path, memory_log: Any, make_event: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from segflow.stream.state.rocksdb import RocksStateStore, RocksTransaction

    reads: list[str] = []
    get = RocksTransaction.get

    def counted(self: RocksTransaction, ns: str, key: str) -> bytes | None:
        if ns == "meta" and key in (backfill.FINGERPRINT, backfill.COMPLETE):
            reads.append(key)
        return get(self, ns, key)

    monkeypatch.setattr(RocksTransaction, "get", counted)
    store = RocksStateStore(tmp_path / "state")
    try:
        proc = Processor(memory_log, store, clock=ManualClock(T0 + 10))
        memory_log.append(
            [make_event("track", ts=T0, user_id=f"u{n}", event="Order Completed") for n in range(9)]
        )
        while proc.run_once() > 0:
            pass
        for n, rule in enumerate(('did "Order Completed"', 'did "Order Completed" in last 1 hour')):
            proc.set_evaluator(compile_segments({f"buyers{n}": rule}))
            proc._swap_evaluator()
            reads.clear()
            steps = 0
            while (done := proc.backfill_step(limit=2)) > 0:
                steps += 1
                if done == 2:  # (the last step, of one profile, completes it)
                    assert proc.progress.segments == (f"buyers{n}",)
            assert steps >= 4 and len(reads) <= 4, reads  # held across steps, not read per step
            assert not proc.backfilling() and not proc.progress.running  # its completion is seen
            assert _members(proc, memory_log, "u3") == [f"buyers{n}"]
    finally:
        store.close()


def test_on_a_store_other_processes_write_the_completion_is_read_at_each_step(
    tmp_path: Path,
) -> None:
    from segflow.stream import SqliteStateStore

    store = SqliteStateStore(tmp_path / "state.sqlite")  # shared by processors in many processes
    try:
        tx = store.begin_global()
        assert backfill.pending(tx, "f2")
        tx.rollback()
        other = store.begin_global()  # another process completes the backfill
        other.set("meta", backfill.FINGERPRINT, b"f2")
        other.commit()
        tx = store.begin_global()
        assert not backfill.pending(tx, "f2")
        tx.rollback()
    finally:
        store.close()
