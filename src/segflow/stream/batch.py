"""The working set of one transaction: decoded profiles, the identity index, outbox, timers.

Profiles are decoded once per batch and encoded once at :meth:`Batch.flush`; the resolver
reads the identity graph through this object (it implements ``segflow.identity.GraphView``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Literal

import msgspec

from segflow.identity import Identifier
from segflow.profiles import Profile, decode_profile, encode_profile
from segflow.spec.changes import AnyChange, MembershipChange
from segflow.stream import keys
from segflow.stream.outbox import encode_change
from segflow.stream.state.base import StateTransaction

_encoder = msgspec.msgpack.Encoder()


class Batch:
    """Reads and writes of one transaction, with a profile cache and the outbox counter."""

    def __init__(self, tx: StateTransaction) -> None:
        self.tx = tx
        self.profiles: dict[str, Profile | None] = {}
        self.dirty: set[str] = set()
        self.cause_ms: int | None = None  # what the changes emitted now answer (freshness)
        self.caused: list[tuple[str, int]] = []  # (segment, cause_ms) of membership changes
        self.memberships: Counter[tuple[str, str]] = Counter()  # (segment, kind) -> changes
        # optimistic transactions number changes and records at commit (every batch bumps the
        # counters); pessimistic ones as they are emitted
        self.deferred = getattr(tx, "defer", None) is not None
        self.changes: list[bytes] = []
        self.records: list[tuple[str, str, bytes]] = []
        self._outbox_seq: int | None = None
        self._record_seq: int | None = None

    @property
    def outbox_seq(self) -> int:
        """The sequence of the last change emitted (pessimistic transactions only)."""
        if self.deferred:
            raise RuntimeError("an optimistic transaction numbers its changes at commit")
        if self._outbox_seq is None:
            self._outbox_seq = self._meta("outbox_seq")
        return self._outbox_seq

    @property
    def record_seq(self) -> int:
        if self._record_seq is None:
            self._record_seq = self._meta("record_seq")
        return self._record_seq

    def _meta(self, name: str) -> int:
        raw = self.tx.get(keys.META, name)
        return 0 if raw is None else int(raw)

    # -- profiles ---------------------------------------------------------------------------
    def profile(self, profile_id: str) -> Profile:
        found = self.find(profile_id)
        if found is None:
            raise KeyError(profile_id)
        return found

    def find(self, profile_id: str) -> Profile | None:
        if profile_id not in self.profiles:
            raw = self.tx.get(keys.PROFILE, profile_id)
            self.profiles[profile_id] = None if raw is None else decode_profile(raw)
        return self.profiles[profile_id]

    def current(self, profile_id: str, max_hops: int = 64) -> Profile | None:
        """The profile that holds ``profile_id`` now, following merge aliases (None: unknown
        or erased)."""
        for _ in range(max_hops):
            profile = self.find(profile_id)
            if profile is not None:
                return profile
            alias = self.tx.get(keys.ALIAS, profile_id)
            if alias is None:
                return None
            profile_id = alias.decode()
        return None

    def change_membership(
        self, profile: Profile, segment: str, kind: Literal["entered", "exited"], at_ms: int
    ) -> None:
        """``profile`` enters or leaves ``segment``: the member index and the outbox, with the
        profile's next sequence number."""
        key = f"{segment}|{profile.profile_id}"
        if kind == "entered":
            self.tx.set(keys.MEMBER, key, b"")
        else:
            self.tx.delete(keys.MEMBER, key)
        self.emit(
            MembershipChange(
                profile_id=profile.profile_id,
                segment=segment,
                kind=kind,
                at_ms=at_ms,
                sequence=profile.next_sequence(),
            )
        )

    def put(self, profile: Profile) -> None:
        self.profiles[profile.profile_id] = profile
        self.dirty.add(profile.profile_id)

    def remove(self, profile_id: str) -> None:
        self.profiles[profile_id] = None
        self.dirty.add(profile_id)

    # -- identity graph (GraphView) ---------------------------------------------------------
    def owner(self, ident: Identifier) -> str | None:
        raw = self.tx.get(keys.OWNER, str(ident))
        return None if raw is None else raw.decode()

    def set_owner(self, ident_key: str, profile_id: str) -> None:
        self.tx.set(keys.OWNER, ident_key, profile_id.encode())

    def identities(self, profile_id: str) -> Mapping[Identifier, int]:
        return {
            Identifier(e.type, e.value): e.first_seen_ms
            for e in self.profile(profile_id).identities
        }

    def age(self, profile_id: str) -> tuple[int, str]:
        return (self.profile(profile_id).created_ms, profile_id)

    def merge_count(self, profile_id: str) -> int:
        return self.profile(profile_id).merge_count

    def excluded(self, profile_id: str) -> frozenset[Identifier]:
        return frozenset(Identifier.parse(k) for k in self.profile(profile_id).excluded)

    # -- outputs ----------------------------------------------------------------------------
    def emit(self, change: AnyChange) -> None:
        if isinstance(change, MembershipChange):
            self.memberships[(change.segment, change.kind)] += 1
            if self.cause_ms is not None:
                self.caused.append((change.segment, self.cause_ms))
        if self.deferred:
            self.changes.append(encode_change(change))
            return
        self._outbox_seq = self.outbox_seq + 1
        self.tx.set(keys.OUTBOX, keys.seq_key(self._outbox_seq), encode_change(change))

    def record(self, ns: str, profile_id: str, record: msgspec.Struct) -> None:
        if self.deferred:
            self.records.append((ns, profile_id, _encoder.encode(record)))
            return
        self._record_seq = self.record_seq + 1
        self.tx.set(ns, f"{profile_id}|{keys.seq_key(self._record_seq)}", _encoder.encode(record))

    def set_timer(self, profile: Profile, due_ms: int | None) -> None:
        if profile.next_wakeup_ms == due_ms:
            return
        if profile.next_wakeup_ms is not None:
            self.tx.delete(keys.TIMER, keys.timer_key(profile.next_wakeup_ms, profile.profile_id))
        if due_ms is not None:
            self.tx.set(keys.TIMER, keys.timer_key(due_ms, profile.profile_id), b"")
        profile.next_wakeup_ms = due_ms

    def flush(self) -> None:
        """Write dirty profiles and counters into the transaction (before commit)."""
        for pid in sorted(self.dirty):
            profile = self.profiles.get(pid)
            if profile is None:
                self.tx.delete(keys.PROFILE, pid)
            else:
                self.tx.set(keys.PROFILE, pid, encode_profile(profile))
        self.dirty.clear()
        if self.deferred:
            self.tx.defer(self._number)  # type: ignore[attr-defined]
        else:
            self.tx.set(keys.META, "outbox_seq", str(self.outbox_seq).encode())
            self.tx.set(keys.META, "record_seq", str(self.record_seq).encode())

    def _number(self) -> None:
        """Number the changes and records of an optimistic batch, under the lock at commit."""
        seq = self._meta("outbox_seq")
        for change in self.changes:
            seq += 1
            self.tx.set(keys.OUTBOX, keys.seq_key(seq), change)
        self.tx.set(keys.META, "outbox_seq", str(seq).encode())
        rseq = self._meta("record_seq")
        for ns, profile_id, raw in self.records:
            rseq += 1
            self.tx.set(ns, f"{profile_id}|{keys.seq_key(rseq)}", raw)
        self.tx.set(keys.META, "record_seq", str(rseq).encode())
        self.changes, self.records = [], []
