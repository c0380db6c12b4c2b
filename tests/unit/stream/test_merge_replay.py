"""A merge whose rule states can't combine exactly replays the merged timeline from the log.

A sequence's state machine folds entries older than ``late_ms``; two folded machines can't be
combined (a ``Viewed`` of one profile and an ``Added`` of the other may complete the sequence
together), so the processor rebuilds the survivor's rule state from both timelines.
"""

from __future__ import annotations

from tests.unit.stream.conftest import EventFactory, MemoryLog

from segflow.clock import MINUTE_MS, ManualClock
from segflow.rules import compile_segments
from segflow.stream import MemoryStateStore, Processor, ProfileReader

T0 = 1_700_000_000_000
RULES = {"s": 'did "Viewed" then "Added" within 30 minutes'}


def test_a_sequence_completed_across_two_merged_profiles(
    memory_log: MemoryLog, make_event: EventFactory
) -> None:
    clock = ManualClock(T0)
    proc = Processor(memory_log, MemoryStateStore(), compile_segments(RULES), clock)
    for minute, who, name in [(0, {"anonymous_id": "a"}, "Viewed"),
                              (10, {"user_id": "u"}, "Added"),
                              (120, {"anonymous_id": "a"}, "Viewed"),
                              (180, {"user_id": "u"}, "Added")]:  # fmt: skip
        clock.set(T0 + minute * MINUTE_MS)
        memory_log.append([make_event("track", clock.now_ms(), event=name, **who)])
        proc.run_once()
    reader = ProfileReader(proc.store.reader(), memory_log)
    assert [reader.lookup(*i).members for i in [("anonymous_id", "a"), ("user_id", "u")]] == [
        [],
        [],
    ]  # neither alone: Viewed 0, 120 / Added 10, 180 (each Added > 30 min after a Viewed)
    clock.set(T0 + 300 * MINUTE_MS)  # both machines have folded everything (late_ms = 1 h)
    memory_log.append([make_event("identify", clock.now_ms(), anonymous_id="a", user_id="u")])
    proc.run_once()
    merged = reader.lookup("user_id", "u")
    assert merged is not None and merged == reader.lookup("anonymous_id", "a")
    # Viewed at 0 (anonymous) then Added at 10 (logged in): a member, as SQL over the merged
    # history says
    assert merged.members == ["s"]
