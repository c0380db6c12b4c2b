"""Splitting a profile (admin): move some identifiers to a new profile and rebuild both from
their events, so a wrong merge can be undone.

The profile keeps its id and the identifiers not named; the named identifiers form a new
profile. Both are rebuilt from the profile's timeline (events read back from the log): each
event goes to the side that holds its strongest identifier. The two sides exclude each other
(``Profile.excluded``), so later events carrying identifiers of both sides do not merge them
again (the conflict is recorded with rule ``split``). Memberships are re-evaluated from the
rebuilt state and the changes emitted; the new side's identifiers are announced with
``IdentityLinked``; a ``MergeRecord`` with rule ``split`` keeps the history explainable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

from segflow.errors import ValidationError
from segflow.identity import Identifier, extract_identifiers
from segflow.log.base import LogReader, Record
from segflow.profiles import Profile, apply_event
from segflow.spec.changes import IdentityLinked
from segflow.stream import keys, timeline
from segflow.stream.batch import Batch
from segflow.stream.evaluator import EvalResult
from segflow.stream.handler import EventHandler


class SplitResult(msgspec.Struct, frozen=True):
    """The profile that kept its id, the new one, and how many events each holds now."""

    kept: str
    split_off: str
    kept_events: int
    split_events: int


def _read(log: LogReader, partition: int, offset: int) -> Record | None:
    found = log.read(partition, offset, 1)
    return found[0] if found and found[0].offset == offset else None


def _fresh(
    old: Profile, pid: str, idents: Sequence[Identifier], excluded: Sequence[Identifier]
) -> Profile:
    first_seen = {(e.type, e.value): e.first_seen_ms for e in old.identities}
    p = Profile(
        profile_id=pid,
        created_ms=old.created_ms,
        sequence=old.sequence if pid == old.profile_id else 0,
    )
    for ident in idents:
        p.add_identity(ident.type, ident.value, first_seen[(ident.type, ident.value)])
    p.excluded = sorted({*old.excluded, *(str(i) for i in excluded)})
    p.scores, p.clusters = dict(old.scores), dict(old.clusters)
    p.cluster_ids = dict(old.cluster_ids)
    if pid == old.profile_id:  # the kept side keeps its history and memberships (diffed later)
        p.members, p.absorbed, p.merge_count = (
            list(old.members),
            list(old.absorbed),
            old.merge_count,
        )
    return p


def split_profile(
    batch: Batch,
    handler: EventHandler,
    log: LogReader,
    profile_id: str,
    identifiers: Sequence[str],
    now_ms: int,
) -> SplitResult:
    """Split ``identifiers`` (``type:value``) off ``profile_id`` inside ``batch``'s transaction."""
    old = batch.profile(profile_id)
    mine = {Identifier(e.type, e.value) for e in old.identities}
    moving = {Identifier.parse(k) for k in identifiers}
    if not moving or not moving <= mine or moving == mine:
        raise ValidationError("identifiers", "name some, not all, of the profile's identifiers")
    staying = sorted(mine - moving)
    new_id = (
        "p_"
        + hashlib.blake2b(
            f"{profile_id}|split|{sorted(moving)}".encode(), digest_size=10
        ).hexdigest()
    )
    kept = _fresh(old, profile_id, staying, sorted(moving))
    split_off = _fresh(old, new_id, sorted(moving), staying)
    entries = timeline.entries(batch.tx, old)
    for pid in (old.profile_id, *old.absorbed):
        timeline.delete(batch.tx, pid)
    batch.clear_timer(old)
    counts = _replay(batch, handler, log, entries, kept, split_off, now_ms)
    for side in (kept, split_off):
        for entry in side.identities:
            batch.set_owner(f"{entry.type}:{entry.value}", side.profile_id)
    for entry in split_off.identities:
        batch.emit(
            IdentityLinked(
                profile_id=new_id,
                id_type=entry.type,
                id_value=entry.value,
                at_ms=now_ms,
                sequence=split_off.next_sequence(),
            )
        )
    batch.record(
        keys.MERGE,
        profile_id,
        keys.MergeRecord(
            survivor=profile_id,
            absorbed=new_id,
            identifier=",".join(sorted(identifiers)),
            rule="split",
            message_id="",
            partition=-1,
            offset=-1,
            at_ms=now_ms,
            absorbed_identities=sorted(identifiers),
        ),
    )
    batch.put(kept)
    batch.put(split_off)
    return SplitResult(profile_id, new_id, counts[0], counts[1])


def _replay(
    batch: Batch,
    handler: EventHandler,
    log: LogReader,
    entries: list[timeline.Position],
    kept: Profile,
    split_off: Profile,
    now_ms: int,
) -> tuple[int, int]:
    owner = {
        Identifier(e.type, e.value): side for side in (kept, split_off) for e in side.identities
    }
    results: dict[str, EvalResult] = {}
    counts = {kept.profile_id: 0, split_off.profile_id: 0}
    for _, part, off in entries:
        record = _read(log, part, off)
        if record is None:
            continue
        idents = extract_identifiers(record.event, handler.rules)
        side = next((owner[i] for i in idents if i in owner), kept)
        apply_event(side, record.event)
        counts[side.profile_id] += 1
        timeline.append(batch.tx, side, record.event.timestamp_ms, part, off)
        results[side.profile_id] = handler.evaluator.on_event(
            side, side.rule_state, record.event, now_ms
        )
        side.rule_state = results[side.profile_id].state
    for side in (kept, split_off):
        result = results.get(side.profile_id) or handler.evaluator.on_time(
            side, side.rule_state, now_ms
        )
        handler.apply_result(batch, side, result, now_ms)
    return counts[kept.profile_id], counts[split_off.profile_id]
