"""A backfill over the SQLite log takes its events from one sequential pass (a LogWindow):
the same states as reading each event at its position, with merges, late events and events
arriving while the backfill runs; in runs of profiles when the log does not fit the budget."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segflow.clock import HOUR_MS, ManualClock
from segflow.log.sqlite import SqliteEventLog
from segflow.profiles import decode_profile
from segflow.rules import compile_segments
from segflow.spec import Event
from segflow.spec.events import encode_event
from segflow.stream import MemoryStateStore, Processor, backfill, replay
from segflow.stream.processor import ProcessorSettings

T0 = 1_700_000_000_000
RULES = {
    "shoe_fans": 'did "Product Viewed" where category = "shoes" at least 2 times in last 2 hours',
    "pro": 'did identify and trait plan = "pro"',
    "home_then_buy": 'did page "Home" then "Order Completed" within 1 hour',
    "spenders": 'is identified and sum(revenue of "Order Completed") >= 10',
}


def _history(make_event: Callable[..., Event], seed: int, people: int) -> list[Event]:
    """Events of ``people``, each with two anonymous ids that a login joins (a merge) for
    some, out of time order in the log (late events)."""
    rng = random.Random(seed)
    out = []
    for n in range(people):
        anons = [f"a{n}x", f"a{n}y"]
        for _ in range(rng.randint(2, 9)):
            ts = T0 + rng.randint(0, 3 * 60) * 60_000
            anon = rng.choice(anons)
            kind = rng.choice(["view", "view", "page", "order"])
            if kind == "view":
                props = {"category": rng.choice(["shoes", "hats"])}
                out.append(
                    make_event(ts=ts, anonymous_id=anon, event="Product Viewed", properties=props)
                )
            elif kind == "page":
                out.append(
                    make_event("page", ts=ts, anonymous_id=anon, name=rng.choice(["Home", "Cart"]))
                )
            else:
                props = {"revenue": rng.choice([0, 5, 10])}
                out.append(
                    make_event(ts=ts, anonymous_id=anon, event="Order Completed", properties=props)
                )
        if n % 3 == 0:  # a login from each anonymous id: their profiles merge
            plan = rng.choice(["pro", "free"])
            for anon in anons:
                ts = T0 + rng.randint(0, 3 * 60) * 60_000
                traits = {"plan": plan}
                out.append(
                    make_event("identify", ts=ts, anonymous_id=anon, user_id=f"u{n}", traits=traits)
                )
    return out


def _state(proc: Processor) -> dict[str, tuple[Any, ...]]:
    """Every profile's members, computed traits and rule state, by profile id."""
    reader = proc.store.reader()
    out = {}
    for pid, raw in reader.scan("profile", "", "\U0010ffff"):
        p = decode_profile(raw)
        out[pid] = (sorted(p.members), p.computed_traits, p.rule_state, sorted(p.absorbed))
    return out


