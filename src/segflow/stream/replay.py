"""A profile's rule state rebuilt from its own history, read back from the log.

Used when the state cannot be updated incrementally: a changed rule set (the backfill,
:mod:`segflow.stream.backfill`), a merge whose two states cannot be combined exactly
(:meth:`segflow.stream.handler.EventHandler._merge`), a split. The profile's timeline
(:mod:`segflow.stream.timeline`) gives the positions of its events and of those of the profiles
it absorbed; they are read in one batch (:func:`segflow.log.base.read_found`, or for a rule
program the log's raw payloads decoded with the fields its rules read, :func:`rule_decoder`;
:func:`replay_many` reads many profiles' at once) and given to the rules in event-time
order, all at once at ``now`` when the evaluator takes a batch (``on_events``: one
evaluation), else one by one, each at its own time.

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

import functools
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import msgspec

from segflow.log.base import LogReader, Position, read_found
from segflow.profiles import Profile
from segflow.stream import decode, timeline
from segflow.stream.evaluator import EvalResult, SegmentEvaluator
from segflow.stream.state.base import StateReader, StateTransaction


class RuleHead(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The fields of :class:`~segflow.spec.events.Event` that segment rules read (the
    incremental evaluators and the kernel: the event's kind and name, its traits, whether it is
    identified, its time and message id) but ``properties`` (read as empty), decoded from a log
    payload without the rest (``context``, ``integrations``, the other ids): a backfill
    replays whole histories, and most of an event's bytes are context the rules never read.
    :class:`RuleEvent` adds the properties, :func:`rule_decoder` only those the rules read.

    Not tracked by the cyclic garbage collector (``gc=False``): it holds strings, numbers and
    decoded JSON that nothing writes, so it is never part of a cycle, and a backfill creates
    millions of them; tracked, they triggered the collections that took ~20% of a 1M-event
    backfill (9.1-9.4 s against 7.4-7.5 s, alternated in one process)."""

    type: str
    message_id: str
    timestamp_ms: int
    user_id: str | None = None
    event: str | None = None
    name: str | None = None
    traits: dict[str, Any] = {}

    @property
    def properties(self) -> dict[str, Any]:
        """Empty: the rules that read this event read no properties."""
        return _NOTHING


class RuleEvent(RuleHead, frozen=True, kw_only=True, gc=False):
    """:class:`RuleHead` with the whole of ``properties``."""

    properties: dict[str, Any] = {}


_NOTHING: dict[str, Any] = {}  # shared, never written (nothing writes an event's dicts)
_rule_event = msgspec.msgpack.Decoder(RuleEvent).decode
_rule_head = msgspec.msgpack.Decoder(RuleHead).decode


def rule_decoder(evaluator: Any) -> Callable[[bytes], RuleHead]:
    """The decoder of log payloads for a rule program's replay: only the fields its rules
    read. :class:`RuleHead` when no rule reads ``properties``; for the compiled kernel, a
    :class:`RuleHead` with only the keys of ``properties`` the rules read
    (:func:`~segflow.stream.decode.property_keys`), in a struct the kernel reads in C++
    (as :func:`~segflow.stream.decode.picking_decoder` for the live path); else
    :class:`RuleEvent`. Decoding the other keys' values was ~45% of the decode's time.

    >>> from segflow.rules import compile_segments
    >>> from segflow.spec.events import Event, encode_event
    >>> e = Event(type="track", message_id="m1", source_id="web", timestamp_ms=5,
    ...           received_at_ms=6, event="A", properties={"plan": "pro", "x": [1]})
    >>> rule_decoder(compile_segments({"s": 'did "A"'}))(encode_event(e)).properties
    {}
    >>> rule_decoder(compile_segments({"s": 'did "A" where plan = "pro"'}))(encode_event(e)).event
    'A'
    """
    if not decode.reads_properties(evaluator):
        return _rule_head
    if not _is_kernel(evaluator):
        return _rule_event
    keys = decode.property_keys(evaluator)
    return _rule_event if keys is None else _picking_rule_decoder(keys)


