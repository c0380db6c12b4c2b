"""The working set of one transaction: decoded profiles, the identity index, outbox, timers.

Profiles are decoded once per batch and encoded once at :meth:`Batch.flush`; the resolver
reads the identity graph through this object (it implements ``segflow.identity.GraphView``).

When only this process writes the store (``store.exclusive``: RocksDB, memory), the processor keeps a
:class:`WorkingSet` of committed profiles and identifier owners in memory across
transactions, so a person who comes back costs no read and no decode. A batch reads through
it and hands its results back at commit; a rolled-back batch clears it (the batch mutated
the cached objects in place).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Literal, TypeVar

import msgspec

from segflow.identity import Identifier
from segflow.profiles import Profile, decode_profile, encode_profile
from segflow.spec.changes import AnyChange, MembershipChange
from segflow.spec.events import Event
from segflow.stream import keys
from segflow.stream.outbox import Item, MembershipRun, encode_changes
from segflow.stream.state.base import StateTransaction

_encoder = msgspec.msgpack.Encoder()
_MISS = object()
_NONE: frozenset[Identifier] = frozenset()
_V = TypeVar("_V")


def timer_row(profile: Profile) -> int | None:
    """The due time of the profile's row in the timer index (profiles stored before
    ``Profile.timer_ms`` existed have their row at ``next_wakeup_ms``)."""
    return profile.timer_ms if profile.timer_ms is not None else profile.next_wakeup_ms


class WorkingSet:
    """Committed profiles and identifier owners, kept between transactions (see the module).

    ``max_profiles`` bounds the profiles kept (the oldest are dropped first); owners are
    small and kept up to ``max_owners``.

    >>> ws = WorkingSet(max_profiles=2)
    >>> ws.keep({"a": None, "b": None, "c": None}, {})
    >>> sorted(ws.profiles)
    ['b', 'c']
    """

    def __init__(self, max_profiles: int = 200_000, max_owners: int = 2_000_000) -> None:
        self.profiles: dict[str, Profile | None] = {}
        self.owners: dict[str, str | None] = {}
        self.max_profiles = max_profiles
        self.max_owners = max_owners
        # owners holds every identifier the store has (load_owners): an identifier it does not
        # hold is unknown, with no read of the store (a newcomer's identifiers cost nothing)
        self.complete = False

    def keep(
        self, profiles: Mapping[str, Profile | None], owners: Mapping[str, str | None]
    ) -> None:
        """A committed batch's profiles and owners (read or written: all are committed now)."""
        cached = self.profiles
        for pid, profile in profiles.items():
            cached.pop(pid, None)  # re-inserted last: the dict's order is the age
            cached[pid] = profile
        self.owners.update(owners)
        _trim(cached, self.max_profiles)
        if _trim(self.owners, self.max_owners):
            self.complete = False

    def load_owners(self, rows: Sequence[tuple[str, bytes]]) -> bool:
        """Every ``(identifier key, owner)`` of the store (a scan of its ``owner`` namespace,
        committed, with no batch in between): kept, and the owners marked complete, when they
        fit in ``max_owners``; returns whether they did.

        >>> ws = WorkingSet(max_owners=2)
        >>> ws.load_owners([("user_id:a", b"p1")]), ws.complete, ws.owners
        (True, True, {'user_id:a': 'p1'})
        >>> WorkingSet(max_owners=1).load_owners([("user_id:a", b"p1"), ("user_id:b", b"p2")])
        False
        """
        if len(rows) > self.max_owners:
            return False
        self.owners.update((key, raw.decode()) for key, raw in rows)
        self.complete = True
        return True

    def clear(self) -> None:
        self.profiles.clear()
        self.owners.clear()
        self.complete = False


def _trim(found: dict[str, _V], limit: int) -> bool:
    """Drop the oldest entries beyond ``limit``; returns whether any went."""
    if len(found) <= limit:
        return False
    drop = len(found) - limit
    for key in [k for k, _ in zip(found, range(drop), strict=False)]:
        del found[key]
    return True


