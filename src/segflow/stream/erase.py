"""Erasing a person from the processor's state (``segflow.privacy`` regulations).

The processor is the only writer of its state store and commits its state with its offsets,
so a regulation does not write the file itself: it queues these functions as processor
commands (:meth:`segflow.stream.processor.Processor.submit`), which run in the processor's
loop, each in one state transaction, after a barrier (the processor has consumed the log up to
where the regulation started). Every function is idempotent: a regulation that resumes after a
crash runs them again.

- :func:`retire` finds the profiles that own the named identifiers (following merges), marks
  them ``erasing``, and emits ``exited`` for every segment they are in (so destinations hear
  it while the profile's identifiers can still be looked up). An erasing profile keeps no
  membership and no timer whatever its rules say.
- :func:`timeline_positions` lists where the profiles' events are in the log.
- :func:`erase_profiles` deletes everything about the profiles: the profiles, the identity
  graph nodes (``owner``) and merge aliases, timelines, timers, memberships, merge and
  conflict records, evaluation dead letters, and every change of theirs in the outbox.

>>> from segflow.stream.state import MemoryStateStore
>>> from segflow.stream.batch import Batch
>>> from segflow.identity import Identifier
>>> store = MemoryStateStore()
>>> tx = store.begin_global(); found = retire(Batch(tx), [Identifier("user_id", "nobody")], 0); tx.commit()
>>> found.profile_ids
[]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import msgspec

from segflow.identity import Identifier
from segflow.profiles import Profile
from segflow.stream import backfill, keys, timeline
from segflow.stream.batch import Batch
from segflow.stream.outbox import decode_row, encode_changes
from segflow.stream.state.base import StateTransaction, prefix_end

_END = "\U0010ffff"
_PAGE = 5000
Matcher = Callable[[bytes], bool]


class Retired(msgspec.Struct, kw_only=True):
    """The profiles a regulation found, every identifier they hold, their identities (for
    deletion notices) and the outbox sequence after their exits."""

    profile_ids: list[str]
    identifiers: list[tuple[str, str]]
    identities: dict[str, list[tuple[str, str]]]
    exit_seq: int
    exits: int


def owners(batch: Batch, idents: Iterable[Identifier]) -> list[Profile]:
    """The current profiles owning ``idents`` (absorbed profiles resolve to survivors)."""
    found: dict[str, Profile] = {}
    for ident in idents:
        owner = batch.owner(ident)
        profile = None if owner is None else batch.current(owner)
        if profile is not None:
            found[profile.profile_id] = profile
    return [found[k] for k in sorted(found)]


def retire(
    batch: Batch, idents: Sequence[Identifier], now_ms: int, *, exits: bool = True
) -> Retired:
    """Find the profiles of ``idents``; with ``exits``, mark them erasing and emit ``exited``
    for each of their segments (at ``now_ms``)."""
    profiles = owners(batch, idents)
    identifiers = sorted({(e.type, e.value) for p in profiles for e in p.identities} | set(idents))
    count = 0
    for profile in profiles if exits else ():
        count += _exit_all(batch, profile, now_ms)
    return Retired(
        profile_ids=sorted({pid for p in profiles for pid in (p.profile_id, *p.absorbed)}),
        identifiers=[(t, v) for t, v in identifiers],
        identities={p.profile_id: [(e.type, e.value) for e in p.identities] for p in profiles},
        exit_seq=batch.outbox_seq,
        exits=count,
    )


def _exit_all(batch: Batch, profile: Profile, now_ms: int) -> int:
    for segment in profile.members:
        batch.change_membership(profile, segment, "exited", now_ms)
    count = len(profile.members)
    profile.members = []
    profile.erasing = True
    batch.clear_timer(profile)
    batch.put(profile)
    return count


def timeline_positions(batch: Batch, profile_ids: Iterable[str]) -> list[tuple[int, int]]:
    """``(partition, offset)`` of every event on the profiles' timelines (live profiles'
    records and the chunks of every id)."""
    return timeline.positions(batch.tx, [batch.find(pid) or pid for pid in profile_ids])


def erase_profiles(
    batch: Batch, profile_ids: Sequence[str], identifiers: Iterable[tuple[str, str]]
) -> dict[str, int]:
    """Delete every trace of ``profile_ids`` (and of ``identifiers`` they own) from the
    state; returns counts by kind."""
    ids = set(profile_ids)
    backfill.forget_windows()  # a backfill's copy of the log may hold the erased events
    counts = {"profiles": 0, "identifiers": 0, "timeline": 0, "records": 0, "changes": 0}
    for pid in sorted(ids):
        profile = batch.find(pid)
        if profile is not None:
            counts["timeline"] += len(timeline.unpack(profile.timeline))
            _forget_profile(batch, profile)
            counts["profiles"] += 1
        counts["timeline"] += timeline.delete(batch.tx, pid)
        for ns in (keys.MERGE, keys.CONFLICT):
            counts["records"] += _delete_prefix(batch.tx, ns, f"{pid}|")
        counts["records"] += _delete_prefix(batch.tx, keys.DEAD, f"eval|{pid}|")
        if batch.tx.get(keys.ALIAS, pid) is not None:
            batch.tx.delete(keys.ALIAS, pid)
    for id_type, value in identifiers:
        key = f"{id_type}:{value}"
        if batch.owner_of(key) in ids:
            batch.delete_owner(key)
            counts["identifiers"] += 1
    counts["changes"] = _erase_changes(batch.tx, ids)
    counts["records"] += _delete_matching(
        batch.tx, keys.CONFLICT, [f"{t}:{v}".encode() for t, v in identifiers], _any
    )
    return counts


def _forget_profile(batch: Batch, profile: Profile) -> None:
    for segment in profile.members:
        batch.index_member(segment, profile.profile_id, present=False)
    batch.clear_timer(profile)
    for old in profile.absorbed:
        batch.tx.delete(keys.ALIAS, old)
    batch.remove(profile.profile_id)


def _erase_changes(tx: StateTransaction, ids: set[str]) -> int:
    """Blank every change of ``ids`` in the outbox (``nil`` in its row, so the others keep
    their sequence numbers; a row left with nothing goes); returns how many."""
    needles = [p.encode() for p in ids]
    count = 0
    for key, value in _everything(tx, keys.OUTBOX):
        if not any(n in value for n in needles):
            continue
        changes = decode_row(value)
        kept = [None if c is not None and _of(c, ids) else c for c in changes]
        erased = sum(1 for a, b in zip(changes, kept, strict=True) if a is not b)
        if not erased:
            continue
        count += erased
        if any(c is not None for c in kept):
            tx.set(keys.OUTBOX, key, encode_changes(kept))
        else:
            tx.delete(keys.OUTBOX, key)
    return count


def _everything(tx: StateTransaction, ns: str) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    start = ""
    while True:
        rows = tx.scan(ns, start, _END, limit=_PAGE)
        out.extend(rows)
        if len(rows) < _PAGE:
            return out
        start = rows[-1][0] + "\x00"


def _of(change: object, ids: set[str]) -> bool:
    names = getattr(change, "profile_id", None), getattr(change, "survivor", None)
    return bool(ids.intersection(names)) or getattr(change, "absorbed", None) in ids


def _any(raw: bytes) -> bool:
    return True


def _prefix(tx: StateTransaction, ns: str, prefix: str) -> Iterable[tuple[str, bytes]]:
    start, end = prefix, prefix_end(prefix)
    while True:
        rows = tx.scan(ns, start, end, limit=_PAGE)
        yield from rows
        if len(rows) < _PAGE:
            return
        start = rows[-1][0] + "\x00"


def _delete_prefix(tx: StateTransaction, ns: str, prefix: str) -> int:
    found = [key for key, _ in _prefix(tx, ns, prefix)]
    for key in found:
        tx.delete(ns, key)
    return len(found)


def _delete_matching(
    tx: StateTransaction, ns: str, needles: Sequence[bytes], confirm: Matcher
) -> int:
    """Delete the pairs of ``ns`` whose value contains one of ``needles`` (a byte scan) and
    that ``confirm`` accepts."""
    if not needles:
        return 0
    doomed = [k for k, v in _everything(tx, ns) if any(n in v for n in needles) and confirm(v)]
    for key in doomed:
        tx.delete(ns, key)
    return len(doomed)
