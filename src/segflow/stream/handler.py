"""Per-event work: resolve identity, apply merges and links, update the profile, evaluate rules.

Everything here reads and writes through a :class:`~segflow.stream.batch.Batch`, so it runs
inside the transaction that also commits the consumer offset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from hashlib import blake2b
from typing import Any

from segflow.identity import (
    Identifier,
    IdentityRules,
    Merge,
    Resolution,
    resolve,
    violation,
)
from segflow.identity.identifiers import extractor
from segflow.log.base import LogReader, Record
from segflow.profiles import Profile, apply_event, merge_into
from segflow.profiles.profile import IdentityEntry
from segflow.spec.changes import (
    CONSENT_TRAIT,
    ConsentChanged,
    IdentityLinked,
    ProfileMerged,
)
from segflow.spec.events import Event
from segflow.stream import keys, timeline
from segflow.stream.batch import Batch
from segflow.stream.evaluator import (
    EvalResult,
    Evaluation,
    SegmentEvaluator,
    merge_rule_states,
)
from segflow.stream.freshness import LATE_MS
from segflow.stream.replay import replay
from segflow.telemetry.metrics import RULE_EVAL, RULE_EVAL_SAMPLE

log = logging.getLogger(__name__)
_MISS = object()


def new_profile_id(event: Event, seed: Identifier) -> str:
    """Deterministic id of a profile created by ``event`` (replays give the same ids).

    >>> from segflow.spec import Event
    >>> e = Event(type="page", message_id="m", source_id="s", timestamp_ms=1, received_at_ms=1)
    >>> new_profile_id(e, Identifier("anonymous_id", "a")) == new_profile_id(e, Identifier("anonymous_id", "a"))
    True
    """
    return _profile_id(event.message_id, str(seed))


def _profile_id(message_id: str, seed_key: str) -> str:
    """:func:`new_profile_id` from the seed identifier's key (``str(seed)``)."""
    return "p_" + blake2b(f"{message_id}|{seed_key}".encode(), digest_size=10).hexdigest()


