"""The event model (Segment spec) and the change model shared by every part of segflow."""

from segflow.spec.changes import (
    AnyChange,
    Change,
    ChangeFeed,
    IdentityLinked,
    MembershipChange,
    ProfileMerged,
)
from segflow.spec.events import EVENT_TYPES, Event, decode_event, encode_event

__all__ = [
    "EVENT_TYPES",
    "AnyChange",
    "Change",
    "ChangeFeed",
    "Event",
    "IdentityLinked",
    "MembershipChange",
    "ProfileMerged",
    "decode_event",
    "encode_event",
]