def rule_filter(evaluator: Any) -> Callable[[bytes], Any] | None:
    """A test of a log payload that is false only for an event no rule of ``evaluator``
    reads, so that a backfill skips it before decoding it; None when every event may be read
    (a selector of ``any event``: ``did any event``, ``not did any event in last 14 days``)
    or when the evaluator does not take a profile's events at once (``on_events``).

    An event is read by a selector of its kind: a track event by its name, a page or screen
    by its type, an identify (``did identify``, an event trait) by its type, ``is
    identified`` by its ``user_id``. The test looks for the bytes of one of those fields as
    ``encode_event`` writes them (the key and the value, side by side in the msgpack map):
    an event it keeps may still match nothing (the bytes elsewhere, a filter), never the
    other way round. Skipping one changes nothing: an event no selector matches is recorded
    nowhere, by the kernel and by the Python program alike.

    >>> from segflow.rules import compile_segments
    >>> from segflow.spec.events import Event, encode_event
    >>> keep = rule_filter(compile_segments({"s": 'did "A" where x = 1', "t": 'did page'}))
    >>> def event(**f): return encode_event(Event(message_id="m", source_id="w",
    ...     timestamp_ms=1, received_at_ms=1, **f))
    >>> [bool(keep(event(type="track", event=n))) for n in ("A", "B")]
    [True, False]
    >>> bool(keep(event(type="page", name="Home"))), bool(keep(event(type="identify")))
    (True, False)
    >>> rule_filter(compile_segments({"s": "not did any event in last 14 days"})) is None
    True
    """
    plan = getattr(evaluator, "plan", None)
    if plan is None or not callable(getattr(evaluator, "on_events", None)):
        return None
    needles: set[bytes] = set()
    for sel in decode.selectors_read(plan):
        if sel.kind == "any":
            return None
        if sel.kind == "identified":
            needles.add(_packed("user_id"))
        elif sel.kind == "track" and sel.name is not None:
            needles.add(_packed("event") + _packed(sel.name))
        else:
            kind = "identify" if sel.kind == "trait" else sel.kind
            needles.add(_packed("type") + _packed(kind))
    if not needles:
        return lambda payload: False
    return re.compile(b"|".join(re.escape(n) for n in sorted(needles))).search


def _packed(text: str) -> bytes:
    return msgspec.msgpack.encode(text)


def _is_kernel(evaluator: Any) -> bool:
    from segflow.rules.incremental.kernel import KernelProgram

    return KernelProgram is not None and isinstance(evaluator, KernelProgram)


@functools.lru_cache(maxsize=64)
def _picking_rule_decoder(keys: tuple[str, ...]) -> Callable[[bytes], RuleHead]:
    """A decoder of :class:`RuleHead` with only ``keys`` of ``properties``
    (:func:`~segflow.stream.decode.picking_type`), untracked by the collector like it."""
    event = decode.picking_type(RuleHead, keys, prefix="PickedRule", gc=False)
    return msgspec.msgpack.Decoder(event).decode  # type: ignore[return-value]  # a subclass


WINDOW_BYTES: int | None = None
"""The memory a :class:`LogWindow` may hold: its payloads plus :data:`HELD_BYTES` each (0: no
window, each backfill step reads its events at their positions; None: :func:`window_budget`)."""
HELD_BYTES = 48
"""What a payload held by a window costs beyond its own bytes (the bytes object and its slot
in the partition's list: 41 measured by tracemalloc over 250k events; with a dict by offset
it was 107)."""
_PAGE = 50_000  # records per sequential read


