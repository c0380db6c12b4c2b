"""Profile state (pure): identities, traits with history, aggregates, memberships, rule state.

>>> from segflow.profiles import Profile, encode_profile, decode_profile
>>> decode_profile(encode_profile(Profile(profile_id="p", created_ms=0))).profile_id
'p'
"""

from segflow.profiles.profile import (
    IdentityEntry,
    Profile,
    TraitChange,
    decode_profile,
    encode_profile,
)
from segflow.profiles.updates import apply_event, event_key, merge_into

__all__ = [
    "IdentityEntry",
    "Profile",
    "TraitChange",
    "apply_event",
    "decode_profile",
    "encode_profile",
    "event_key",
    "merge_into",
]
