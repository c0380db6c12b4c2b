"""Per-event work: resolve identity, apply merges and links, update the profile, evaluate rules.

Everything here reads and writes through a :class:`~segflow.stream.batch.Batch`, so it runs
inside the transaction that also commits the consumer offset.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence

from segflow.identity import (
    Identifier,
    IdentityRules,
    Merge,
    Resolution,
    extract_identifiers,
    resolve,
)
from segflow.log.base import Record
from segflow.metrics import RULE_EVAL, RULE_EVAL_SAMPLE
from segflow.profiles import Profile, apply_event, merge_into
from segflow.spec.changes import (
    CONSENT_TRAIT,
    ConsentChanged,
    IdentityLinked,
    ProfileMerged,
)
from segflow.spec.events import Event
from segflow.stream import backfill, keys
from segflow.stream.backfill import RecordLog
from segflow.stream.batch import Batch
from segflow.stream.evaluator import EvalResult, Evaluation, SegmentEvaluator

log = logging.getLogger(__name__)


def new_profile_id(event: Event, seed: Identifier) -> str:
    """Deterministic id of a profile created by ``event`` (replays give the same ids).

    >>> from segflow.spec import Event
    >>> e = Event(type="page", message_id="m", source_id="s", timestamp_ms=1, received_at_ms=1)
    >>> new_profile_id(e, Identifier("anonymous_id", "a")) == new_profile_id(e, Identifier("anonymous_id", "a"))
    True
    """
    digest = hashlib.blake2b(f"{event.message_id}|{seed}".encode(), digest_size=10).hexdigest()
    return f"p_{digest}"


class EventHandler:
    """Applies events and timers to state. ``evaluator`` may be swapped between batches."""

    def __init__(
        self, rules: IdentityRules, evaluator: SegmentEvaluator, log: RecordLog | None = None
    ) -> None:
        self.rules = rules
        self.evaluator = evaluator
        self.log = log  # to replay a merged profile's timeline when states can't merge exactly
        self._evaluations = 0  # one evaluation in RULE_EVAL_SAMPLE is timed (metrics)

    # -- events -----------------------------------------------------------------------------
    def prefetch(self, batch: Batch, records: Sequence[Record]) -> list[list[Identifier]]:
        """Extract every record's identifiers and load their owners and profiles in bulk."""
        idents = [extract_identifiers(r.event, self.rules) for r in records]
        batch.tx.prefetch(keys.OWNER, (str(i) for ids in idents for i in ids))
        owners = {batch.owner(i) for ids in idents for i in ids}
        batch.tx.prefetch(keys.PROFILE, (o for o in owners if o is not None))
        return idents

    def handle(
        self, batch: Batch, record: Record, now_ms: int, idents: list[Identifier] | None = None
    ) -> str | None:
        """Attribute ``record`` to a profile and update it; returns the profile id (None: dead).

        ``idents``: the record's identifiers when already extracted (:meth:`prefetch`).
        """
        event = record.event
        idents = self._identifiers(batch, event, idents)
        res = resolve(idents, batch, self.rules, event.timestamp_ms)
        if res.profile_id is None and not res.links:
            batch.tx.set(
                keys.DEAD, f"{record.partition:04x}|{record.offset:016x}", b"no_usable_identifier"
            )
            return None
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
        apply_event(profile, event)
        if profile.traits.get(CONSENT_TRAIT) != consent:
            self._consent_changed(batch, profile, event.timestamp_ms)
        tl_key = keys.timeline_key(
            profile.profile_id, event.timestamp_ms, record.partition, record.offset
        )
        batch.tx.set(keys.TIMELINE, tl_key, b"")
        batch.cause_ms = event.received_at_ms
        self._evaluate(batch, profile, event.timestamp_ms, event, now_ms)
        batch.cause_ms = None
        batch.put(profile)
        return profile.profile_id

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

    def _identifiers(
        self, batch: Batch, event: Event, idents: list[Identifier] | None
    ) -> list[Identifier]:
        if idents is None:
            idents = extract_identifiers(event, self.rules)
        if event.type == "alias" and event.previous_id:
            # a previousId that is a known userId links as that userId
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
            batch.set_owner(str(ident), profile.profile_id)
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
        exact = self.evaluator.can_merge(survivor.rule_state, absorbed.rule_state)
        survivor.rule_state = self.evaluator.merge_states(survivor.rule_state, absorbed.rule_state)
        batch.set_timer(absorbed, None)
        merge_into(survivor, absorbed)
        if not exact and self.log is not None:
            # e.g. both sides folded a sequence: only the merged history, in order, is exact
            state, complete = backfill.replay(batch.tx, self.evaluator, self.log, survivor, now_ms)
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
        batch.set_timer(profile, None)
        self._evaluate(batch, profile, now_ms, None, now_ms)
        batch.put(profile)

    def _evaluate(
        self, batch: Batch, profile: Profile, at_ms: int, event: Event | None, now_ms: int
    ) -> None:
        self._evaluations += 1
        if self._evaluations & (RULE_EVAL_SAMPLE - 1):
            self._evaluate_rules(batch, profile, at_ms, event, now_ms)
            return
        started = time.perf_counter()
        self._evaluate_rules(batch, profile, at_ms, event, now_ms)
        RULE_EVAL.observe(time.perf_counter() - started)

    def _evaluate_rules(
        self, batch: Batch, profile: Profile, at_ms: int, event: Event | None, now_ms: int
    ) -> None:
        try:
            if event is None:
                result = self.evaluator.on_time(profile, profile.rule_state, now_ms)
            else:
                # at the clock's now, even for an event stamped in the future: it counts from
                # its own time on (a timer is due then), as in SQL's ``timestamp_ms <= T``
                result = self.evaluator.on_event(profile, profile.rule_state, event, now_ms)
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
        """Store the evaluator's result on the profile and emit the membership changes.

        A profile being erased (``Profile.erasing``, see :mod:`segflow.stream.erase`) keeps
        no memberships and no timer, whatever its rules say."""
        if profile.erasing:
            batch.set_timer(profile, None)
            return
        profile.rule_state = result.state
        if result.computed_traits or profile.computed_traits:
            profile.computed_traits = dict(result.computed_traits)
        new = result.members
        if new or profile.members:
            old = set(profile.members)
            if old != new:
                self._diff(batch, profile, old, new, at_ms)
                profile.members = sorted(new)
        batch.set_timer(profile, result.next_wakeup_ms)

    def _diff(
        self, batch: Batch, profile: Profile, old: set[str], new: frozenset[str], at_ms: int
    ) -> None:
        for segment in sorted(new - old):
            batch.change_membership(profile, segment, "entered", at_ms)
        for segment in sorted(old - new):
            batch.change_membership(profile, segment, "exited", at_ms)
