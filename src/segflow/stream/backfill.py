"""Backfilling a changed rule set: every profile's rule state rebuilt from its own history.

When the processor is handed a rule set whose fingerprint differs from the one its state was
built with, new and widened rules would otherwise see only the events that arrive from then on.
The backfill walks every profile (``step`` takes ``limit`` profiles per state transaction) and
replays its timeline — its events and those of the profiles it absorbed, read back from the log
in event-time order — through the new rules, as the live processor would have seen them, then
evaluates at now. Only real differences become membership changes, at now.

Progress is kept in the state's ``meta`` namespace in the same transaction as the rebuilt
profiles (``rules_fingerprint``: the rule set the state is complete for; ``backfill_target``
and ``backfill_cursor``: the one being backfilled and the last profile done;
``backfill_from``: the consumer offsets when it started), so a crash resumes where it stopped
and a rule change during a backfill starts a new one. Profiles that receive events meanwhile
are processed with the new rules and are still rebuilt when the walk reaches them. A profile
the walk has passed can still absorb one it has not reached (a merge during the backfill):
their states merge, and the absorbed one's, built by the old rules, lacks the new rules'
history. So the last step also rebuilds the survivor of every merge logged since the backfill
started, and the result does not depend on how the walk and the events interleave.

The timeline reads the log: events the log's retention removed cannot be replayed (log
retention is off by default for this reason; docs/segments.md, "Editing definitions").

Reading the log: where the log is read sequentially (``read_encoded``: the SQLite log) and the
rules are a rule program, the steps take their events from a :class:`~.replay.LogWindow`,
one pass over the log in offset order per partition, held in memory across steps, instead of
one point read per event (~1 µs an event against 3). The whole log when it fits in
:func:`~.replay.window_budget` (a quarter of the available memory, at most 4 GB); for a log up to
:data:`MAX_PASSES` times that (1 by default: none), the events of the next run of profiles
that fit (their positions from the timelines, a pass per run); a larger log is read at the
positions, as before. The window is only a cache of the log: each step still reads its
profiles and their timelines from the state in its transaction, so an event that arrived
after the pass, or one a merge brought in, is read at its position; every guarantee above
holds unchanged. Other logs (Kafka, test doubles) are read at the positions, one read per
step. The events are decoded with only the fields the rules read, and those the window holds
that no rule reads are not decoded (:func:`~.replay.rule_decoder`,
:func:`~.replay.rule_filter`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from segflow.log.base import LogReader
from segflow.profiles import Profile, decode_profile
from segflow.stream import keys, replay, timeline
from segflow.stream.batch import Batch
from segflow.stream.evaluator import SegmentEvaluator
from segflow.stream.replay import LogWindow, evaluate_many
from segflow.stream.state import MemoryStateStore, RocksStateStore
from segflow.stream.state.base import StateReader, StateTransaction

if TYPE_CHECKING:
    from segflow.stream.handler import EventHandler

FINGERPRINT = "rules_fingerprint"
TARGET = "backfill_target"
CURSOR = "backfill_cursor"
FROM = "backfill_from"
MAX_PASSES = 1
"""The passes over the log a backfill makes at most (a window of the profiles that hold
1/``MAX_PASSES`` of its events each) before it reads each event at its position instead. A
pass reads every record, a point read only those wanted; with the positions of a run to find
first, two passes over a 1M-event log took longer than the point reads (16-20 s against
13-15 s; one pass 10-11 s), so by default the log is read once, whole, or not at all."""
COMPLETE = "rules_complete"  # the definitions the state is complete for (msgpack name -> text)
_merge_decoder = msgspec.msgpack.Decoder(keys.MergeRecord)
_fields_decoder = msgspec.msgpack.Decoder(list[msgspec.Raw])  # a profile row, field by field
_TIMELINE_AT = Profile.__struct_fields__.index("timeline")
_ABSORBED_AT = Profile.__struct_fields__.index("absorbed")
# each processor's (its handler's) window of the log, held across its steps
_windows: weakref.WeakKeyDictionary[object, LogWindow] = weakref.WeakKeyDictionary()
# per store, the committed FINGERPRINT and COMPLETE (_completion)
_completions: weakref.WeakKeyDictionary[object, dict[str, bytes | None]] = (
    weakref.WeakKeyDictionary()
)


class _NoStore:
    """The key of no store (a transaction or reader without ``store``): never held."""


_NO_STORE = _NoStore()


def fingerprint_of(evaluator: SegmentEvaluator) -> str | None:
    """The rule set's fingerprint (None for evaluators without one: nothing to backfill)."""
    plan = getattr(evaluator, "plan", None)
    value = getattr(plan, "fingerprint", None)
    return value if isinstance(value, str) else None