class Batch:
    """Reads and writes of one transaction, with a profile cache and the outbox counter."""

    def __init__(
        self, tx: StateTransaction, working: WorkingSet | None = None, now_ms: int | None = None
    ) -> None:
        self.tx = tx
        self.now_ms = now_ms  # the processor's clock: when its changes are recorded
        self.working = working
        self.profiles: dict[str, Profile | None] = {}
        self.owners: dict[str, str | None] = {}  # identifier key -> owner, read or written here
        self.dirty: set[str] = set()
        # each profile's events of this batch that its rules have not seen yet, in order (the
        # last one's received_at is what its changes answer: freshness, ack -> change)
        self.pending: dict[str, list[Event]] = {}
        self.discard = False  # Processor.transaction rolls back instead of committing
        self.cause_ms: int | None = None  # what the changes emitted now answer (freshness)
        # (segments, cause_ms) of membership changes: Freshness.observe
        self.caused: list[tuple[Sequence[str], int]] = []
        # ... of those caused by a backfilled event (it happened long before it arrived:
        # freshness.LATE_MS), measured apart so an import does not pass for live latency
        self.cause_late = False
        self.caused_late: list[tuple[Sequence[str], int]] = []
        self.memberships: Counter[tuple[str, str]] = Counter()  # (segment, kind) -> changes
        # ... the segments of the runs of changes (change_memberships), counted at the end
        self.runs_entered: list[list[str]] = []
        self.runs_exited: list[list[str]] = []
        # optimistic transactions number changes and records at commit (every batch bumps the
        # counters); pessimistic ones as they are emitted
        self.deferred = getattr(tx, "defer", None) is not None
        self.changes: list[Item] = []  # numbered and written at flush (commit)
        self.in_runs = 0  # positions the MembershipRuns of ``changes`` hold beyond one each
        # the member index rows to write at flush: profile id -> {segment: b"" | None (delete)}
        self.member_rows: dict[str, dict[str, bytes | None]] = {}
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
        return self._outbox_seq + self.emitted

    @property
    def emitted(self) -> int:
        """How many changes the batch emitted (numbered at :meth:`flush`)."""
        return len(self.changes) + self.in_runs

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
        found = self.profiles.get(profile_id, _MISS)
        if found is _MISS:
            if self.working is not None:
                found = self.working.profiles.get(profile_id, _MISS)
            if found is _MISS:
                raw = self.tx.get(keys.PROFILE, profile_id)
                found = None if raw is None else decode_profile(raw)
            self.profiles[profile_id] = found  # type: ignore[assignment]
        return found  # type: ignore[return-value]

    def prefetch(self, ident_keys: list[list[str]]) -> None:
        """Load the owners of the identifiers ``ident_keys`` (``type:value``, per record) into
        :attr:`owners`, and their profiles, in bulk (what the working set does not hold)."""
        owners = self.owners
        known = self.working.owners if self.working is not None else {}
        complete = self.working is not None and self.working.complete
        missing = []
        for found in ident_keys:
            for key in found:
                if key in owners:
                    continue
                owner = known.get(key, _MISS)
                if owner is not _MISS:
                    owners[key] = owner  # type: ignore[assignment]
                elif complete:
                    owners[key] = None  # not in the store
                else:
                    missing.append(key)
        if missing:
            self.tx.prefetch(keys.OWNER, missing)
            for key in missing:
                self.owner_of(key)
        cached = self.working.profiles if self.working is not None else {}
        wanted = {o for o in owners.values() if o is not None and o not in cached}
        if wanted:
            self.tx.prefetch(keys.PROFILE, wanted - self.profiles.keys())

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
        profile's next sequence number, valid from ``at_ms`` and recorded at the batch's
        ``now_ms`` (never before the profile's previous recorded change)."""
        recorded = self._recorded(profile, at_ms)
        self.index_member(segment, profile.profile_id, kind == "entered")
        self.emit(
            MembershipChange(
                profile_id=profile.profile_id,
                segment=segment,
                kind=kind,
                at_ms=at_ms,
                sequence=profile.next_sequence(),
                recorded_at_ms=recorded,
            )
        )

    def change_memberships(
        self, profile: Profile, entered: list[str], exited: list[str], at_ms: int
    ) -> None:
        """:meth:`change_membership` for every segment of ``entered``, then of ``exited`` (each
        sorted), in one go: the member index rows, and one :class:`MembershipRun` in the outbox
        for the changes (the same changes, numbered the same, in fewer objects and bytes)."""
        n = len(entered) + len(exited)
        if not n:
            return
        pid = profile.profile_id
        recorded = self._recorded(profile, at_ms)
        first = profile.sequence + 1
        profile.sequence += n
        rows = self._member_rows(pid)
        if entered:
            rows.update(dict.fromkeys(entered, b""))
            self.runs_entered.append(entered)
            self._caused(entered)
        if exited:
            rows.update(dict.fromkeys(exited))
            self.runs_exited.append(exited)
            self._caused(exited)
        self.changes.append(MembershipRun(pid, at_ms, recorded, first, entered, exited))
        self.in_runs += n - 1

    def index_member(self, segment: str, profile_id: str, present: bool) -> None:
        """Add (``present``) or remove the member index row of ``profile_id`` in ``segment``.

        Rows are written at :meth:`flush`, sorted (a segment's rows next to each other: RocksDB
        inserts each next to the one before, ~2-5 µs an event less at 100 rules, #15); a
        read through ``tx`` sees them after it."""
        self._member_rows(profile_id)[segment] = b"" if present else None

    def _member_rows(self, profile_id: str) -> dict[str, bytes | None]:
        """The member index rows of ``profile_id`` to write at :meth:`flush`."""
        found = self.member_rows.get(profile_id)
        if found is None:
            found = self.member_rows[profile_id] = {}
        return found

    def _recorded(self, profile: Profile, at_ms: int) -> int:
        """When a change of ``profile`` valid from ``at_ms`` is recorded: the batch's
        ``now_ms`` (``at_ms`` without one), never before the profile's previous recorded
        change (kept on the profile)."""
        recorded = max(at_ms if self.now_ms is None else self.now_ms, profile.recorded_ms)
        profile.recorded_ms = recorded
        return recorded

    def _caused(self, segments: Sequence[str]) -> None:
        """Note that membership changes of ``segments`` answer :attr:`cause_ms` (freshness;
        a backfilled event's apart)."""
        if self.cause_ms is not None:
            caused = self.caused_late if self.cause_late else self.caused
            caused.append((segments, self.cause_ms))

    def membership_counts(self) -> Counter[tuple[str, str]]:
        """How many membership changes the batch emitted per ``(segment, kind)``."""
        counts = Counter(self.memberships)
        for kind, runs in (("entered", self.runs_entered), ("exited", self.runs_exited)):
            for segment, n in Counter(itertools.chain.from_iterable(runs)).items():
                counts[(segment, kind)] += n
        return counts

    def put(self, profile: Profile) -> None:
        self.profiles[profile.profile_id] = profile
        self.dirty.add(profile.profile_id)

    def remove(self, profile_id: str) -> None:
        self.profiles[profile_id] = None
        self.dirty.add(profile_id)

    # -- identity graph (GraphView) ---------------------------------------------------------
    def owner(self, ident: Identifier) -> str | None:
        return self.owner_of(str(ident))

    def owner_of(self, ident_key: str) -> str | None:
        """The owner of the identifier ``type:value`` (None: unknown)."""
        found = self.owners.get(ident_key, _MISS)
        if found is _MISS:
            if self.working is not None:
                found = self.working.owners.get(ident_key, _MISS)
                if found is _MISS and self.working.complete:
                    found = None
            if found is _MISS:
                raw = self.tx.get(keys.OWNER, ident_key)
                found = None if raw is None else raw.decode()
            self.owners[ident_key] = found  # type: ignore[assignment]
        return found  # type: ignore[return-value]

    def set_owner(self, ident_key: str, profile_id: str) -> None:
        self.tx.set(keys.OWNER, ident_key, profile_id.encode())
        self.owners[ident_key] = profile_id

    def delete_owner(self, ident_key: str) -> None:
        self.tx.delete(keys.OWNER, ident_key)
        self.owners[ident_key] = None

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
        found = self.profile(profile_id).excluded
        return frozenset(Identifier.parse(k) for k in found) if found else _NONE

    # -- outputs ----------------------------------------------------------------------------
    def emit(self, change: AnyChange) -> None:
        if isinstance(change, MembershipChange):
            self.memberships[(change.segment, change.kind)] += 1
            self._caused((change.segment,))
        self.changes.append(change)

    def record(self, ns: str, profile_id: str, record: msgspec.Struct) -> None:
        if self.deferred:
            self.records.append((ns, profile_id, _encoder.encode(record)))
            return
        self._record_seq = self.record_seq + 1
        self.tx.set(ns, f"{profile_id}|{keys.seq_key(self._record_seq)}", _encoder.encode(record))

    def set_timer(self, profile: Profile, due_ms: int | None) -> None:
        """The profile's rules want ``on_time`` at ``due_ms`` (None: never).

        The timer index (``timer`` namespace) only has to hold a row at or before every
        profile's due time: a row that comes due early finds the profile not due yet and is
        moved to its real time (:meth:`Processor.fire_timers`). So the row is written only
        when the due time moves earlier than the row (or there is none), not each time it
        moves later — as it does for ``in last 14 days`` with every event."""
        row = timer_row(profile)
        profile.next_wakeup_ms = due_ms
        if due_ms is None or (row is not None and row <= due_ms):
            profile.timer_ms = row
            return
        if row is not None:
            self.tx.delete(keys.TIMER, keys.timer_key(row, profile.profile_id))
        self.tx.set(keys.TIMER, keys.timer_key(due_ms, profile.profile_id), b"")
        profile.timer_ms = due_ms

    def clear_timer(self, profile: Profile) -> None:
        """No timer for the profile, and no row in the timer index (it fired, or the profile
        goes: merged, split, erased)."""
        row = timer_row(profile)
        if row is not None:
            self.tx.delete(keys.TIMER, keys.timer_key(row, profile.profile_id))
        profile.timer_ms = profile.next_wakeup_ms = None

    def flush(self) -> None:
        """Write dirty profiles, the member index rows and counters into the transaction
        (before commit)."""
        self._write_member_rows()
        for pid in sorted(self.dirty):
            profile = self.profiles.get(pid)
            if profile is None:
                self.tx.delete(keys.PROFILE, pid)
            else:
                self.tx.set(keys.PROFILE, pid, encode_profile(profile))
        self.dirty.clear()
        if self.deferred:
            self.tx.defer(self._number)  # type: ignore[attr-defined]
            return
        if self.changes:
            seq = self.outbox_seq - self.emitted
            self._write_changes(seq)
        if self._record_seq is not None:
            self.tx.set(keys.META, "record_seq", str(self._record_seq).encode())

    def _write_member_rows(self) -> None:
        """The member index rows of :meth:`index_member`, in key order (in one call per
        segment when the transaction has ``set_rows``): the profiles sorted once, each
        segment's rows then come in order."""
        rows, self.member_rows = self.member_rows, {}
        by_segment: dict[str, tuple[list[str], list[bytes | None]]] = {}
        for pid in sorted(rows):
            for segment, value in rows[pid].items():
                found = by_segment.get(segment)
                if found is None:
                    found = by_segment[segment] = ([], [])
                found[0].append(pid)
                found[1].append(value)
        tx = self.tx
        set_rows = getattr(tx, "set_rows", None)
        for segment in sorted(by_segment):
            pids, values = by_segment[segment]
            prefix = segment + "|"
            if set_rows is not None:
                set_rows(keys.MEMBER, prefix, pids, values)
                continue
            for pid, value in zip(pids, values, strict=True):
                if value is None:
                    tx.delete(keys.MEMBER, prefix + pid)
                else:
                    tx.set(keys.MEMBER, prefix + pid, value)

    def committed(self) -> None:
        """The transaction committed: hand what it read and wrote to the working set."""
        if self.working is not None:
            self.working.keep(self.profiles, self.owners)

    def _write_changes(self, seq: int) -> None:
        """The changes emitted, numbered from ``seq + 1``, into the outbox: one row
        (:mod:`segflow.stream.outbox`)."""
        if self.changes:
            self.tx.set(keys.OUTBOX, keys.seq_key(seq + 1), encode_changes(self.changes))
            seq += self.emitted
        self.tx.set(keys.META, "outbox_seq", str(seq).encode())
        self._outbox_seq, self.changes, self.in_runs = seq, [], 0

    def _number(self) -> None:
        """Number the changes and records of an optimistic batch, under the lock at commit."""
        self._write_changes(self._meta("outbox_seq"))
        rseq = self._meta("record_seq")
        for ns, profile_id, raw in self.records:
            rseq += 1
            self.tx.set(ns, f"{profile_id}|{keys.seq_key(rseq)}", raw)
        self.tx.set(keys.META, "record_seq", str(rseq).encode())
        self.records = []
