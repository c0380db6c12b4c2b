"""A profile's rule state rebuilt from its own history, read back from the log.

Used when the state cannot be updated incrementally: a changed rule set (the backfill,
:mod:`segflow.stream.backfill`), a merge whose two states cannot be combined exactly
(:meth:`segflow.stream.handler.EventHandler._merge`), a split. The profile's timeline
(:mod:`segflow.stream.timeline`) gives the positions of its events and of those of the profiles
it absorbed; they are read in one batch (:func:`segflow.log.base.read_found`, or the log's raw
payloads decoded as :class:`RuleEvent` for a rule program; :func:`replay_many`
reads many profiles' at once) and given to the rules in event-time order, all at once at
``now`` when the evaluator takes a batch (``on_events``: one evaluation), else one by one, each
at its own time.

>>> from segflow.stream.state import MemoryStateStore
>>> from segflow.stream.evaluator import NullEvaluator
>>> from segflow.profiles import Profile
>>> class NoLog:
...     partitions = 1
...     def read(self, partition, offset, max_records=1000): return []
>>> tx = MemoryStateStore().begin_global()
>>> replay(tx, NullEvaluator(), NoLog(), Profile(profile_id="p", created_ms=0), 0)
(None, True)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec

from segflow.log.base import LogReader, Position, read_found
from segflow.profiles import Profile
from segflow.stream import timeline
from segflow.stream.evaluator import EvalResult, SegmentEvaluator
from segflow.stream.state.base import StateReader, StateTransaction


class RuleEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of :class:`~segflow.spec.events.Event` that segment rules read (the
    incremental evaluators and the kernel: the event's kind and name, its properties and
    traits, whether it is identified, its time and message id), decoded from a log payload
    without the rest (``context``, ``integrations``, the other ids): a backfill replays whole
    histories, and most of an event's bytes are context the rules never read."""

    type: str
    message_id: str
    timestamp_ms: int
    user_id: str | None = None
    event: str | None = None
    name: str | None = None
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}


_rule_event = msgspec.msgpack.Decoder(RuleEvent).decode


def replay(
    source: StateTransaction | StateReader,
    evaluator: SegmentEvaluator,
    log: LogReader,
    profile: Profile,
    now_ms: int,
) -> tuple[bytes | None, bool]:
    """The rule state of ``profile``'s timeline replayed in event-time order, and whether
    every event was still in the log (False: some were removed by log retention)."""
    return replay_many(source, evaluator, log, [profile], now_ms)[0]


def replay_many(
    source: StateTransaction | StateReader,
    evaluator: SegmentEvaluator,
    log: LogReader,
    profiles: Sequence[Profile],
    now_ms: int,
) -> list[tuple[bytes | None, bool]]:
    """:func:`replay` for each of ``profiles``, their events read from the log at once."""
    timelines = [timeline.entries(source, profile) for profile in profiles]
    found = _events(log, evaluator, [(p, o) for entries in timelines for _, p, o in entries])
    out: list[tuple[bytes | None, bool]] = []
    for profile, entries in zip(profiles, timelines, strict=True):
        state, _, complete = _fold(evaluator, profile, entries, found, now_ms)
        out.append((state, complete))
    return out


def evaluate_many(
    source: StateTransaction | StateReader,
    evaluator: SegmentEvaluator,
    log: LogReader,
    profiles: Sequence[Profile],
    now_ms: int,
    stages: dict[str, float] | None = None,
) -> list[EvalResult]:
    """The rules' result at ``now_ms`` for each of ``profiles`` (a run of neighbouring ids:
    a backfill step) rebuilt from its timeline alone: one range scan of the timelines, one
    read of the log, each event decoded as a :class:`RuleEvent` (the evaluators' fields only),
    and one evaluation per profile where the evaluator takes a batch (``on_events`` at now).
    ``stages`` (when given) accumulates the seconds of each: ``timelines``, ``read``,
    ``decode``, ``rules``.

    >>> from segflow.stream.state import MemoryStateStore
    >>> from segflow.stream.evaluator import NullEvaluator
    >>> class NoLog:
    ...     partitions = 1
    ...     def read(self, partition, offset, max_records=1000): return []
    >>> tx = MemoryStateStore().begin_global()
    >>> p = Profile(profile_id="p", created_ms=0)
    >>> [r.members for r in evaluate_many(tx, NullEvaluator(), NoLog(), [p], 0)]
    [frozenset()]
    """
    clock = time.perf_counter
    t0 = clock()
    timelines = timeline.entries_many(source, profiles)
    t1 = clock()
    positions = [(p, o) for entries in timelines for _, p, o in entries]
    times: list[float] = []
    found = _events(log, evaluator, positions, times)
    t2 = times[0] if times else t1
    t3 = clock()
    out: list[EvalResult] = []
    for profile, entries in zip(profiles, timelines, strict=True):
        state, result, _ = _fold(evaluator, profile, entries, found, now_ms)
        out.append(result if result is not None else evaluator.on_time(profile, state, now_ms))
    if stages is not None:
        split = {"timelines": t1 - t0, "read": t2 - t1, "decode": t3 - t2, "rules": clock() - t3}
        for name, seconds in split.items():
            stages[name] = stages.get(name, 0.0) + seconds
    return out


def _events(
    log: LogReader,
    evaluator: SegmentEvaluator,
    positions: Sequence[Position],
    times: list[float] | None = None,
) -> dict[Position, Any]:
    """The events at ``positions`` still in the log, by position: each a :class:`RuleEvent`
    when the evaluator is a rule program (it reads nothing else) and the log hands out its
    payloads, else a whole event. ``times`` gets the clock after the read (before decoding)."""
    payloads = getattr(log, "read_payloads", None)
    if payloads is None or getattr(evaluator, "plan", None) is None:
        found = {pos: record.event for pos, record in read_found(log, positions).items()}
        if times is not None:
            times.append(time.perf_counter())
        return found
    raw = payloads(positions)
    if times is not None:
        times.append(time.perf_counter())
    decode = _rule_event
    return {pos: decode(data) for pos, data in raw.items()}


def _fold(
    evaluator: SegmentEvaluator,
    profile: Profile,
    positions: list[timeline.Position],
    found: dict[Position, Any],
    now_ms: int,
) -> tuple[bytes | None, EvalResult | None, bool]:
    """The rule state of ``profile``'s events at ``positions`` (those ``found``), the result
    at ``now_ms`` when one evaluation gave both, and whether every event was found."""
    get = found.get
    present = [(ts, event) for ts, p, o in positions if (event := get((p, o))) is not None]
    complete = len(present) == len(positions)
    if not present:
        return None, None, complete
    on_events = getattr(evaluator, "on_events", None)
    if on_events is not None:
        result = on_events(profile, None, [event for _, event in present], now_ms)
        return result.state, result, complete
    state: bytes | None = None
    for ts, event in present:
        # as of its own time, never later than now (compaction at a later time would drop
        # entries that a window still holds at now)
        state = evaluator.on_event(profile, state, event, min(ts, now_ms)).state
    return state, None, complete
