"""A merge during a rule-set backfill (segflow.stream.backfill): found by the differential test
of the processor (tests/integration/rules/test_processor_differential.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from segflow.clock import ManualClock
from segflow.log.base import Record
from segflow.rules import compile_segments
from segflow.spec.events import Event
from segflow.stream import MemoryStateStore, Processor, ProfileReader

T0 = 1_700_000_000_000
FILLERS = 200  # the processor rebuilds 200 profiles per backfill step


class OneLog:
    partitions = 1

    def __init__(self) -> None:
        self.records: list[Record] = []

    def append(self, events: Sequence[Event]) -> None:
        self.records += [Record(0, len(self.records) + i, e) for i, e in enumerate(events)]

    def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        return self.records[offset : offset + max_records]


def _ev(mid: str, name: str, anon: str | None = None, user: str | None = None) -> Event:
    kind = "identify" if anon and user else "track"
    return Event(
        type=kind, message_id=mid, source_id="web", timestamp_ms=T0, received_at_ms=T0,
        anonymous_id=anon, user_id=user, event=None if kind == "identify" else name,
    )  # fmt: skip


def _setup(k: int) -> tuple[Processor, OneLog, ManualClock, bool, bool]:
    log, clock = OneLog(), ManualClock(T0)
    proc = Processor(log, MemoryStateStore(), clock=clock)  # no rules yet
    log.append([_ev(f"f{i}", "X", anon=f"visitor{i}") for i in range(FILLERS)])
    log.append([_ev(f"a{k}", "A", anon="anon"), _ev(f"b{k}", "B", user="user")])
    while proc.run_once():
        pass
    reader = ProfileReader(proc.store.reader(), log)
    ids = sorted(key for key, _ in reader.reader.scan("profile", "", "\U0010ffff"))
    first = ids[:FILLERS]  # rebuilt by the first step, in profile id order
    anon, user = reader.resolve("anonymous_id", "anon"), reader.resolve("user_id", "user")
    return proc, log, clock, anon in first, user in first


@pytest.mark.parametrize("anon_first", [True, False])
def test_a_merge_during_the_backfill_keeps_both_histories(anon_first: bool) -> None:
    # was: the survivor, already rebuilt, merged the absorbed profile's state built without
    # the rules, so `did "A" and did "B"` missed the absorbed profile's event until the next
    # rule change
    for k in range(200):
        proc, log, clock, a_first, u_first = _setup(k)
        if a_first == anon_first and u_first != anon_first:
            break
    else:
        pytest.fail("no profile ids straddling the first backfill step")
    clock.set(T0 + 1_000)
    proc.set_evaluator(compile_segments({"s": 'did "A" and did "B"'}))
    proc.run_once()  # rebuilds the first 200 profiles: one of the two
    assert proc.backfilling()
    log.append([_ev("link", "", anon="anon", user="user")])  # merges the two
    while proc.run_once() or proc.backfilling():
        pass
    profile = ProfileReader(proc.store.reader(), log).lookup("user_id", "user")
    assert profile is not None and len(profile.absorbed) == 1
    assert profile.members == ["s"]