class EventHandler:
    """Applies events and timers to state. ``evaluator`` may be swapped between batches.

    Events are applied in two steps: :meth:`attribute` resolves an event's identity and
    updates its profile at once (identity is per event: the next event may depend on a link
    this one made), while the rules see each profile's events of the batch together, once,
    in :meth:`settle` (one evaluation at the batch's clock instead of one per event; the
    memberships a batch commits are the same, and a change in and out again within one batch
    is not emitted). :meth:`handle` does both for one event.
    """

    def __init__(
        self, rules: IdentityRules, evaluator: SegmentEvaluator, log: LogReader | None = None
    ) -> None:
        self.rules = rules
        self.extract = extractor(rules)
        self.evaluator = evaluator
        self.log = log  # to replay a merged profile's timeline when states can't merge exactly
        self._evaluations = 0  # one evaluation in RULE_EVAL_SAMPLE is timed (metrics)

    # -- events -----------------------------------------------------------------------------
    def prefetch(self, batch: Batch, records: Sequence[Record]) -> list[list[Identifier]]:
        """Extract every record's identifiers and load their owners and profiles in bulk."""
        return self.prefetch_keyed(batch, records)[0]

    def prefetch_keyed(
        self, batch: Batch, records: Sequence[Record]
    ) -> tuple[list[list[Identifier]], list[list[str]]]:
        """:meth:`prefetch`, with each identifier's key (``type:value``) as well, which
        :meth:`attribute_all` takes instead of formatting them again."""
        keyed = self.extract.keyed
        idents, ident_keys = [], []
        for record in records:
            ids, found = keyed(record.event)
            idents.append(ids)
            ident_keys.append(found)
        batch.prefetch(ident_keys)
        return idents, ident_keys

    def attribute_all(
        self,
        batch: Batch,
        records: Sequence[Record],
        idents: Sequence[list[Identifier]],
        now_ms: int,
        ident_keys: Sequence[list[str]] | None = None,
    ) -> None:
        """:meth:`attribute` for every record, in order (``idents`` and ``ident_keys`` from
        :meth:`prefetch_keyed`).

        The processor's hot loop: a returning person (every identifier owned by one profile)
        and a newcomer (no identifier known, distinct types, within the cap) are handled
        inline; anything else (an alias, a link or merge, a conflict, a dead letter) goes
        through :meth:`attribute`, which gives the same result for these two cases too
        (``tests/unit/stream/test_replay_properties.py``, ``test_attribute_all.py``).
        """
        if ident_keys is None:
            ident_keys = [[f"{t}:{v}" for t, v in ids] for ids in idents]
        owners, profiles, dirty, pending = batch.owners, batch.profiles, batch.dirty, batch.pending
        tx, pack, chunk = batch.tx, timeline.ENTRY.pack, timeline.CHUNK_BYTES
        find, owner_of = batch.find, batch.owner_of
        set_key, max_ids = tx.set, self.rules.max_identifiers
        for record, ids, ks in zip(records, idents, ident_keys, strict=True):
            event = record.event
            if not ids or event.type == "alias":
                self.attribute(batch, record, now_ms, ids)
                continue
            first = ks[0]
            owner = owners[first] if first in owners else owner_of(first)
            if owner is not None:  # a returning person, when every identifier is theirs
                for key in ks[1:]:
                    if owners.get(key, _MISS) != owner:
                        owner = None
                        break
                profile = None if owner is None else profiles.get(owner) or find(owner)
                if profile is None:
                    profile = self._linked(batch, event, ids, ks)
                if profile is None:
                    self.attribute(batch, record, now_ms, ids, fast=False)
                    continue
            else:  # a newcomer, when no identifier is known (as _new, inlined)
                profile = None
                if len(ids) > max_ids:
                    pass
                elif len(ids) == 1:
                    profile = self._newcomer(batch, event, ids, ks, set_key)
                elif len({i.type for i in ids}) == len(ids):
                    for key in ks[1:]:
                        if owners.get(key, _MISS) is not None:
                            break
                    else:
                        profile = self._newcomer(batch, event, ids, ks, set_key)
                if profile is None and len(ids) > 1:
                    profile = self._linked(batch, event, ids, ks)
                if profile is None:
                    self.attribute(batch, record, now_ms, ids, fast=False)
                    continue
            ts = event.timestamp_ms
            traits = event.traits
            if traits and CONSENT_TRAIT in traits:
                consent = profile.traits.get(CONSENT_TRAIT)
                apply_event(profile, event)
                if profile.traits.get(CONSENT_TRAIT) != consent:
                    self._consent_changed(batch, profile, ts)
            elif traits:
                apply_event(profile, event)
            else:  # apply_event without traits, inlined: first/last seen and the count
                seen = profile.first_seen_ms
                if seen is None or ts < seen:
                    profile.first_seen_ms = ts
                seen = profile.last_seen_ms
                if seen is None or ts > seen:
                    profile.last_seen_ms = ts
                name = event.event if event.type == "track" and event.event else event.type
                counts = profile.event_counts
                counts[name] = counts.get(name, 0) + 1
            tail = profile.timeline + pack(ts, record.partition, record.offset)
            if len(tail) >= chunk:
                profile.timeline = tail
                timeline.spill(tx, profile)
            else:
                profile.timeline = tail
            pid = profile.profile_id
            profiles[pid] = profile
            dirty.add(pid)
            queued = pending.get(pid)
            if queued is None:
                pending[pid] = [event]
            else:
                queued.append(event)

    def _newcomer(
        self,
        batch: Batch,
        event: Event,
        ids: list[Identifier],
        ident_keys: list[str],
        set_key: Any,
    ) -> Profile:
        """A new profile owning ``ids`` (none known, distinct types, within the cap): what
        :meth:`_new` and :meth:`_link` do, without looking the owners up again."""
        ts = event.timestamp_ms
        pid = _profile_id(event.message_id, ident_keys[0])
        profile = Profile(profile_id=pid, created_ms=ts)
        owners, raw_pid, seq = batch.owners, pid.encode(), 0
        entries = []
        for ident, key in zip(ids, ident_keys, strict=True):
            entries.append(IdentityEntry(ident.type, ident.value, ts))
            set_key(keys.OWNER, key, raw_pid)
            owners[key] = pid
            seq += 1
            batch.changes.append(
                IdentityLinked(
                    profile_id=pid, id_type=ident.type, id_value=ident.value, at_ms=ts, sequence=seq
                )
            )
        profile.identities = entries
        profile.sequence = seq
        return profile

    def _linked(
        self, batch: Batch, event: Event, ids: list[Identifier], ident_keys: list[str]
    ) -> Profile | None:
        """A known person with new identifiers (a login on a known device): what
        :meth:`_resolve` does when the resolution (:meth:`_unrefused`) has one owner and new
        identifiers only — no merge, no conflict, nothing to settle first: link them. None
        sends the event on (a merge, a conflict, a split's exclusion)."""
        res = self._unrefused(batch, ids, event.timestamp_ms, ident_keys)
        if res is None or res.merges or not res.links or res.profile_id is None:
            return None
        profile = batch.profile(res.profile_id)
        self._link(batch, profile, res.links, event.timestamp_ms)
        return profile

    def handle(
        self, batch: Batch, record: Record, now_ms: int, idents: list[Identifier] | None = None
    ) -> str | None:
        """Attribute ``record`` to a profile, update it and evaluate its rules; returns the
        profile id (None: dead). ``idents``: the record's identifiers when already extracted
        (:meth:`prefetch`)."""
        found = self.attribute(batch, record, now_ms, idents)
        self.settle(batch, now_ms)
        return found

    def attribute(
        self,
        batch: Batch,
        record: Record,
        now_ms: int,
        idents: list[Identifier] | None = None,
        *,
        fast: bool = True,
    ) -> str | None:
        """Resolve ``record``'s profile (links, merges, conflicts), update it, note the event
        on its timeline and queue it for the profile's rules (:meth:`settle`); returns the
        profile id (None: no usable identifier, a dead letter). ``fast=False``: the caller
        found it is neither a returning person nor a newcomer (:meth:`attribute_all`)."""
        event = record.event
        if idents is None:
            idents = self.extract(event)
        if event.type == "alias" and event.previous_id:
            idents = self._alias(batch, event, idents)
        profile = (self._known(batch, idents) or self._new(batch, event, idents)) if fast else None
        if profile is not None:
            consent = profile.traits.get(CONSENT_TRAIT)
        else:
            resolved = self._resolve(batch, record, now_ms, idents)
            if resolved is None:
                return None
            profile, consent = resolved
        apply_event(profile, event)
        if profile.traits.get(CONSENT_TRAIT) != consent:
            self._consent_changed(batch, profile, event.timestamp_ms)
        timeline.append(batch.tx, profile, event.timestamp_ms, record.partition, record.offset)
        pid = profile.profile_id
        batch.put(profile)
        queued = batch.pending.get(pid)
        if queued is None:
            batch.pending[pid] = [event]
        else:
            queued.append(event)
        return pid

    def _known(self, batch: Batch, idents: list[Identifier]) -> Profile | None:
        """The common case: every identifier is known and owned by one profile (as
        ``resolve`` finds first; None sends the event on)."""
        if not idents:
            return None
        owner_of = batch.owner_of
        owner = owner_of(f"{idents[0].type}:{idents[0].value}")
        if owner is None:
            return None
        for ident in idents[1:]:
            if owner_of(f"{ident.type}:{ident.value}") != owner:
                return None
        return batch.find(owner)

    def _new(self, batch: Batch, event: Event, idents: list[Identifier]) -> Profile | None:
        """The next most common case: a newcomer, none of whose identifiers is known, of
        distinct types and within the identifier cap: ``resolve`` would link them all to a
        new profile (no limit can refuse one value per type). None sends the event on."""
        if not idents or len(idents) > self.rules.max_identifiers:
            return None
        owner_of = batch.owner_of
        types = set()
        for ident in idents:
            if ident.type in types or owner_of(f"{ident.type}:{ident.value}") is not None:
                return None
            types.add(ident.type)
        profile = Profile(
            profile_id=new_profile_id(event, idents[0]), created_ms=event.timestamp_ms
        )
        batch.put(profile)
        self._link(batch, profile, idents, event.timestamp_ms)
        return profile

    def _resolve(
        self, batch: Batch, record: Record, now_ms: int, idents: list[Identifier]
    ) -> tuple[Profile, Any] | None:
        """The slow path: links, merges, conflicts, a new profile. Returns the profile and its
        consent before the merges (a merge that brings consent is a consent change)."""
        event = record.event
        res = self._unrefused(batch, idents, event.timestamp_ms)
        if res is None:
            res = resolve(idents, batch, self.rules, event.timestamp_ms)
        if res.profile_id is None and not res.links:
            batch.tx.set(
                keys.DEAD, f"{record.partition:04x}|{record.offset:016x}", b"no_usable_identifier"
            )
            return None
        if res.merges:  # the states merge: each side's rules must have seen its events first
            self.settle(batch, now_ms, [res.profile_id, *(m.absorbed for m in res.merges)])
        profile = self._target(batch, res, event)
        consent = profile.traits.get(CONSENT_TRAIT)
        for merge in res.merges:
            self._merge(batch, profile, merge, record, now_ms)
        if res.merges:
            self._evaluate(batch, profile, event.timestamp_ms, None, now_ms)
        self._link(batch, profile, res.links, event.timestamp_ms)
        for conflict in res.conflicts:
            batch.record(
                keys.CONFLICT,
                profile.profile_id,
                keys.ConflictRecord(
                    profile_id=profile.profile_id,
                    identifier=conflict.identifier,
                    owner=conflict.owner,
                    rule=conflict.rule,
                    message_id=event.message_id,
                    at_ms=event.timestamp_ms,
                ),
            )
        return profile, consent

    def _unrefused(
        self,
        batch: Batch,
        idents: list[Identifier],
        now_ms: int,
        ident_keys: list[str] | None = None,
    ) -> Resolution | None:
        """``resolve``'s answer when it refuses nothing: the identifiers' owners (in the order
        it visits them) all join, the unknown identifiers are linked, the oldest owner
        survives. That holds when no owner excludes anything (a split) and the union of
        every owner's identities and the unknown ones, with all their merges, breaks no
        merge rule: each step of the walk checks a subset with fewer merges, and the rules
        are monotone. None otherwise (the walk decides: a conflict, a split's exclusion),
        and for a newcomer (no owner). The usual merge, a person's second device logging in,
        costs a fraction of the walk (``tests/unit/stream/test_attribute_all.py`` holds the
        two equal). ``ident_keys``: the identifiers' ``type:value`` keys, when formatted.
        """
        owner_of = batch.owner_of
        if ident_keys is None:
            ident_keys = [f"{i.type}:{i.value}" for i in idents]
        joined: dict[str, Identifier | None] = {}  # owner -> the identifier that joined it
        fresh: list[Identifier] = []
        for n, (ident, key) in enumerate(zip(idents, ident_keys, strict=True)):
            owner = owner_of(key)
            if owner is None:
                fresh.append(ident)
            elif owner not in joined:
                joined[owner] = ident if n else None  # the seed's owner chooses, not joins
        if not joined or len(set(fresh)) != len(fresh):
            return None
        union: dict[Identifier, int] = {}
        merges = len(joined) - 1
        for pid in joined:
            profile = batch.find(pid)
            if profile is None or profile.excluded:
                return None
            merges += profile.merge_count
            size = len(union) + len(profile.identities)
            for e in profile.identities:
                union[Identifier(e.type, e.value)] = e.first_seen_ms
            if len(union) != size:
                return None  # an identity two owners list: the walk decides
        for ident in fresh:
            if ident in union:
                return None
            union[ident] = now_ms
        if violation(union, self.rules, now_ms, merges) is not None:
            return None
        survivor = min(joined, key=batch.age)
        by = joined[survivor]
        absorbed = [
            Merge(survivor, pid, str(ident if ident is not None else by), "shared_identifier")
            for pid, ident in joined.items()
            if pid != survivor
        ]
        return Resolution(survivor, fresh, absorbed, [])

    def settle(self, batch: Batch, now_ms: int, only: Sequence[str | None] | None = None) -> None:
        """Run the rules of the profiles with queued events (of ``only`` when given) over
        those events, at ``now_ms``: an event stamped in the future counts from its own time
        on (a timer is due then), as in SQL's ``timestamp_ms <= T``."""
        pending = batch.pending
        if not pending:
            return
        pids = list(pending) if only is None else [p for p in only if p in pending]
        for pid in pids:
            events = pending.pop(pid)
            profile = batch.find(pid)
            if profile is None:  # absorbed by a merge after its events were queued
                continue
            last = events[-1]
            batch.cause_ms = received = last.received_at_ms
            batch.cause_late = received - last.timestamp_ms > LATE_MS
            self._evaluate(batch, profile, last.timestamp_ms, events, now_ms)
        batch.cause_ms, batch.cause_late = None, False

    def _consent_changed(self, batch: Batch, profile: Profile, at_ms: int) -> None:
        """Tell downstream (activation's consent-aware destinations) before any membership
        change this event causes."""
        batch.emit(
            ConsentChanged(
                profile_id=profile.profile_id,
                consent=profile.traits.get(CONSENT_TRAIT),
                at_ms=at_ms,
                sequence=profile.next_sequence(),
            )
        )

    def _alias(self, batch: Batch, event: Event, idents: list[Identifier]) -> list[Identifier]:
        """A ``previousId`` that is a known userId links as that userId."""
        assert event.previous_id is not None
        as_user = Identifier("user_id", event.previous_id.strip())
        as_anon = Identifier("anonymous_id", event.previous_id.strip())
        if as_anon in idents and batch.owner(as_user) is not None:
            idents = [as_user if i == as_anon else i for i in idents]
            idents.sort(key=lambda i: self.rules.priority(i.type))
        return idents

    def _target(self, batch: Batch, res: Resolution, event: Event) -> Profile:
        if res.profile_id is not None:
            return batch.profile(res.profile_id)
        profile = Profile(
            profile_id=new_profile_id(event, res.links[0]), created_ms=event.timestamp_ms
        )
        batch.put(profile)
        return profile

    def _link(self, batch: Batch, profile: Profile, links: list[Identifier], at_ms: int) -> None:
        for ident in links:
            profile.add_identity(ident.type, ident.value, at_ms)
            batch.set_owner(f"{ident.type}:{ident.value}", profile.profile_id)
            batch.emit(
                IdentityLinked(
                    profile_id=profile.profile_id,
                    id_type=ident.type,
                    id_value=ident.value,
                    at_ms=at_ms,
                    sequence=profile.next_sequence(),
                )
            )

    def _merge(
        self, batch: Batch, survivor: Profile, merge: Merge, record: Record, now_ms: int
    ) -> None:
        absorbed = batch.profile(merge.absorbed)
        at_ms = record.event.timestamp_ms
        for segment in sorted(absorbed.members):
            batch.change_membership(absorbed, segment, "exited", at_ms)
        survivor.rule_state, exact = merge_rule_states(
            self.evaluator, survivor.rule_state, absorbed.rule_state
        )
        batch.clear_timer(absorbed)
        timeline.spill(batch.tx, absorbed)  # its record goes: its newest positions stay
        merge_into(survivor, absorbed)
        if not exact and self.log is not None:
            # e.g. both sides folded a sequence: only the merged history, in order, is exact
            state, complete = replay(batch.tx, self.evaluator, self.log, survivor, now_ms)
            if complete:
                survivor.rule_state = state
        for key in absorbed.identity_keys():
            batch.set_owner(key, survivor.profile_id)
        for old in (absorbed.profile_id, *absorbed.absorbed):
            batch.tx.set(keys.ALIAS, old, survivor.profile_id.encode())
        batch.remove(absorbed.profile_id)
        batch.record(
            keys.MERGE,
            survivor.profile_id,
            keys.MergeRecord(
                survivor=survivor.profile_id,
                absorbed=absorbed.profile_id,
                identifier=merge.identifier,
                rule=merge.rule,
                message_id=record.event.message_id,
                partition=record.partition,
                offset=record.offset,
                at_ms=at_ms,
                absorbed_identities=absorbed.identity_keys(),
            ),
        )
        batch.emit(
            ProfileMerged(
                survivor=survivor.profile_id,
                absorbed=absorbed.profile_id,
                reason=f"{merge.rule}:{merge.identifier}",
                at_ms=at_ms,
                sequence=survivor.next_sequence(),
            )
        )

    # -- rules ------------------------------------------------------------------------------
    def on_timer(self, batch: Batch, profile_id: str, now_ms: int) -> None:
        """Fire the timer of ``profile_id`` (``on_time``) at ``now_ms``."""
        profile = batch.find(profile_id)
        if profile is None:
            return
        self._evaluate(batch, profile, now_ms, None, now_ms)
        batch.put(profile)

    def _evaluate(
        self,
        batch: Batch,
        profile: Profile,
        at_ms: int,
        events: Sequence[Event] | None,
        now_ms: int,
    ) -> None:
        self._evaluations += 1
        if self._evaluations & (RULE_EVAL_SAMPLE - 1):
            self._evaluate_rules(batch, profile, at_ms, events, now_ms)
            return
        started = time.perf_counter()
        self._evaluate_rules(batch, profile, at_ms, events, now_ms)
        RULE_EVAL.observe(time.perf_counter() - started)

    def _evaluate_rules(
        self,
        batch: Batch,
        profile: Profile,
        at_ms: int,
        events: Sequence[Event] | None,
        now_ms: int,
    ) -> None:
        evaluator = self.evaluator
        try:
            if events is None:
                result = evaluator.on_time(profile, profile.rule_state, now_ms)
            elif len(events) > 1 and hasattr(evaluator, "on_events"):
                result = evaluator.on_events(profile, profile.rule_state, events, now_ms)
            else:
                state = profile.rule_state
                for event in events:
                    result = evaluator.on_event(profile, state, event, now_ms)
                    state = result.state
        except Exception as exc:  # a bad rule never stops the stream
            log.exception("segment evaluation failed for %s", profile.profile_id)
            batch.tx.set(keys.DEAD, f"eval|{profile.profile_id}|{at_ms:016x}", repr(exc).encode())
            result = Evaluation(
                profile.rule_state,
                frozenset(profile.members),
                profile.computed_traits,
                profile.next_wakeup_ms,
            )
        self.apply_result(batch, profile, result, at_ms)

    def apply_result(self, batch: Batch, profile: Profile, result: EvalResult, at_ms: int) -> None:
        """Store the evaluator's result on the profile and emit the membership changes (one
        run: :meth:`Batch.change_memberships`, the segments entered, then those exited).

        A profile being erased (``Profile.erasing``, see :mod:`segflow.stream.erase`) keeps
        no memberships and no timer, whatever its rules say."""
        if profile.erasing:
            batch.clear_timer(profile)
            return
        profile.rule_state = result.state
        if result.computed_traits or profile.computed_traits:
            profile.computed_traits = dict(result.computed_traits)
        new = result.members
        members = profile.members
        if members:
            old = set(members)
            if old != new:
                batch.change_memberships(profile, sorted(new - old), sorted(old - new), at_ms)
                profile.members = sorted(new)
        elif new:  # a newcomer's first segments (kernel: one frozenset per set of members)
            entered = _sorted(new) if type(new) is frozenset else sorted(new)
            batch.change_memberships(profile, entered, [], at_ms)
            profile.members = list(entered)
        batch.set_timer(profile, result.next_wakeup_ms)


_SORTED: dict[frozenset[str], list[str]] = {}


def _sorted(members: frozenset[str]) -> list[str]:
    """``sorted(members)``, kept for the sets seen most (a read-only list: copy to change)."""
    found = _SORTED.get(members)
    if found is None:
        if len(_SORTED) >= 4096:
            _SORTED.clear()
        found = _SORTED[members] = sorted(members)
    return found
