"""A profile's timeline: where its events are in the log, without a state row per event.

The log's ``(partition, offset)`` is the index of an event; a profile keeps the positions of
its own events. The newest ride in the profile's record (``Profile.timeline``: packed
``(timestamp_ms, partition, offset)`` triples in arrival order, written with the profile it
belongs to, so an event costs no extra write); every :data:`CHUNK` positions the tail moves
to a chunk of its own in the ``timeline`` namespace, key ``{profile_id}|{n:08x}``. A profile
absorbed by a merge spills its tail into a chunk under its own id, and the survivor reads
its own timeline and every absorbed profile's (``Profile.absorbed``).

Stores written before chunks hold one empty-valued row per event, key
``{profile_id}|{ts:016x}|{partition:04x}|{offset:016x}``; they are read as they are.

>>> from segflow.stream.state import MemoryStateStore
>>> from segflow.stream.batch import Batch
>>> from segflow.profiles import Profile
>>> tx = MemoryStateStore().begin_global()
>>> p = Profile(profile_id="p1", created_ms=0)
>>> for i in range(CHUNK + 2):
...     append(tx, p, ts_ms=1_000 - i, partition=0, offset=i)
>>> p.timeline_chunks, len(p.timeline) // ENTRY.size
(1, 2)
>>> positions = entries(tx, p)
>>> positions[0], positions[-1], len(positions)
((935, 0, 65), (1000, 0, 0), 66)
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence

from segflow.profiles import Profile
from segflow.stream import keys
from segflow.stream.state.base import StateReader, StateTransaction, prefix_end

ENTRY = struct.Struct("<qiq")
"""One position: event time (ms), partition, offset (20 bytes)."""
CHUNK = 64
"""Positions kept in the profile's record before they move to a chunk row."""
CHUNK_BYTES = CHUNK * ENTRY.size
_PAGE = 500

Position = tuple[int, int, int]
"""``(timestamp_ms, partition, offset)``."""


def append(tx: StateTransaction, profile: Profile, ts_ms: int, partition: int, offset: int) -> None:
    """Note that the event at ``(partition, offset)``, stamped ``ts_ms``, is ``profile``'s."""
    tail = profile.timeline + ENTRY.pack(ts_ms, partition, offset)
    if len(tail) >= CHUNK_BYTES:
        tx.set(keys.TIMELINE, chunk_key(profile.profile_id, profile.timeline_chunks), tail)
        profile.timeline_chunks += 1
        tail = b""
    profile.timeline = tail


def spill(tx: StateTransaction, profile: Profile) -> None:
    """Move the positions in ``profile``'s record to a chunk row (before the record goes:
    a merge absorbs it)."""
    if profile.timeline:
        tx.set(
            keys.TIMELINE, chunk_key(profile.profile_id, profile.timeline_chunks), profile.timeline
        )
        profile.timeline_chunks += 1
        profile.timeline = b""


def chunk_key(profile_id: str, n: int) -> str:
    """``{profile_id}|{n:08x}``.

    >>> chunk_key("p1", 10)
    'p1|0000000a'
    """
    return f"{profile_id}|{n:08x}"


def unpack(data: bytes) -> list[Position]:
    """The positions packed in ``data`` (a tail or a chunk)."""
    return list(ENTRY.iter_unpack(data))


def stored(source: StateTransaction | StateReader, profile_id: str) -> Iterator[Position]:
    """The positions of ``profile_id`` in chunk rows (and legacy per-event rows), unordered."""
    start, end = f"{profile_id}|", prefix_end(f"{profile_id}|")
    while True:
        rows = source.scan(keys.TIMELINE, start, end, limit=_PAGE)
        for key, value in rows:
            if value:
                yield from ENTRY.iter_unpack(value)
            else:  # a row per event (stores written before chunks)
                _, ts, partition, offset = keys.parse_timeline_key(key)
                yield ts, partition, offset
        if len(rows) < _PAGE:
            return
        start = rows[-1][0] + "\x00"


def entries(source: StateTransaction | StateReader, profile: Profile) -> list[Position]:
    """Every position of ``profile`` and of the profiles it absorbed, oldest first."""
    found = unpack(profile.timeline)
    for pid in (profile.profile_id, *profile.absorbed):
        found.extend(stored(source, pid))
    found.sort()
    return found


def entries_many(
    source: StateTransaction | StateReader, profiles: Sequence[Profile]
) -> list[list[Position]]:
    """:func:`entries` of each of ``profiles``, a run of neighbouring ids (a backfill step):
    their chunk rows are read in one range scan instead of one scan per profile (absorbed
    profiles' ids outside that range are read one by one).

    >>> from segflow.stream.state import MemoryStateStore
    >>> tx = MemoryStateStore().begin_global()
    >>> a, b = Profile(profile_id="a", created_ms=0), Profile(profile_id="b", created_ms=0)
    >>> for i in range(CHUNK + 1):
    ...     append(tx, a, ts_ms=i, partition=0, offset=i)
    >>> append(tx, b, ts_ms=5, partition=1, offset=0)
    >>> [len(found) for found in entries_many(tx, [a, b])] == [len(entries(tx, a)), 1]
    True
    """
    if not profiles:
        return []
    heads = [f"{p.profile_id}|" for p in profiles]
    lower, upper = min(heads), max(prefix_end(h) for h in heads)
    rows: dict[str, list[Position]] = {}
    start = lower
    while True:
        page = source.scan(keys.TIMELINE, start, upper, limit=_PAGE * 10)
        for key, value in page:
            if value:
                rows.setdefault(key[: key.rindex("|")], []).extend(ENTRY.iter_unpack(value))
            else:  # a row per event (stores written before chunks)
                pid, ts, partition, offset = keys.parse_timeline_key(key)
                rows.setdefault(pid, []).append((ts, partition, offset))
        if len(page) < _PAGE * 10:
            break
        start = page[-1][0] + "\x00"
    out: list[list[Position]] = []
    for profile in profiles:
        found = unpack(profile.timeline)
        for pid in (profile.profile_id, *profile.absorbed):
            head = f"{pid}|"
            if lower <= head and prefix_end(head) <= upper:
                found.extend(rows.get(pid, ()))
            else:
                found.extend(stored(source, pid))
        found.sort()
        out.append(found)
    return out


def positions(tx: StateTransaction, profiles: Iterable[Profile | str]) -> list[tuple[int, int]]:
    """``(partition, offset)`` of every event of ``profiles`` (objects or ids of profiles no
    longer live: their chunk rows only)."""
    out: list[tuple[int, int]] = []
    for item in profiles:
        if isinstance(item, Profile):
            out.extend((p, o) for _, p, o in unpack(item.timeline))
            item = item.profile_id
        out.extend((p, o) for _, p, o in stored(tx, item))
    return out


def delete(tx: StateTransaction, profile_id: str) -> int:
    """Delete the chunk rows of ``profile_id`` (its record's tail goes with the record);
    returns how many positions they held."""
    start, end = f"{profile_id}|", prefix_end(f"{profile_id}|")
    count = 0
    while True:
        rows = tx.scan(keys.TIMELINE, start, end, limit=_PAGE)
        for key, value in rows:
            tx.delete(keys.TIMELINE, key)
            count += len(value) // ENTRY.size if value else 1
        if len(rows) < _PAGE:
            return count