def _meta(tx: StateTransaction | StateReader, name: str) -> str | None:
    raw = tx.get(keys.META, name)
    return None if raw is None else raw.decode()


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """Where a backfill is: ``running`` while the state is not complete for the rule set;
    ``done``, the fraction of profiles rebuilt; ``segments``, those whose definition the state
    is not complete for (a new or edited segment, whose members are still filling)."""

    running: bool
    done: float = 1.0
    segments: tuple[str, ...] = ()


def progress(
    source: StateTransaction | StateReader,
    fingerprint: str | None,
    definitions: Mapping[str, str],
) -> Progress:
    """The backfill's :class:`Progress` for the rule set ``fingerprint`` (``definitions``:
    its segments, name -> rule), from the committed state.

    ``done`` is read off the walk's cursor: profile ids are uniform hashes (``p_`` + hex), so
    the share of the id space behind the cursor is the share of profiles rebuilt.

    >>> from segflow.stream.state import MemoryStateStore
    >>> store = MemoryStateStore(); tx = store.begin_global()
    >>> tx.set("meta", TARGET, b"f2"); tx.set("meta", CURSOR, b"p_4000000000"); tx.commit()
    >>> progress(store.reader(), "f2", {"a": 'did "A"'})
    Progress(running=True, done=0.25, segments=('a',))
    """
    if fingerprint is None or _held(source, FINGERPRINT) == fingerprint.encode():
        return Progress(running=False)
    done = 0.0
    if _meta(source, TARGET) == fingerprint:
        done = _share(_meta(source, CURSOR) or "")
    raw = _held(source, COMPLETE)
    complete: dict[str, str] = msgspec.msgpack.decode(raw) if raw else {}
    filling = tuple(sorted(n for n, text in definitions.items() if complete.get(n) != text))
    return Progress(running=True, done=done, segments=filling)


def _share(profile_id: str) -> float:
    """The share of the profile id space before ``profile_id`` (0.0 when not a hash id)."""
    digits = profile_id[2:10]
    try:
        return int(digits.ljust(8, "0"), 16) / 16**8 if profile_id.startswith("p_") else 0.0
    except ValueError:
        return 0.0


def pending(tx: StateTransaction, fingerprint: str | None) -> bool:
    """True while the state is not complete for the rule set ``fingerprint`` (``tx``: a
    transaction that has written no meta key yet, as at its start).

    The rule set the state is complete for, and its definitions (:func:`progress`), are read
    once per store and backfill, not once per step (:func:`_completion`)."""
    if fingerprint is None:
        return False
    return _completion(tx)[FINGERPRINT] != fingerprint.encode()


def _completion(tx: StateTransaction) -> dict[str, bytes | None]:
    """``FINGERPRINT`` and ``COMPLETE`` as committed in ``tx``'s store, read in one multi-get
    and held for the store when only this process writes it (:func:`_store_of`; only
    :func:`step` writes them, and drops what is held first).

    Each step read them again: on RocksDB they share a data block with the outbox's first
    entry, which can be a megabyte, more than a block-cache shard holds, so each get of them
    read and decompressed it again (2-6 ms a get on a quiet machine, 10-40 ms on a loaded
    one; ~14 s of a 136 s 10M-event backfill at load 6-11)."""
    store = _store_of(tx)
    held = _completions.get(store)
    if held is None:
        tx.prefetch(keys.META, (FINGERPRINT, COMPLETE))
        held = {name: tx.get(keys.META, name) for name in (FINGERPRINT, COMPLETE)}
        if store is not _NO_STORE:
            _completions[store] = held
    return held


def _held(source: StateTransaction | StateReader, name: str) -> bytes | None:
    """``name`` (``FINGERPRINT`` or ``COMPLETE``) as :func:`_completion` holds it for
    ``source``'s store, else read from ``source``."""
    held = _completions.get(_store_of(source))
    return held[name] if held is not None else source.get(keys.META, name)