class LogWindow:
    """Encoded events of the log read in one sequential pass, by partition and offset: the
    events of a run of profiles ``first`` .. ``last`` (ids; ``last`` None: to the end) for a
    backfill, which takes them here instead of one point read each (:func:`read_window`).

    It is a cache of the log, not of the state: a position it does not hold (an event
    appended after the pass, one a merge since brought into the run) is read from the log.
    Each partition's payloads are a list indexed by offset (None: not held): a slot of 8 bytes
    an event where a dict by offset took ~90 (its table and the offset's int), and a third
    faster to look up at random (a backfill's profiles' events are spread over the log; ~20%
    less for the lookup and the decode together).

    >>> w = LogWindow([[b"a", b"b"]], first="p_1", last=None)
    >>> w.covers("p_2"), w.covers("p_0"), w.take([(0, 1), (0, 5), (3, 0)])
    (True, False, ({(0, 1): b'b'}, [(0, 5), (3, 0)]))
    """

    def __init__(self, parts: list[list[bytes | None]], first: str, last: str | None) -> None:
        self.parts = parts
        self.first = first
        self.last = last

    def __len__(self) -> int:
        return sum(len(part) - part.count(None) for part in self.parts)

    def covers(self, profile_id: str) -> bool:
        """Whether ``profile_id`` is in the window's run of profiles."""
        return self.first <= profile_id and (self.last is None or profile_id <= self.last)

    def decode(
        self,
        timelines: Sequence[Sequence[timeline.Position]],
        decode: Callable[[bytes], Any],
        keep: Callable[[bytes], Any] | None = None,
    ) -> list[list[Any] | None]:
        """Each timeline's events, ``decode``d, in its order (only those whose payload
        ``keep`` accepts, when given); None for a timeline with an event the window does not
        hold.

        >>> w = LogWindow([[b"a", b"b", None]], "", None)
        >>> w.decode([[(9, 0, 1), (9, 0, 0)], [(9, 1, 0)], [(9, 0, 2)]], bytes.upper)
        [[b'B', b'A'], None, None]
        >>> w.decode([[(9, 0, 1), (9, 0, 0)]], bytes.upper, keep=lambda b: b != b"a")
        [[b'B']]
        """
        parts = self.parts
        out: list[list[Any] | None] = []
        for entries in timelines:
            try:
                raw = [parts[p][o] for _, p, o in entries]
            except IndexError:
                out.append(None)
                continue
            if None in raw:
                out.append(None)
                continue
            held = cast(list[bytes], raw)
            out.append(list(map(decode, held if keep is None else filter(keep, held))))
        return out

    def take(self, positions: Sequence[Position]) -> tuple[dict[Position, bytes], list[Position]]:
        """The payloads held at ``positions``, and the positions not held."""
        parts, count = self.parts, len(self.parts)
        found: dict[Position, bytes] = {}
        missing: list[Position] = []
        for pos in positions:
            part = parts[pos[0]] if pos[0] < count else _NONE
            data = part[pos[1]] if pos[1] < len(part) else None
            if data is None:
                missing.append(pos)
            else:
                found[pos] = data
        return found, missing


_NONE: list[bytes | None] = []  # a partition the window holds nothing of


