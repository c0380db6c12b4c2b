"""The processor with the real segment evaluator (segflow.rules): entries, merges, timers."""

from __future__ import annotations

from typing import Any

from segflow.clock import HOUR_MS, ManualClock
from segflow.log.base import Record
from segflow.rules import compile_segments
from segflow.spec import Event, MembershipChange, ProfileMerged
from segflow.stream import MemoryStateStore, Processor, ProfileReader

T0 = 1_700_000_000_000


class ListLog:
    partitions = 1

    def __init__(self) -> None:
        self.records: list[Record] = []

    def add(self, **fields: Any) -> None:
        n = len(self.records)
        ts = fields.pop("ts")
        event = Event(
            message_id=f"m{n}", source_id="s", timestamp_ms=ts, received_at_ms=ts, **fields
        )
        self.records.append(Record(0, n, event))

    def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        return self.records[offset : offset + max_records]


def test_merge_reevaluates_and_timers_expire() -> None:
    log = ListLog()
    clock = ManualClock(T0)
    program = compile_segments(
        {"buyers": 'did "Order Completed" in last 1 hour', "pro": 'trait plan = "pro"'}
    )
    proc = Processor(log, MemoryStateStore(), evaluator=program, clock=clock)
    log.add(type="track", ts=T0, anonymous_id="phone", event="Order Completed")
    log.add(type="identify", ts=T0 + 10, user_id="u1", traits={"plan": "pro"})
    clock.set(T0 + 10)  # rules see an event from its own time on (never before it happened)
    proc.run_once()
    log.add(type="alias", ts=T0 + 20, user_id="u1", previous_id="phone")
    clock.advance(20)
    proc.run_once()
    reader = ProfileReader(proc.store.reader(), log)
    profile = reader.lookup("user_id", "u1")
    assert profile is not None and profile.members == ["buyers", "pro"]
    assert list(reader.members("pro")) == [profile.profile_id]  # the absorbed one left the index
    changes = [c for _, c in proc.change_feed().read(0) if not hasattr(c, "id_type")]
    merged = next(c for c in changes if isinstance(c, ProfileMerged))
    assert merged.survivor == profile.profile_id
    closing = [
        c for c in changes if isinstance(c, MembershipChange) and c.profile_id == merged.absorbed
    ]
    assert [c.kind for c in closing][-1] == "exited"

    clock.advance(HOUR_MS)
    proc.run_once()
    profile = reader.lookup("user_id", "u1")
    assert profile is not None and profile.members == ["pro"]
    last = [c for _, c in proc.change_feed().read(0)][-1]
    assert isinstance(last, MembershipChange) and (last.segment, last.kind) == ("buyers", "exited")