def _store_of(source: object) -> object:
    """``source``'s store when only this process writes it (RocksDB: a writer lock on its
    directory; memory), else :data:`_NO_STORE`: SQL stores are shared by processors in other
    processes, which may complete a backfill, and validate what a transaction read."""
    store = getattr(source, "store", None)
    return store if isinstance(store, (MemoryStateStore, RocksStateStore)) else _NO_STORE


def step(
    batch: Batch,
    handler: EventHandler,
    log: LogReader,
    fingerprint: str,
    now_ms: int,
    limit: int = 200,
    stages: dict[str, float] | None = None,
) -> int:
    """Rebuild up to ``limit`` profiles in ``batch``'s transaction; returns how many (0 once
    complete). ``stages`` (when given) accumulates the seconds spent per stage: ``profiles``
    (the walk's scan), ``window`` (passes over the log: :class:`~.replay.LogWindow`), those of
    :func:`~segflow.stream.replay.evaluate_many`, ``apply``."""
    tx = batch.tx
    if _meta(tx, TARGET) == fingerprint:
        cursor = _meta(tx, CURSOR) or ""
    else:  # a new backfill: merges logged from here on are redone at the end
        cursor = ""
        parts = range(getattr(log, "partitions", 1))
        tx.set(keys.META, FROM, ",".join(str(tx.get_offset(p)) for p in parts).encode())
    tx.set(keys.META, TARGET, fingerprint.encode())
    start = cursor + "\x00" if cursor else ""
    started = time.perf_counter()
    rows = tx.scan(keys.PROFILE, start, "\U0010ffff", limit=limit)
    profiles = [_loaded(batch, pid, raw) for pid, raw in rows]
    if stages is not None:
        stages["profiles"] = stages.get("profiles", 0.0) + time.perf_counter() - started
    at = 0
    while at < len(profiles):  # a run of the step's profiles per window of the log
        window = _window(tx, handler, log, profiles[at].profile_id, stages)
        end = len(profiles) if window is None else _covered(window, profiles, at)
        rebuild(batch, handler, log, profiles[at:end], now_ms, stages, window)
        at = end
    if len(rows) < limit:
        _windows.pop(handler, None)
        merged = [batch.find(pid) for pid in sorted(_merged_since(tx, _meta(tx, FROM) or ""))]
        rebuild(batch, handler, log, [p for p in merged if p is not None], now_ms, stages)
    if len(rows) < limit:
        _completions.pop(_store_of(tx), None)  # read again after this commits
        tx.set(keys.META, FINGERPRINT, fingerprint.encode())
        tx.delete(keys.META, CURSOR)
        definitions = getattr(handler.evaluator, "definitions", None) or {}
        tx.set(keys.META, COMPLETE, msgspec.msgpack.encode(dict(definitions)))
    else:
        tx.set(keys.META, CURSOR, rows[-1][0].encode())
    return len(rows)


def rebuild(
    batch: Batch,
    handler: EventHandler,
    log: LogReader,
    profiles: Sequence[Profile],
    now_ms: int,
    stages: dict[str, float] | None = None,
    window: LogWindow | None = None,
) -> None:
    """Replay each of ``profiles``' timelines through the handler's rules (their events read
    from the log at once, or taken from ``window``: :func:`~segflow.stream.replay.evaluate_many`)
    and apply the results at now."""
    tx = batch.tx
    results = evaluate_many(tx, handler.evaluator, log, profiles, now_ms, stages, window)
    started = time.perf_counter()
    for profile, result in zip(profiles, results, strict=True):
        handler.apply_result(batch, profile, result, now_ms)
        batch.put(profile)
    if stages is not None:
        stages["apply"] = stages.get("apply", 0.0) + time.perf_counter() - started


def forget_windows() -> None:
    """Drop every window of the log a backfill holds (a deletion erased events one may hold;
    the next step reads a new one).

    >>> forget_windows(); len(_windows)
    0
    """
    _windows.clear()


