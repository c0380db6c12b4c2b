"""A profile's membership history in valid time: when each membership held by the rules over
the events known now, whatever order they arrived in.

The profile's events (its timeline and those of the profiles it absorbed,
:mod:`segflow.stream.timeline`) are read back from the log and replayed in event-time order
through the incremental evaluator, each group of simultaneous events evaluated at its own
time, and the timers fired at their own instants in between (a window running out, the
``within`` of ``then not``): the same instants the SQL compiler answers at. A late event thus
recomputes the past. This is the ``valid`` half of ``/api/v1/profiles/{ident}/segments/history``;
the ``recorded`` half (when segflow committed each change) is the warehouse's
``memberships`` table (docs/segments.md, "Membership history").

>>> from segflow.rules import compile_segments
>>> from segflow.spec import Event
>>> prog = compile_segments({"recent": 'did "A" in last 1 hour'})
>>> a = Event(type="track", message_id="m", source_id="s", timestamp_ms=1_000,
...           received_at_ms=1_000, event="A")
>>> replay_history(prog, Profile(profile_id="p", created_ms=0), [a], now_ms=10_000_000)
[Interval(segment='recent', entered_at_ms=1000, exited_at_ms=3601000)]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from segflow.log.base import LogReader, read_found
from segflow.profiles import Profile, apply_event
from segflow.spec.events import Event
from segflow.stream import timeline
from segflow.stream.evaluator import SegmentEvaluator
from segflow.stream.state.base import StateReader

MAX_TIMERS = 100_000  # timer firings replayed per profile (a periodic rule over years)


@dataclass(frozen=True)
class Interval:
    """``segment`` held from ``entered_at_ms`` until ``exited_at_ms`` (None: still holds)."""

    segment: str
    entered_at_ms: int
    exited_at_ms: int | None


@dataclass(frozen=True)
class ValidHistory:
    """The intervals, and whether every event was still in the log (False: log retention
    removed some, so the replay saw part of the history)."""

    intervals: list[Interval]
    complete: bool


def valid_history(
    reader: StateReader,
    log: LogReader,
    evaluator: SegmentEvaluator,
    profile: Profile,
    now_ms: int,
) -> ValidHistory:
    """Replay ``profile``'s events from ``log`` (positions from the state ``reader``) up to
    ``now_ms``: its valid-time membership intervals."""
    positions = timeline.entries(reader, profile)
    found = read_found(log, [(p, o) for _, p, o in positions])
    events = [found[(p, o)].event for _, p, o in positions if (p, o) in found]
    complete = len(events) == len(positions)
    return ValidHistory(replay_history(evaluator, profile, events, now_ms), complete)


class _Recorder:
    """Folds the members after each evaluation into intervals (none of zero length)."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}
        self.closed: list[Interval] = []

    def at(self, at_ms: int, members: frozenset[str]) -> None:
        for segment in sorted(members - self.open.keys()):
            self.open[segment] = at_ms
        for segment in sorted(self.open.keys() - members):
            entered = self.open.pop(segment)
            if entered < at_ms:
                self.closed.append(Interval(segment, entered, at_ms))

    def intervals(self) -> list[Interval]:
        still = [Interval(s, at, None) for s, at in self.open.items()]
        return sorted([*self.closed, *still], key=lambda i: (i.entered_at_ms, i.segment))


def replay_history(
    evaluator: SegmentEvaluator, profile: Profile, events: Sequence[Event], now_ms: int
) -> list[Interval]:
    """The valid-time intervals of ``events`` (one profile's, any order) up to ``now_ms``.

    The rules read a profile rebuilt from the events replayed so far (traits, counts, first
    and last seen as of each instant); scores and clusters are the profile's current ones.
    """
    view = Profile(
        profile_id=profile.profile_id,
        created_ms=profile.created_ms,
        identities=list(profile.identities),
        scores=dict(profile.scores),
        clusters=dict(profile.clusters),
        cluster_ids=dict(profile.cluster_ids),
    )
    ordered = sorted(
        (e for e in events if e.timestamp_ms <= now_ms),
        key=lambda e: (e.timestamp_ms, e.message_id),
    )
    recorder = _Recorder()
    state: bytes | None = None
    wake: int | None = None
    fired = 0
    for ts, group in itertools.groupby(ordered, key=lambda e: e.timestamp_ms):
        state, wake, fired = _timers(evaluator, view, state, wake, ts, recorder, fired)
        for event in group:
            apply_event(view, event)
            result = evaluator.on_event(view, state, event, ts)
            state = result.state
        recorder.at(ts, result.members)
        wake = result.next_wakeup_ms
    _timers(evaluator, view, state, wake, now_ms + 1, recorder, fired)
    return recorder.intervals()


def _timers(
    evaluator: SegmentEvaluator,
    view: Profile,
    state: bytes | None,
    wake: int | None,
    before_ms: int,
    recorder: _Recorder,
    fired: int,
) -> tuple[bytes | None, int | None, int]:
    """Fire every timer due before ``before_ms``, each at its own instant."""
    while wake is not None and wake < before_ms and fired < MAX_TIMERS:
        result = evaluator.on_time(view, state, wake)
        state, fired = result.state, fired + 1
        recorder.at(wake, result.members)
        following = result.next_wakeup_ms
        wake = following if following is not None and following > wake else None
    return state, wake, fired
