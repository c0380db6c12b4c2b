"""Profile state: one person's identities, traits (with history), aggregates and memberships.

A :class:`Profile` satisfies the ``ProfileView`` protocol that segment rules read
(``segflow.stream.evaluator``). It is a mutable msgspec Struct encoded as a msgpack array
(compact: field names are not stored).

>>> p = Profile(profile_id="p1", created_ms=5)
>>> p.add_identity("user_id", "u1", 5)
True
>>> p.user_id
'u1'
>>> decode_profile(encode_profile(p)) == p
True
"""

from __future__ import annotations

from typing import Any

import msgspec

HISTORY_CAP = 100

# ``gc=False``: a profile and its entries hold only what decoded events carry (str, numbers,
# lists and dicts of those), never themselves, so they cannot be part of a reference cycle;
# untracked, they are not walked by the cyclic collector, which the processor runs every
# 100,000 allocations while it creates a profile per newcomer (docs/engine.md, "The garbage
# collector"). Reference counting frees them as before; the encoding is the same.


class TraitChange(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A trait set by an event: ``key`` = ``value`` at event time ``at_ms`` (``message_id``)."""

    key: str
    value: Any
    at_ms: int
    message_id: str


class IdentityEntry(msgspec.Struct, array_like=True, gc=False):
    """One identifier of the profile and when it was first seen (event time)."""

    type: str
    value: str
    first_seen_ms: int


class Profile(msgspec.Struct, array_like=True, kw_only=True, gc=False):
    """The state of one profile (keyed by ``profile_id``)."""

    profile_id: str
    created_ms: int
    identities: list[IdentityEntry] = []
    traits: dict[str, Any] = {}
    trait_versions: dict[str, tuple[int, str]] = {}
    trait_history: list[TraitChange] = []
    group_traits: dict[str, dict[str, Any]] = {}
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    event_counts: dict[str, int] = {}
    computed_traits: dict[str, Any] = {}
    scores: dict[str, float] = {}
    clusters: dict[str, str] = {}
    members: list[str] = []
    rule_state: bytes | None = None
    next_wakeup_ms: int | None = None
    sequence: int = 0
    merge_count: int = 0
    absorbed: list[str] = []
    excluded: list[str] = []
    erasing: bool = False  # a deletion regulation runs: no memberships, no timers
    cluster_ids: dict[str, int] = {}  # stable cluster id per model (``cluster id of model M``)
    # the newest log positions of its events (``segflow.stream.timeline``), and how many
    # chunks of older ones are stored apart
    timeline: bytes = b""
    timeline_chunks: int = 0
    # the due time of its row in the timer index (``segflow.stream.batch.Batch.set_timer``):
    # never later than ``next_wakeup_ms``, so a restart finds every timer
    timer_ms: int | None = None
    # when its latest membership change was recorded (processing time): the next is never
    # recorded earlier, so a recorded interval never exits before it enters
    recorded_ms: int = 0

    @property
    def user_id(self) -> str | None:
        """The profile's ``userId`` (the first linked), None for anonymous profiles."""
        for entry in self.identities:
            if entry.type == "user_id":
                return entry.value
        return None

    def identity_keys(self) -> list[str]:
        """``type:value`` of every identifier."""
        return [f"{e.type}:{e.value}" for e in self.identities]

    def add_identity(self, id_type: str, value: str, seen_ms: int) -> bool:
        """Add an identifier (or move its first-seen earlier); True when it was new."""
        for entry in self.identities:
            if entry.type == id_type and entry.value == value:
                entry.first_seen_ms = min(entry.first_seen_ms, seen_ms)
                return False
        self.identities.append(IdentityEntry(id_type, value, seen_ms))
        return True

    def next_sequence(self) -> int:
        """The per-profile sequence number of the next change it emits."""
        self.sequence += 1
        return self.sequence


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Profile)


def encode_profile(profile: Profile) -> bytes:
    """Serialise a profile (msgpack array)."""
    return _encoder.encode(profile)


def decode_profile(data: bytes) -> Profile:
    """Inverse of :func:`encode_profile`."""
    return _decoder.decode(data)