def _window(
    tx: StateTransaction,
    handler: EventHandler,
    log: LogReader,
    first: str,
    stages: dict[str, float] | None,
    budget: int | None = None,
) -> LogWindow | None:
    """The window of the log holding the events of the profiles from ``first`` on: the one
    the handler holds when it covers ``first``, else a new pass (``stages["window"]``: its
    seconds), empty when the log would take more than :data:`MAX_PASSES`; None when the log
    is not read sequentially, the rules are not a rule program (which decodes only its
    fields: see the module docstring) or the budget is 0 (the window is off). Without a
    window or with an empty one, each step reads its events at their positions."""
    budget = replay.window_budget() if budget is None else budget
    if budget <= 0 or getattr(handler.evaluator, "plan", None) is None:
        return None
    if not replay.sequential(log):
        return None
    held = _windows.get(handler)
    if held is not None and held.covers(first):
        return held
    _windows.pop(handler, None)  # freed before the next is read
    started = time.perf_counter()
    reader: Any = log
    each = replay.payload_bytes(reader)
    room = max(1, budget // each)
    total = sum(reader.end_offsets().values())
    if total <= room:
        window = replay.read_window(reader, first, None)
    elif total <= room * MAX_PASSES:
        wanted, last = _wanted(tx, first, room)
        window = replay.read_window(reader, first, last, wanted)
    else:  # one that holds nothing, so that the next steps do not weigh the log again
        window = LogWindow([], first, None)
    _windows[handler] = window
    if stages is not None:
        stages["window"] = stages.get("window", 0.0) + time.perf_counter() - started
    return window


def _covered(window: LogWindow, profiles: Sequence[Profile], at: int) -> int:
    """The end of the run of ``profiles`` from ``at`` (covered by ``window``) that it covers."""
    end = at + 1
    while end < len(profiles) and window.covers(profiles[end].profile_id):
        end += 1
    return end


def _wanted(tx: StateTransaction, first: str, room: int) -> tuple[dict[int, set[int]], str | None]:
    """The positions (offsets by partition) of the profiles from ``first`` on, as many as
    hold about ``room`` events, and the last of them (None: to the last profile). Only their
    timelines are decoded of their rows."""
    wanted: dict[int, set[int]] = {}
    count, start = 0, first
    while True:
        rows = tx.scan(keys.PROFILE, start, "\U0010ffff", limit=1_000)
        profiles = [_timeline_only(pid, raw) for pid, raw in rows]
        for profile, found in zip(profiles, timeline.entries_many(tx, profiles), strict=True):
            for _, partition, offset in found:
                wanted.setdefault(partition, set()).add(offset)
            count += len(found)
            if count >= room and profile is not profiles[-1]:
                return wanted, profile.profile_id
        if len(rows) < 1_000:
            return wanted, None
        if count >= room:
            return wanted, rows[-1][0]
        start = rows[-1][0] + "\x00"


def _timeline_only(profile_id: str, raw: bytes) -> Profile:
    """The profile row ``raw`` with only its timeline's fields decoded (the rest default)."""
    fields = _fields_decoder.decode(raw)

    def field(at: int, kind: Any, default: Any) -> Any:
        return msgspec.msgpack.decode(fields[at], type=kind) if len(fields) > at else default

    return Profile(
        profile_id=profile_id,
        created_ms=0,
        timeline=field(_TIMELINE_AT, bytes, b""),
        absorbed=field(_ABSORBED_AT, list[str], []),
    )


def _loaded(batch: Batch, profile_id: str, raw: bytes) -> Profile:
    """The profile ``profile_id`` as the batch holds it, else decoded from ``raw`` (the row
    the step's scan returned: no second read)."""
    working = batch.working
    if profile_id in batch.profiles or (working is not None and profile_id in working.profiles):
        return batch.profile(profile_id)
    found = batch.profiles[profile_id] = decode_profile(raw)
    return found


def _merged_since(tx: StateTransaction, offsets: str) -> set[str]:
    """Current ids of the profiles that absorbed another at or after log ``offsets``."""
    start = [int(o) for o in offsets.split(",") if o]
    out: set[str] = set()
    begin = ""
    while True:
        rows = tx.scan(keys.MERGE, begin, "\U0010ffff", limit=500)
        for _, raw in rows:
            rec = _merge_decoder.decode(raw)
            if rec.partition >= len(start) or rec.offset >= start[rec.partition]:
                out.add(_current(tx, rec.survivor))
        if len(rows) < 500:
            return out
        begin = rows[-1][0] + "\x00"


def _current(tx: StateTransaction, profile_id: str, max_hops: int = 64) -> str:
    """Follow merge aliases from ``profile_id`` to the profile that holds it now."""
    for _ in range(max_hops):
        alias = tx.get(keys.ALIAS, profile_id)
        if alias is None:
            break
        profile_id = alias.decode()
    return profile_id
