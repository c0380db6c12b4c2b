"""Normalisation: receivedAt, clock-skew correction, future clamp, ids, ip, names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segflow.spec.exceptions import InvalidMessage
from segflow.spec.normalize import (
    FLAG_CLAMPED,
    FLAG_GENERATED_ID,
    MIN_TIME_MS,
    NameRules,
    event_time_ms,
    fold_name,
    normalize,
    parse_time_ms,
)
from segflow.spec.wire import WireMessage

RECEIVED = 1_700_000_000_000
HOUR = 3_600_000


def iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def test_parse_time_formats() -> None:
    assert parse_time_ms("2023-11-14T22:13:20.000Z") == RECEIVED
    assert parse_time_ms("2023-11-14T23:13:20+01:00") == RECEIVED
    assert parse_time_ms("2023-11-14T22:13:20") == RECEIVED
    with pytest.raises(InvalidMessage) as info:
        parse_time_ms("yesterday", "sentAt")
    assert info.value.field == "sentAt"


def test_bad_timestamp_names_the_field() -> None:
    with pytest.raises(InvalidMessage) as info:
        normalize(
            WireMessage(user_id="u", timestamp="soon"),
            "identify",
            source_id="s",
            received_at_ms=RECEIVED,
        )
    assert info.value.field == "timestamp"


def test_no_time_given_means_received_at() -> None:
    assert event_time_ms(WireMessage(), RECEIVED) == (RECEIVED, None, None, False)


def test_timestamp_without_sent_at_is_kept() -> None:
    assert (
        event_time_ms(WireMessage(timestamp=iso(RECEIVED - HOUR)), RECEIVED)[0] == RECEIVED - HOUR
    )


@settings(max_examples=200, deadline=None)
@given(
    skew=st.integers(min_value=-7 * 24 * HOUR, max_value=7 * 24 * HOUR),
    delay=st.integers(min_value=0, max_value=3 * 24 * HOUR),
    transit=st.integers(min_value=0, max_value=60_000),
)
def test_skew_correction_recovers_true_time(skew: int, delay: int, transit: int) -> None:
    """A device whose clock is off by ``skew`` records an event ``delay`` before sending; the
    corrected timestamp is the true time up to the network transit."""
    true_event = RECEIVED - transit - delay
    msg = WireMessage(
        original_timestamp=iso(true_event + skew), sent_at=iso(true_event + delay + skew)
    )
    ts, original, sent, clamped = event_time_ms(msg, RECEIVED)
    assert ts == true_event + transit
    assert (original, sent) == (true_event + skew, true_event + delay + skew)
    assert not clamped


@settings(max_examples=100, deadline=None)
@given(ahead=st.integers(min_value=0, max_value=400 * 24 * HOUR))
def test_future_timestamps_clamped_after_23_hours(ahead: int) -> None:
    ts, _, _, clamped = event_time_ms(WireMessage(timestamp=iso(RECEIVED + ahead)), RECEIVED)
    assert clamped == (ahead > 23 * HOUR)
    assert ts == (RECEIVED if clamped else RECEIVED + ahead)


def test_clamp_is_flagged_on_the_event() -> None:
    future = (datetime.fromtimestamp(RECEIVED / 1000, tz=UTC) + timedelta(days=2)).isoformat()
    e = normalize(
        WireMessage(user_id="u", timestamp=future),
        "identify",
        source_id="s",
        received_at_ms=RECEIVED,
    )
    assert e.timestamp_ms == RECEIVED and FLAG_CLAMPED in e.flags


def test_batch_sent_at_applies_when_message_has_none() -> None:
    msg = WireMessage(user_id="u", timestamp=iso(1000))
    e = normalize(msg, "identify", source_id="s", received_at_ms=RECEIVED, batch_sent_at=iso(2000))
    assert e.timestamp_ms == RECEIVED - 1000 and e.sent_at_ms == 2000


def test_missing_message_id_is_generated_and_flagged() -> None:
    ids = iter(["gen-1"])
    e = normalize(
        WireMessage(user_id="u"),
        "identify",
        source_id="s",
        received_at_ms=1,
        id_factory=lambda: next(ids),
    )
    assert e.message_id == "gen-1" and FLAG_GENERATED_ID in e.flags


def test_ip_from_request_unless_given() -> None:
    e = normalize(
        WireMessage(user_id="u"), "identify", source_id="s", received_at_ms=1, ip="10.0.0.1"
    )
    assert e.context["ip"] == "10.0.0.1"
    e = normalize(
        WireMessage(user_id="u", context={"ip": "1.2.3.4"}),
        "identify",
        source_id="s",
        received_at_ms=1,
        ip="10.0.0.1",
    )
    assert e.context["ip"] == "1.2.3.4"


def test_numeric_ids_become_strings() -> None:
    e = normalize(WireMessage(user_id=42, group_id=7), "group", source_id="s", received_at_ms=1)
    assert (e.user_id, e.group_id, e.identity_key) == ("42", "7", "42")


def test_batch_context_merges_under_message_context() -> None:
    e = normalize(
        WireMessage(user_id="u", context={"a": 1}),
        "identify",
        source_id="s",
        received_at_ms=1,
        batch_context={"a": 0, "b": 2},
    )
    assert e.context == {"a": 1, "b": 2}


def test_name_rules_map_aliases_to_one_name() -> None:
    rules = NameRules({"Signed Up": ["user_signup", "signup_completed"]})
    names = ["user_signup", "User Signup", "Signed Up", "signed_up", "signupCompleted"]
    assert {rules.canonical(n) for n in names} == {"Signed Up"}
    assert rules.canonical("Order Completed") == "Order Completed"
    e = normalize(
        WireMessage(user_id="u", event="user-signup"),
        "track",
        source_id="s",
        received_at_ms=1,
        name_rules=rules,
    )
    assert e.event == "Signed Up"


@given(st.text(max_size=30))
def test_fold_is_idempotent(name: str) -> None:
    assert fold_name(fold_name(name)) == fold_name(name)


def test_a_time_outside_the_years_1_to_9999_in_utc_is_refused_naming_its_field() -> None:
    # was: accepted, then every read of the profile failed with "year 0 is out of range"
    now = 1_700_000_000_000
    cases = [
        (WireMessage(timestamp="0001-01-01T00:00:00+14:00"), "timestamp"),
        (WireMessage(original_timestamp="9999-12-31T23:59:59-14:00"), "originalTimestamp"),
        (WireMessage(timestamp="2024-01-01T00:00:00Z", sent_at="0001-01-01T00:00:00+01:00"), "sentAt"),
        (WireMessage(original_timestamp="0001-01-01T00:00:00Z", sent_at="9999-12-31T23:59:59Z"), "timestamp"),
    ]  # fmt: skip
    for msg, field in cases:
        with pytest.raises(InvalidMessage) as raised:
            event_time_ms(msg, now)
        assert raised.value.field == field
    edge = WireMessage(timestamp="0001-01-01T00:00:00Z")
    assert event_time_ms(edge, now)[0] == MIN_TIME_MS


@pytest.mark.parametrize(
    ("call", "fields", "expected"),
    [
        ("track", {"event": "E"}, (None, None, None, None)),
        ("page", {"name": "Home", "category": "Docs"}, ("Home", "Docs", None, None)),
        ("screen", {"name": "Feed"}, ("Feed", None, None, None)),
        ("group", {"group_id": 7}, (None, None, "7", None)),
        ("alias", {"previous_id": ""}, (None, None, None, None)),
        ("alias", {"previous_id": "anon-1"}, (None, None, None, "anon-1")),
    ],
)
def test_every_call_keeps_its_own_fields_and_nothing_else(
    call: str, fields: dict[str, object], expected: tuple[object, ...]
) -> None:
    msg = WireMessage(user_id="u", message_id="m", properties={"p": 1}, **fields)  # type: ignore[arg-type]
    e = normalize(msg, call, source_id="s", received_at_ms=RECEIVED)
    assert (e.name, e.category, e.group_id, e.previous_id) == expected
    assert (e.type, e.user_id, e.message_id, e.properties) == (call, "u", "m", {"p": 1})
