"""A profile's rule state rebuilt from its own history, read back from the log.

Used when the state cannot be updated incrementally: a changed rule set (the backfill,
:mod:`segflow.stream.backfill`), a merge whose two states cannot be combined exactly
(:meth:`segflow.stream.handler.EventHandler._merge`), a split. The profile's timeline
(:mod:`segflow.stream.timeline`) gives the positions of its events and of those of the profiles
it absorbed; they are read in one batch (:func:`segflow.log.base.read_positions`) and given to
the rules in event-time order, all at once at ``now`` when the evaluator takes a batch
(``on_events``: one evaluation), else one by one, each at its own time.

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

from segflow.log.base import LogReader, Record, read_positions
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
    positions = timeline.entries(source, profile)
    records = read_positions(log, [(p, o) for _, p, o in positions])
    events = [r.event for r in records]
    complete = len(records) == len(positions)
    if not events:
        return None, complete
    on_events = getattr(evaluator, "on_events", None)
    if on_events is not None:
        return on_events(profile, None, events, now_ms).state, complete
    state: bytes | None = None
    for (ts, _, _), event in zip(_present(positions, records), events, strict=True):
        # as of its own time, never later than now (compaction at a later time would drop
        # entries that a window still holds at now)
        state = evaluator.on_event(profile, state, event, min(ts, now_ms)).state
    return state, complete


def _present(positions: list[timeline.Position], records: list[Record]) -> list[timeline.Position]:
    """The positions whose records were found (in the same order)."""
    if len(records) == len(positions):
        return positions
    found = {(r.partition, r.offset) for r in records}
    return [p for p in positions if (p[1], p[2]) in found]