def _run(
    tmp_path: Path,
    name: str,
    events: list[Event],
    budget: int | None,
    kernel: bool,
    monkeypatch: pytest.MonkeyPatch,
    max_passes: int = 1_000,
    rules: dict[str, str] = RULES,
) -> tuple[dict[str, tuple[Any, ...]], int, int]:
    """Half the events processed without rules, then the rules (budget None: from the
    start), and the other half (merges among them) ten at a time, each batch after a
    backfill step of three profiles, then the backfill to its end; the profiles' states, how
    many passes over the log the backfill made and how many events it read at their
    positions."""
    passes = []
    read_window = replay.read_window

    def counted(*args: Any, **kwargs: Any) -> replay.LogWindow:
        passes.append(args[1:])
        return read_window(*args, **kwargs)

    monkeypatch.setattr(replay, "read_window", counted)
    point_reads = []
    read_payloads = SqliteEventLog.read_payloads

    def read_at(self: SqliteEventLog, positions: Any) -> dict[tuple[int, int], bytes]:
        point_reads.extend(positions)
        return read_payloads(self, positions)

    monkeypatch.setattr(SqliteEventLog, "read_payloads", read_at)
    monkeypatch.setattr(replay, "WINDOW_BYTES", budget or 0)
    monkeypatch.setattr(backfill, "MAX_PASSES", max_passes)  # 1,000: runs of a few profiles
    clock = ManualClock(T0 + 4 * HOUR_MS)
    log = SqliteEventLog(tmp_path / f"{name}.sqlite", partitions=4)
    program = compile_segments(rules)
    settings = ProcessorSettings(kernel=kernel)
    proc = Processor(log, MemoryStateStore(), program if budget is None else None, clock, settings)
    try:
        half = len(events) // 2
        log.append(events[:half])
        while proc.run_once() > 0:
            pass
        if budget is not None:
            proc.set_evaluator(program)
            proc._swap_evaluator()
        for start in range(half, len(events), 10):  # steps of 3 profiles between batches
            log.append(events[start : start + 10])
            proc._backfill_limit = 3
            proc.run_once(max_records=5)
        while proc.run_once() > 0 or proc.backfilling():
            pass
        assert proc.handler not in backfill._windows  # freed when the backfill ends
        return _state(proc), len(passes), len(point_reads)
    finally:
        log.close()


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "python"])
def test_the_log_window_gives_the_states_of_point_reads_in_one_pass_or_in_runs(
    tmp_path: Path,
    make_event: Callable[..., Event],
    monkeypatch: pytest.MonkeyPatch,
    kernel: bool,
) -> None:
    events = _history(make_event, seed=7, people=40)
    points, none, every = _run(tmp_path, "points", events, 0, kernel, monkeypatch)
    whole, one, later = _run(tmp_path, "whole", events, 1 << 30, kernel, monkeypatch)
    runs, many, few = _run(tmp_path, "runs", events, 3_000, kernel, monkeypatch)
    assert (none, one) == (0, 1)
    assert many > 3  # a run of a few profiles per pass
    # events that arrived after a pass are read at their positions
    assert every >= len(events) // 2 and every > later > few, (every, later, few)
    large = _run(tmp_path, "large", events, 3_000, kernel, monkeypatch, max_passes=2)
    assert large == (points, 0, every)  # a log this much larger than the budget: point reads
    assert whole == points
    assert runs == points
    assert any(absorbed for *_, absorbed in points.values())  # merges happened
    assert all(any(seg in members for members, *_ in points.values()) for seg in RULES)

    # the rules set from the start: the same members, but the sequence's (the clock is hours
    # past the events: live, they are over late_ms behind it and folded in arrival order,
    # docs/segments.md "Out-of-order events"; the backfill replays them in time order)
    live, *_ = _run(tmp_path, "live", events, None, kernel, monkeypatch)

    def plain(found: dict[str, tuple[Any, ...]]) -> dict[str, list[str]]:
        return {p: [m for m in s[0] if m != "home_then_buy"] for p, s in found.items()}

    assert plain(live) == plain(points)


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "python"])
def test_events_no_rule_reads_are_skipped_and_the_states_are_those_of_every_event_decoded(
    tmp_path: Path,
    make_event: Callable[..., Event],
    monkeypatch: pytest.MonkeyPatch,
    kernel: bool,
) -> None:
    rules = {  # no rule reads a view or an identify (a page by its type, the "Cart" ones too)
        "buyers": 'did "Order Completed" at least 2 times in last 2 hours',
        "home": 'did page "Home" then not "Order Completed" within 1 hour',
        "pro": 'trait plan = "pro" and is identified',
    }
    keep = replay.rule_filter(compile_segments(rules))
    assert keep is not None and not keep(encode_event(make_event(event="Product Viewed")))
    skipped = []
    rule_filter = replay.rule_filter

    def counted(evaluator: Any) -> Any:
        test = rule_filter(evaluator)
        return None if test is None else lambda b: test(b) or skipped.append(b)

    events = _history(make_event, seed=11, people=30)
    monkeypatch.setattr(replay, "rule_filter", lambda evaluator: None)  # every event decoded
    every, *_ = _run(tmp_path, "every", events, 0, kernel, monkeypatch, rules=rules)
    monkeypatch.setattr(replay, "rule_filter", counted)
    points, *_ = _run(tmp_path, "points", events, 0, kernel, monkeypatch, rules=rules)
    assert points == every and skipped  # the point reads skip them too
    skipped.clear()
    whole, *_ = _run(tmp_path, "whole", events, 1 << 30, kernel, monkeypatch, rules=rules)
    assert whole == every and skipped
    assert all(any(seg in members for members, *_ in points.values()) for seg in rules)


def test_a_window_is_a_cache_of_the_log_and_an_event_it_lacks_is_read_at_its_position(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=2)
    try:
        positions = log.append([make_event(anonymous_id=f"a{n}", event="A") for n in range(6)])
        window = replay.read_window(log, "", None, {0: set(), 1: set()})
        assert len(window) == 0
        whole = replay.read_window(log, "", None)
        assert len(whole) == 6 and whole.covers("p_0")
        held, missing = whole.take([*positions, (1, 99)])
        assert len(held) == 6 and missing == [(1, 99)]
        assert replay.sequential(log) and replay.payload_bytes(log) > replay.HELD_BYTES
    finally:
        log.close()


