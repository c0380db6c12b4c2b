"""The event model (Segment spec) and the change model shared by every part of segflow."""

from segflow.spec.changes import (
    CONSENT_TRAIT,
    AnyChange,
    Change,
    ChangeFeed,
    ConsentChanged,
    IdentityLinked,
    MembershipChange,
    ProfileMerged,
    ScoreChanged,
)
from segflow.spec.events import EVENT_TYPES, Event, decode_event, encode_event

__all__ = [
    "CONSENT_TRAIT",
    "EVENT_TYPES",
    "AnyChange",
    "Change",
    "ChangeFeed",
    "ConsentChanged",
    "Event",
    "IdentityLinked",
    "MembershipChange",
    "ProfileMerged",
    "ScoreChanged",
    "decode_event",
    "encode_event",
]
