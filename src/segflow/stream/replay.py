"""A profile's rule state rebuilt from its own history, read back from the log.

Used when the state cannot be updated incrementally: a changed rule set (the backfill,
:mod:`segflow.stream.backfill`), a merge whose two states cannot be combined exactly
(:meth:`segflow.stream.handler.EventHandler._merge`), a split. The profile's timeline
(:mod:`segflow.stream.timeline`) gives the positions of its events and of those of the profiles
it absorbed; they are read in one batch (:func:`segflow.log.base.read_found`; :func:`replay_many`
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

from collections.abc import Sequence

from segflow.log.base import LogReader, Position, Record, read_found
from segflow.profiles import Profile
from segflow.stream import timeline
from segflow.stream.evaluator import SegmentEvaluator
from segflow.stream.state.base import StateReader, StateTransaction


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
    found = read_found(log, [(p, o) for positions in timelines for _, p, o in positions])
    return [
        _fold(evaluator, profile, positions, found, now_ms)
        for profile, positions in zip(profiles, timelines, strict=True)
    ]


def _fold(
    evaluator: SegmentEvaluator,
    profile: Profile,
    positions: list[timeline.Position],
    found: dict[Position, Record],
    now_ms: int,
) -> tuple[bytes | None, bool]:
    """The rule state of ``profile``'s events at ``positions`` (those ``found``)."""
    present = [(ts, found[(p, o)].event) for ts, p, o in positions if (p, o) in found]
    complete = len(present) == len(positions)
    if not present:
        return None, complete
    on_events = getattr(evaluator, "on_events", None)
    if on_events is not None:
        return on_events(profile, None, [e for _, e in present], now_ms).state, complete
    state: bytes | None = None
    for ts, event in present:
        # as of its own time, never later than now (compaction at a later time would drop
        # entries that a window still holds at now)
        state = evaluator.on_event(profile, state, event, min(ts, now_ms)).state
    return state, complete