class HoledLog:
    """A log whose partition 0 lacks some offsets (removed by retention or an erasure), read
    in pages of two."""

    partitions = 2

    def __init__(self, held: dict[int, bytes]) -> None:
        self.held = held

    def read_encoded(self, partition: int, offset: int, max_records: int = 1000) -> Any:
        rows = sorted((o, b) for o, b in self.held.items() if partition == 0 and o >= offset)
        return rows[: min(max_records, 2)]


def test_a_window_over_a_log_with_holes_holds_nothing_there_and_reads_those_at_positions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(replay, "_PAGE", 2)
    log = HoledLog({3: b"c", 4: b"d", 7: b"g", 8: b"h", 9: b"i"})
    window = replay.read_window(log, "", None)
    assert len(window) == 5
    assert window.parts == [[None, None, None, b"c", b"d", None, None, b"g", b"h", b"i"], []]
    assert window.take([(0, 4), (0, 5), (0, 10), (1, 0), (2, 0)]) == (
        {(0, 4): b"d"},
        [(0, 5), (0, 10), (1, 0), (2, 0)],
    )
    timelines = [[(1, 0, 3), (2, 0, 9)], [(1, 0, 3), (2, 0, 5)], [(1, 0, 12)], [(1, 1, 0)]]
    assert window.decode(timelines, bytes.upper) == [[b"C", b"I"], None, None, None]
    some = replay.read_window(log, "", None, {0: {4, 8}})
    assert some.parts[0][4] == b"d" and some.parts[0][8] == b"h" and len(some) == 2


def test_a_deletion_during_a_backfill_drops_the_window_that_may_hold_its_events(
    tmp_path: Path, make_event: Callable[..., Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    from segflow.stream.erase import erase_profiles

    monkeypatch.setattr(replay, "WINDOW_BYTES", 1 << 30)
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=2)
    proc = Processor(log, MemoryStateStore(), None, ManualClock(T0 + 4 * HOUR_MS))
    try:
        log.append(_history(make_event, 5, 12))
        while proc.run_once() > 0:
            pass
        proc.set_evaluator(compile_segments(RULES))
        proc._swap_evaluator()
        proc._backfill_limit = 3
        proc.run_once()  # one step: the window is read and held for the next ones
        assert proc.backfilling() and proc.handler in backfill._windows
        victim = next(iter(_state(proc)))
        done = proc.submit(lambda batch, now_ms: erase_profiles(batch, [victim], []))
        proc.run_commands()
        assert done.result(timeout=10)["profiles"] == 1
        assert proc.handler not in backfill._windows  # its copy of the erased events is gone
        while proc.run_once() > 0 or proc.backfilling():
            pass
        assert victim not in _state(proc)
    finally:
        log.close()


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "python"])
def test_point_reads_give_the_results_of_the_events_the_log_still_has(
    tmp_path: Path, make_event: Callable[..., Event], kernel: bool
) -> None:
    from segflow.profiles import Profile
    from segflow.rules.incremental.kernel import KernelProgram, compile_kernel
    from segflow.stream import timeline

    program = compile_segments(RULES)
    if kernel and KernelProgram is None:
        pytest.skip("the kernel is not built")
    evaluator: Any = compile_kernel(program) if kernel else program
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=1)
    try:
        events = _history(make_event, seed=3, people=4)[:12]
        log.append(events)
        tx = MemoryStateStore().begin_global()
        some, none = (
            Profile(profile_id="p_a", created_ms=0),
            Profile(profile_id="p_b", created_ms=0),
        )
        for offset, event in enumerate(events):
            timeline.append(tx, some, ts_ms=event.timestamp_ms, partition=0, offset=offset)
        for offset in (40, 41):  # removed from the log (retention, an erasure)
            timeline.append(tx, some, ts_ms=T0 + offset, partition=0, offset=offset)
            timeline.append(tx, none, ts_ms=T0 + offset, partition=0, offset=offset)
        now = T0 + 4 * HOUR_MS
        got = replay.evaluate_many(tx, evaluator, log, [some, none], now)
        kept = sorted(events, key=lambda e: e.timestamp_ms)
        whole = program.on_events(some, None, kept, now)
        assert (got[0].members, got[0].next_wakeup_ms) == (whole.members, whole.next_wakeup_ms)
        assert got[0].members  # (the events matter)
        assert got[1].members == program.on_time(none, None, now).members
        # the window's path: the same, its events taken from it and the rest read
        window = replay.read_window(log, "", None)
        again = replay.evaluate_many(tx, evaluator, log, [some, none], now, window=window)
        assert [r.members for r in again] == [r.members for r in got]
        if kernel:
            assert again[0].state == got[0].state
    finally:
        log.close()
