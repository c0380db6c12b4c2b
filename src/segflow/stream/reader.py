"""Read side of the processor's state: look up a profile by any identifier, its timeline,
segments and merge history. Used by the profile API and by activation (webhook payloads); :func:`profile_json` is the
shape every face shows a profile in.

The timeline is the log positions the processor keeps per profile (:mod:`segflow.stream.timeline`,
written in its transaction), read back from the log newest first, with those of the profiles
it absorbed. Profile reads never scan the warehouse.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import msgspec

from segflow.identity import IdentityRules, normalise
from segflow.log.base import LogReader, Record
from segflow.profiles import Profile, decode_profile
from segflow.rules.ast import split_scores
from segflow.spec.events import Event
from segflow.spec.normalize import iso_ms
from segflow.stream import keys, timeline
from segflow.stream.state.base import StateReader, iter_scan, prefix_end

_T = TypeVar("_T")

LOOKUP_TYPES = ("profile_id", "user_id", "anonymous_id", "email", "group_id")


class TimelinePage(msgspec.Struct, frozen=True):
    """Events newest first; ``next_before`` is the cursor of the next page (None: no more)."""

    events: list[Record]
    next_before: str | None


def parse_cursor(before: str | None) -> tuple[int, int, int] | None:
    """``before`` is epoch ms (``"1700000000000"``) or a page cursor (``"ts.partition.offset"``).

    >>> parse_cursor("5"), parse_cursor("5.1.2"), parse_cursor(None)
    ((5, -1, -1), (5, 1, 2), None)
    """
    if before is None or before == "":
        return None
    parts = before.split(".")
    if len(parts) == 1:
        return (int(parts[0]), -1, -1)
    ts, part, off = (int(p) for p in parts)
    return (ts, part, off)


class ProfileReader:
    """Committed profile state, through a :class:`StateReader` (safe from API threads)."""

    def __init__(
        self, reader: StateReader, log: LogReader, rules: IdentityRules | None = None
    ) -> None:
        self.reader = reader
        self.log = log
        self.rules = rules or IdentityRules()

    def close(self) -> None:
        """Close the state read connection (the log is its owner's to close)."""
        self.reader.close()

    def id_types(self) -> tuple[str, ...]:
        extra = (t for t in self.rules.id_types() if t not in LOOKUP_TYPES)  # declared, vendor
        return (*LOOKUP_TYPES, *extra)

    def resolve(self, id_type: str, value: str) -> str | None:
        """The current profile id of an identifier (absorbed profile ids resolve to survivors).

        Raises ``KeyError`` for an unknown identifier type.
        """
        if id_type not in self.id_types():
            raise KeyError(id_type)
        if id_type == "profile_id":
            if self.reader.get(keys.PROFILE, value) is not None:
                return value
            alias = self.reader.get(keys.ALIAS, value)
            return None if alias is None else alias.decode()
        text = normalise(id_type, value)
        raw = None if text is None else self.reader.get(keys.OWNER, f"{id_type}:{text}")
        return None if raw is None else raw.decode()

    def get(self, profile_id: str) -> Profile | None:
        """The profile by its current or an absorbed id (identities, traits, memberships...):
        one read of the state for a current id, two for an absorbed one."""
        raw = self.reader.get(keys.PROFILE, profile_id)
        if raw is None:
            alias = self.reader.get(keys.ALIAS, profile_id)
            raw = None if alias is None else self.reader.get(keys.PROFILE, alias.decode())
        return None if raw is None else decode_profile(raw)

    def lookup(self, id_type: str, value: str) -> Profile | None:
        """The profile holding identifier ``id_type:value``, None when unknown (two reads of
        the state: the identifier's owner, then its profile)."""
        if id_type == "profile_id":
            return self.get(value)
        pid = self.resolve(id_type, value)
        return None if pid is None else self.get(pid)

    def timeline(
        self, profile: Profile, limit: int = 50, before: str | None = None
    ) -> TimelinePage:
        """Events of ``profile`` across all its identifiers, newest first, paged by ``before``."""
        cursor = parse_cursor(before)
        found = timeline.entries(self.reader, profile)
        if cursor is not None:
            found = [p for p in found if _before(p, cursor)]
        page = found[::-1][:limit]
        more = len(found) > limit
        records = [r for r in (self._read(p, o) for _, p, o in page) if r is not None]
        nxt = f"{page[-1][0]}.{page[-1][1]}.{page[-1][2]}" if more and page else None
        return TimelinePage(records, nxt)

    def _read(self, partition: int, offset: int) -> Record | None:
        found = self.log.read(partition, offset, 1)
        return found[0] if found and found[0].offset == offset else None

    def merges(self, profile: Profile) -> list[keys.MergeRecord]:
        """Why this profile is one person: every merge into it (and into what it absorbed)."""
        return sorted(
            self._records(keys.MERGE, profile, keys.MergeRecord), key=lambda m: (m.at_ms, m.offset)
        )

    def conflicts(self, profile: Profile) -> list[keys.ConflictRecord]:
        """Links the merge rules refused for events of this profile."""
        return sorted(
            self._records(keys.CONFLICT, profile, keys.ConflictRecord), key=lambda c: c.at_ms
        )

    def _records(self, ns: str, profile: Profile, kind: type[_T]) -> list[_T]:
        decoder = msgspec.msgpack.Decoder(kind)
        out: list[_T] = []
        for pid in (profile.profile_id, *profile.absorbed):
            start = f"{pid}|"
            out.extend(decoder.decode(v) for _, v in self.reader.scan(ns, start, prefix_end(start)))
        return out

    # -- what activation needs (segflow.activate.payloads.ProfileLookup) ---------------------
    def identities(self, profile_id: str) -> list[tuple[str, str]]:
        """``(type, value)`` of every identifier of the profile (empty when unknown)."""
        profile = self.get(profile_id)
        return [] if profile is None else [(e.type, e.value) for e in profile.identities]

    def traits(self, profile_id: str) -> Mapping[str, Any]:
        """The profile's current traits and computed traits (computed win on a name clash, as
        Segment sends computed traits to destinations as traits); empty when unknown."""
        profile = self.get(profile_id)
        return {} if profile is None else {**profile.traits, **profile.computed_traits}

    def segments(self, profile_id: str) -> list[str]:
        """The segments the profile is in now (empty when unknown or merged into another:
        its memberships are the survivor's now)."""
        profile = self.get(profile_id)
        return [] if profile is None or profile.profile_id != profile_id else list(profile.members)

    def members(self, segment: str, after: str | None = None, *, page: int = 500) -> Iterator[str]:
        """Profile ids currently in ``segment`` in id order, after ``after`` when given (from
        the membership index, read ``page`` at a time: the size of the caller's page, when it
        takes one)."""
        prefix = f"{segment}|"
        start = prefix if after is None else f"{prefix}{after}\x00"
        for key, _ in iter_scan(self.reader, keys.MEMBER, start, prefix_end(prefix), page):
            yield key[len(prefix) :]

    def events(self, profile: Profile, limit: int = 50, before: str | None = None) -> list[Event]:
        """Just the events of :meth:`timeline`."""
        return [r.event for r in self.timeline(profile, limit, before).events]


def _before(position: timeline.Position, cursor: tuple[int, int, int]) -> bool:
    """Whether ``position`` comes before the page cursor (a time alone: before that ms)."""
    if cursor[1] < 0:
        return position[0] < max(cursor[0], 0)
    return position < cursor


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_ms(ms)


def profile_json(profile: Profile) -> dict[str, Any]:
    """The API shape of a profile (``score_ranks``: per model, the shares of the last scoring
    run's profiles scored above and below this one; docs/ml.md), as ``/api/v1/profiles``, the
    console and ``segflow profiles get`` show it.

    >>> profile_json(Profile(profile_id="p1", created_ms=0, first_seen_ms=0))["first_seen"]
    '1970-01-01T00:00:00.000Z'
    """
    scores, ranks = split_scores(profile.scores)
    return {
        "id": profile.profile_id,
        "identities": [
            {"type": e.type, "value": e.value, "first_seen": _iso(e.first_seen_ms)}
            for e in profile.identities
        ],
        "traits": profile.traits,
        "group_traits": profile.group_traits,
        "computed_traits": profile.computed_traits,
        "segments": list(profile.members),
        "scores": scores,
        "score_ranks": ranks,
        "clusters": profile.clusters,
        "event_counts": profile.event_counts,
        "first_seen": _iso(profile.first_seen_ms),
        "last_seen": _iso(profile.last_seen_ms),
        "first_seen_ms": profile.first_seen_ms,
        "last_seen_ms": profile.last_seen_ms,
        "merged_ids": list(profile.absorbed),
    }
