"""The timer index: a row at or before every profile's due time, moved only when it must be."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segflow.clock import DAY_MS, ManualClock
from segflow.rules import compile_segments
from segflow.spec import MembershipChange
from segflow.stream import MemoryStateStore, Processor, ProcessorSettings

T0 = 1_700_000_000_000
QUIET = {"quiet": "not did any event in last 14 days"}


def _rows(store: MemoryStateStore) -> list[str]:
    return [k for k, _ in store.reader().scan("timer", "", "\U0010ffff")]


def _entered(proc: Processor) -> list[int]:
    return [
        c.at_ms
        for _, c in proc.change_feed().read(0)
        if isinstance(c, MembershipChange) and c.kind == "entered"
    ]


def test_a_due_time_moving_later_keeps_its_row_and_the_early_row_rearms(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    store, clock = MemoryStateStore(), ManualClock(T0)
    proc = Processor(memory_log, store, compile_segments(QUIET), clock=clock)
    memory_log.append([make_event("track", T0, user_id="u1", event="Login")])
    proc.run_once()
    first = _rows(store)
    assert len(first) == 1 and int(first[0].split("|")[0], 16) == T0 + 14 * DAY_MS

    for day in (1, 2, 3):  # each event moves the due time a day later: no timer write
        clock.set(T0 + day * DAY_MS)
        memory_log.append([make_event("track", T0 + day * DAY_MS, user_id="u1", event="Login")])
        proc.run_once()
        assert _rows(store) == first

    clock.set(T0 + 14 * DAY_MS)  # the row comes due; the profile is not: moved to its time
    proc.run_once()
    (row,) = _rows(store)
    due = int(row.split("|")[0], 16)
    assert T0 + 14 * DAY_MS < due <= T0 + 17 * DAY_MS  # the rules' next wake-up
    assert _entered(proc) == []

    clock.set(T0 + 17 * DAY_MS)
    proc.run_once()
    assert _entered(proc) == [T0 + 17 * DAY_MS]  # quiet 14 days after the last event, on time
    assert _rows(store) == []


def test_a_restarted_processor_finds_every_timer_in_the_store(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    store, clock = MemoryStateStore(), ManualClock(T0)
    proc = Processor(memory_log, store, compile_segments(QUIET), clock=clock)
    memory_log.append([make_event("track", T0, user_id="u1", event="Login")])
    proc.run_once()
    clock.set(T0 + DAY_MS)
    memory_log.append([make_event("track", T0 + DAY_MS, user_id="u1", event="Login")])
    proc.run_once()

    again = Processor(memory_log, store, compile_segments(QUIET), clock=clock)
    clock.set(T0 + 15 * DAY_MS)
    again.run_once()
    assert _entered(again) == [T0 + 15 * DAY_MS]


def test_timers_due_beyond_one_timer_batch_fire_in_the_same_run(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    store, clock = MemoryStateStore(), ManualClock(T0)
    settings = ProcessorSettings(timer_batch=2)
    proc = Processor(memory_log, store, compile_segments(QUIET), clock=clock, settings=settings)
    memory_log.append([make_event("track", T0, user_id=f"u{i}", event="Login") for i in range(5)])
    proc.run_once()
    assert len(_rows(store)) == 5
    clock.set(T0 + 14 * DAY_MS)
    proc.run_once()  # five due, two a transaction: all of them in this run
    assert _entered(proc) == [T0 + 14 * DAY_MS] * 5
    assert _rows(store) == []