def window_budget() -> int:
    """:data:`WINDOW_BYTES`, or when None a quarter of the memory available now, at most 4 GB
    (512 MB where the system does not say): a 10M-event log of 160-byte events takes ~2.1 GB.

    Available, not free: the page cache the kernel would give back counts (Linux's
    ``MemAvailable``). A process that has just written or read its log has most of the
    memory in the page cache; counted as free only, a quarter of it was below a 10M-event
    log's ~2.1 GB on a 24 GB machine with ~13 GB available, and the backfill fell back to point
    reads (~100 s instead of ~60).

    >>> 0 < window_budget() <= 4 << 30
    True
    """
    if WINDOW_BYTES is not None:
        return WINDOW_BYTES
    available = available_memory()
    if available is None:
        return 512 << 20
    return max(1, min(4 << 30, available // 4))


def available_memory(meminfo: str = "/proc/meminfo") -> int | None:
    """The bytes of memory available to a new allocation without swapping: ``MemAvailable``
    of ``meminfo`` (Linux), else the free pages (``os.sysconf``); None where neither says.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "meminfo"
    >>> _ = path.write_text("MemFree: 10 kB\\nMemAvailable: 60 kB\\n")
    >>> available_memory(str(path))
    61440
    """
    try:
        with open(meminfo, encoding="ascii") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) << 10
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def sequential(log: LogReader) -> bool:
    """Whether ``log`` hands out its payloads in offset order (``read_encoded``) and at
    positions (``read_payloads``), with its end offsets: what :func:`read_window` reads."""
    return all(
        callable(getattr(log, name, None))
        for name in ("read_encoded", "read_payloads", "end_offsets")
    )


def payload_bytes(log: Any, sample: int = 1_000) -> int:
    """A held payload's bytes (:data:`HELD_BYTES` included), from the mean of up to
    ``sample`` records at the start of the log's fullest partition."""
    ends = log.end_offsets()
    partition = max(ends, key=lambda p: ends[p]) if ends else 0
    rows = log.read_encoded(partition, 0, sample)
    mean = sum(len(data) for _, data in rows) // len(rows) if rows else 0
    return mean + HELD_BYTES


def read_window(
    log: Any, first: str, last: str | None, wanted: Mapping[int, set[int]] | None = None
) -> LogWindow:
    """One sequential pass over ``log`` (each partition in offset order, through
    ``read_encoded``, pages of 50,000), keeping every payload, or only those at ``wanted``
    (offsets by partition; each partition read from its first wanted offset to its last).

    >>> class Log:
    ...     partitions = 2
    ...     def read_encoded(self, partition, offset, max_records=1000):
    ...         return [(o, b"e%d" % o) for o in range(offset, 3)][:max_records]
    >>> read_window(Log(), "", None).parts
    [[b'e0', b'e1', b'e2'], [b'e0', b'e1', b'e2']]
    >>> read_window(Log(), "", None, {1: {1, 2}}).parts
    [[], [None, b'e1', b'e2']]
    """
    parts: list[list[bytes | None]] = []
    for partition in range(log.partitions):
        held: list[bytes | None] = []
        parts.append(held)
        want = None if wanted is None else wanted.get(partition)
        if wanted is not None and not want:
            continue
        offset, end = (min(want), max(want)) if want else (0, None)
        while True:
            rows = log.read_encoded(partition, offset, _PAGE)
            _hold(held, rows if want is None else [row for row in rows if row[0] in want])
            if len(rows) < _PAGE or (end is not None and rows[-1][0] >= end):
                break
            offset = rows[-1][0] + 1
    return LogWindow(parts, first, last)


def _hold(held: list[bytes | None], rows: list[tuple[int, bytes]]) -> None:
    """``rows`` (``(offset, payload)``, in offset order) put at their offsets in ``held``
    (None at the offsets between)."""
    if not rows:
        return
    if rows[0][0] == len(held) and rows[-1][0] - rows[0][0] == len(rows) - 1:
        held.extend([data for _, data in rows])  # the usual page: the next offsets, no gap
        return
    held.extend([None] * (rows[-1][0] + 1 - len(held)))
    for offset, data in rows:
        held[offset] = data


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
    window: LogWindow | None = None,
) -> list[EvalResult]:
    """The rules' result at ``now_ms`` for each of ``profiles`` (a run of neighbouring ids:
    a backfill step) rebuilt from its timeline alone: one range scan of the timelines, one
    read of the log, each event decoded with the fields the rules read (:func:`rule_decoder`),
    and one evaluation per profile where the evaluator takes a batch (``on_events`` at now).
    ``stages`` (when given) accumulates the seconds of each: ``timelines``, ``read``,
    ``decode``, ``rules``. ``window`` (a :class:`LogWindow`): the events it holds are taken
    from it, the others read from the log.

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
    held: list[list[Any] | None] = [None] * len(timelines)
    on_events = getattr(evaluator, "on_events", None)
    narrow = _narrow(log, evaluator)
    keep = rule_filter(evaluator) if narrow else None
    decoder = rule_decoder(evaluator) if narrow else None
    if window is not None and decoder is not None:
        held = window.decode(timelines, decoder, keep)
    t2 = clock()
    todo = [at for at, events in enumerate(held) if events is None]
    positions = [(p, o) for at in todo for _, p, o in timelines[at]]
    found: dict[Position, Any] = {}
    t3 = t2
    if positions and decoder is not None and on_events is not None:
        # the point reads decoded as the window's events are: the rules' fields only, and
        # none of those no rule reads; an event the log no longer has is left out (_fold)
        raw = _payloads(log, positions, window)
        t3 = clock()
        for at in todo:
            looked_up = [raw.get((p, o)) for _, p, o in timelines[at]]
            got = [data for data in looked_up if data is not None]
            held[at] = list(map(decoder, got if keep is None else filter(keep, got)))
    elif positions:
        times: list[float] = []
        found = _events(log, evaluator, positions, times, window)
        t3 = times[0]
    t4 = clock()
    out: list[EvalResult] = []
    for profile, entries, events in zip(profiles, timelines, held, strict=True):
        if events is None:
            state, result, _ = _fold(evaluator, profile, entries, found, now_ms)
        elif not events:  # none left: none in the log, or none a rule reads (rule_filter)
            state, result = None, None
        # on_events called here, not through _run: ~0.8 µs a profile less (a backfill step)
        elif on_events is not None:
            result = on_events(profile, None, events, now_ms)
        else:  # one by one, at their times: all of the timeline's (only a window's, no filter)
            present = [(ts, event) for (ts, _, _), event in zip(entries, events, strict=True)]
            state, result = _run(evaluator, profile, present, now_ms)
        out.append(result if result is not None else evaluator.on_time(profile, state, now_ms))
    if stages is not None:
        split = {
            "timelines": t1 - t0,
            "read": t3 - t2,
            "decode": t2 - t1 + t4 - t3,
            "rules": clock() - t4,
        }
        for name, seconds in split.items():
            stages[name] = stages.get(name, 0.0) + seconds
    return out


def _events(
    log: LogReader,
    evaluator: SegmentEvaluator,
    positions: Sequence[Position],
    times: list[float] | None = None,
    window: LogWindow | None = None,
) -> dict[Position, Any]:
    """The events at ``positions`` still in the log, by position: each decoded with the
    fields the rules read (:func:`rule_decoder`) when the evaluator is a rule program (it
    reads nothing else) and the log hands out its payloads (those ``window`` holds taken
    from it), else a whole event. ``times`` gets the clock after the read (before decoding)."""
    if not _narrow(log, evaluator):
        found = {pos: record.event for pos, record in read_found(log, positions).items()}
        if times is not None:
            times.append(time.perf_counter())
        return found
    raw = _payloads(log, positions, window)
    if times is not None:
        times.append(time.perf_counter())
    decoder = rule_decoder(evaluator)
    return {pos: decoder(data) for pos, data in raw.items()}


def _payloads(
    log: LogReader, positions: Sequence[Position], window: LogWindow | None
) -> dict[Position, bytes]:
    """The encoded events at ``positions`` still in the log (``read_payloads``), those
    ``window`` holds taken from it."""
    read: Callable[[Sequence[Position]], dict[Position, bytes]] = cast(Any, log).read_payloads
    if window is None:
        return read(positions)
    raw, missing = window.take(positions)
    if missing:
        raw.update(read(missing))
    return raw


def _narrow(log: LogReader, evaluator: SegmentEvaluator) -> bool:
    """Whether the events are read as :class:`RuleEvent` payloads: the evaluator is a rule
    program (it reads nothing else) and the log hands out its payloads."""
    return getattr(evaluator, "plan", None) is not None and hasattr(log, "read_payloads")


def _run(
    evaluator: SegmentEvaluator, profile: Profile, present: list[tuple[int, Any]], now_ms: int
) -> tuple[bytes | None, EvalResult | None]:
    """The rule state of ``present`` (``(event time, event)`` pairs, in timeline order) and
    the result at ``now_ms`` when one evaluation gave both."""
    if not present:
        return None, None
    on_events = getattr(evaluator, "on_events", None)
    if on_events is not None:
        result = on_events(profile, None, [event for _, event in present], now_ms)
        return result.state, result
    state: bytes | None = None
    for ts, event in present:
        # as of its own time, never later than now (compaction at a later time would drop
        # entries that a window still holds at now)
        state = evaluator.on_event(profile, state, event, min(ts, now_ms)).state
    return state, None


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
    state, result = _run(evaluator, profile, present, now_ms)
    return state, result, len(present) == len(positions)
