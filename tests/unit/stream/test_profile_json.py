"""The profile read path renders any stored time (issue #17: a year-0 timestamp stored by an
older version made every read of its profile a 500)."""

from __future__ import annotations

from segflow.profiles import Profile
from segflow.spec.normalize import iso_ms
from segflow.stream.reader import profile_json


def test_any_stored_time_renders_clamped_to_the_years_1_to_9999() -> None:
    stored = Profile(
        profile_id="p", created_ms=0, first_seen_ms=-62_135_647_200_000, last_seen_ms=2**62
    )
    shown = profile_json(stored)
    assert shown["first_seen"] == "0001-01-01T00:00:00.000Z"
    assert shown["last_seen"] == "9999-12-31T23:59:59.999Z"
    assert iso_ms(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
