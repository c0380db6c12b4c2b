"""Changes the processor emits downstream (to the warehouse and to destinations).

``sequence`` increases per profile. A membership change carries two times (docs/segments.md,
"Membership history"): ``at_ms``, the event (or timer) time it was valid from as the processor
knew it when it decided, and ``recorded_at_ms``, when the processor committed it (its clock,
never before the profile's previous recorded change; ``None`` in changes written before it was
kept). The other changes' ``at_ms`` is the time of the event that caused them.

>>> c = MembershipChange(profile_id="p1", segment="dormant", kind="entered", at_ms=5, sequence=1)
>>> c.kind
'entered'
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import msgspec


class MembershipChange(msgspec.Struct, frozen=True, kw_only=True, tag="membership"):
    """A profile entered or exited a segment: valid from ``at_ms`` (as the processor knew
    then), recorded at ``recorded_at_ms``."""

    profile_id: str
    segment: str
    kind: Literal["entered", "exited"]
    at_ms: int
    sequence: int
    segment_version: int = 1
    recorded_at_ms: int | None = None

    @property
    def recorded_ms(self) -> int:
        """``recorded_at_ms``, or ``at_ms`` for a change from before it was kept."""
        return self.at_ms if self.recorded_at_ms is None else self.recorded_at_ms


class ProfileMerged(msgspec.Struct, frozen=True, kw_only=True, tag="profile_merged"):
    """Two profiles became one: ``absorbed`` now resolves to ``survivor``."""

    survivor: str
    absorbed: str
    reason: str
    at_ms: int
    sequence: int


Change = MembershipChange | ProfileMerged


class IdentityLinked(msgspec.Struct, frozen=True, kw_only=True, tag="identity_linked"):
    """An identifier (``type``, ``value``) now belongs to ``profile_id`` (fed to the warehouse)."""

    profile_id: str
    id_type: str
    id_value: str
    at_ms: int
    sequence: int


CONSENT_TRAIT = "consent"


class ConsentChanged(msgspec.Struct, frozen=True, kw_only=True, tag="consent_changed"):
    """The profile's ``consent`` trait changed (an identify, or a merge); ``consent`` is its new
    value (``None`` when removed). Activation withdraws or resumes consent-aware destinations
    at this point of the feed."""

    profile_id: str
    consent: Any
    at_ms: int
    sequence: int


class ScoreChanged(msgspec.Struct, frozen=True, kw_only=True, tag="score_changed"):
    """A model's score of the profile moved on the fly (``segflow.stream.live``): emitted when
    the score rounded to the processor's precision changes (``old`` is None the first time).
    Ranks (``M:top``, ``M:bottom``) and batch runs' scores are not in the feed."""

    profile_id: str
    model: str
    old: float | None
    new: float
    at_ms: int
    sequence: int


AnyChange = MembershipChange | ProfileMerged | IdentityLinked | ConsentChanged | ScoreChanged


class ChangeFeed(Protocol):
    """The processor's ordered output (an outbox committed with its state).

    Consumers (the warehouse loader, the delivery queue) keep their own cursor: ``read``
    returns ``(seq, change)`` pairs with ``seq > after_seq`` in increasing order.
    """

    def read(self, after_seq: int, limit: int = 1000) -> list[tuple[int, AnyChange]]: ...
