"""An event stamped in the future counts from its own time on, live and in a backfill.

Found by tests/integration/rules/test_processor_differential.py: the processor evaluated such an
event at its timestamp instead of at the clock's now, so a member (and a computed trait) showed
up early, and compacting the rule state at that later time dropped an entry that a window still
held at now. SQL's meaning is ``timestamp_ms <= T``.
"""

from __future__ import annotations

from tests.unit.stream.conftest import EventFactory, MemoryLog

from segflow.clock import HOUR_MS, MINUTE_MS, ManualClock
from segflow.rules import compile_segments
from segflow.stream import MemoryStateStore, Processor, ProfileReader

T0 = 1_700_000_000_000
SEGMENTS = {"last_x": 'last(c of "A" in last 1 hour) = "x"'}
TRAITS = {"recent": 'count("A" in last 1 hour)'}


def _history(log: MemoryLog, make_event: EventFactory) -> None:
    log.append(
        [
            make_event("track", T0, anonymous_id="a", event="A", properties={"c": "y"}),
            # stamped two hours ahead (a client clock the collector could not correct)
            make_event(
                "track", T0 + 2 * HOUR_MS, anonymous_id="a", event="A", properties={"c": "x"}
            ),
        ]
    )


def _state(proc: Processor, log: MemoryLog) -> tuple[list[str], dict[str, object]]:
    profile = ProfileReader(proc.store.reader(), log).lookup("anonymous_id", "a")
    assert profile is not None
    return profile.members, dict(profile.computed_traits)


def test_a_future_event_counts_from_its_time_on(
    memory_log: MemoryLog, make_event: EventFactory
) -> None:
    clock = ManualClock(T0 + 10 * MINUTE_MS)
    proc = Processor(memory_log, MemoryStateStore(), compile_segments(SEGMENTS, TRAITS), clock)
    _history(memory_log, make_event)
    proc.run_once()
    # at now, only the event at T0 is in the last hour, and its c is "y"
    assert _state(proc, memory_log) == ([], {"recent": 1})
    clock.set(T0 + 2 * HOUR_MS)
    proc.run_once()  # the timer due at the future event's time
    assert _state(proc, memory_log) == (["last_x"], {"recent": 1})


def test_a_backfill_replays_a_future_event_as_of_now(
    memory_log: MemoryLog, make_event: EventFactory
) -> None:
    clock = ManualClock(T0 + 10 * MINUTE_MS)
    proc = Processor(memory_log, MemoryStateStore(), clock=clock)
    _history(memory_log, make_event)
    proc.run_once()
    proc.set_evaluator(compile_segments(SEGMENTS, TRAITS))
    while proc.run_once() or proc.backfilling():
        pass
    assert _state(proc, memory_log) == ([], {"recent": 1})
    clock.set(T0 + 2 * HOUR_MS)
    proc.run_once()
    assert _state(proc, memory_log) == (["last_x"], {"recent": 1})


class _SlowLog:
    """The log, with the clock moving while it is read: an event appended after the
    processor's batch began, but before its read of the log (found in the activation
    benchmark: 3-6% of the changes came from timers for a rule with no window)."""

    def __init__(self, log: MemoryLog, clock: ManualClock, to_ms: int) -> None:
        self.log, self.clock, self.to_ms = log, clock, to_ms

    def __getattr__(self, name: str) -> object:
        return getattr(self.log, name)

    def read(self, partition: int, offset: int, max_records: int = 1000) -> object:
        self.clock.set(max(self.to_ms, self.clock.now_ms()))
        return self.log.read(partition, offset, max_records)


def test_the_batch_clock_is_read_after_the_log(
    memory_log: MemoryLog, make_event: EventFactory
) -> None:
    clock = ManualClock(T0)
    log = _SlowLog(memory_log, clock, T0 + 5)
    proc = Processor(log, MemoryStateStore(), compile_segments({"did_a": 'did "A"'}, {}), clock)
    memory_log.append([make_event("track", T0 + 5, anonymous_id="a", event="A")])
    proc.run_once()
    profile = ProfileReader(proc.store.reader(), memory_log).lookup("anonymous_id", "a")
    assert profile is not None and profile.members == ["did_a"]
    assert proc.freshness.summary()["did_a"].get("timers") is None  # entered by the event
