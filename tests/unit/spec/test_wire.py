"""Decoding and validating Segment wire messages."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segflow.spec.exceptions import InvalidMessage, MalformedPayload
from segflow.spec.wire import (
    convert_message,
    decode_batch,
    decode_message,
    decode_messages,
    peek_write_key,
    validate,
)


def _msg(**fields: object) -> bytes:
    return msgspec.json.encode(fields)


def test_decodes_camel_case_fields() -> None:
    msg = decode_message(
        _msg(type="alias", userId="u2", previousId="u1", messageId="m", sentAt="x")
    )
    assert (msg.type, msg.user_id, msg.previous_id, msg.message_id, msg.sent_at) == (
        "alias",
        "u2",
        "u1",
        "m",
        "x",
    )


def test_unknown_fields_are_ignored() -> None:
    assert decode_message(_msg(userId="u", channel="server", version=2)).user_id == "u"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_msg(userId=["u"]), "userId"),
        (_msg(userId="u", event=5), "event"),
        (_msg(userId="u", properties=[1]), "properties"),
        (_msg(userId="u", timestamp=12), "timestamp"),
        (_msg(userId="u", context={"ip": 1}, traits="x"), "traits"),
    ],
)
def test_wrong_types_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_message(body)
    assert info.value.field == field


@pytest.mark.parametrize("body", [b"{", b"[]", b"\xff\xfe", b"", b"null", b"[" * 100_000])
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidMessage):
        decode_message(body)


def test_invalid_utf8_inside_a_string() -> None:
    with pytest.raises(MalformedPayload):
        decode_message(b'{"userId": "\xff"}')


@pytest.mark.parametrize(
    ("fields", "call", "field"),
    [
        ({"event": "E"}, "track", "userId"),
        ({"userId": "u"}, "track", "event"),
        ({"userId": "u", "event": ""}, "track", "event"),
        ({"userId": "u"}, "alias", "previousId"),
        ({"anonymousId": "a", "previousId": "p"}, "alias", "userId"),
        ({"userId": "u"}, "group", "groupId"),
        ({"userId": "u"}, "purchase", "type"),
        ({"userId": "u", "messageId": "x" * 101}, "identify", "messageId"),
    ],
)
def test_spec_rules(fields: dict[str, object], call: str, field: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        validate(decode_message(_msg(**fields)), call)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("fields", "call"),
    [
        ({"anonymousId": "a", "event": "E"}, "track"),
        ({"userId": 7}, "identify"),
        ({"userId": "u", "previousId": "a"}, "alias"),
        ({"anonymousId": "a", "groupId": 3}, "group"),
        ({"userId": "u", "name": "Home"}, "page"),
        ({"userId": "u"}, "screen"),
    ],
)
def test_valid_messages_pass(fields: dict[str, object], call: str) -> None:
    validate(decode_message(_msg(**fields)), call)


def test_batch_keeps_messages_raw() -> None:
    batch = decode_batch(b'{"batch": [{"userId": "u"}, 7], "writeKey": "k"}')
    assert batch.write_key == "k"
    assert [bytes(r) for r in batch.batch] == [b'{"userId": "u"}', b"7"]


def test_batch_must_be_a_list() -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_batch(b'{"batch": {}}')
    assert info.value.field == "batch"


def test_peek_write_key_never_raises() -> None:
    assert peek_write_key(b'{"writeKey": "k", "userId": []}') == "k"
    assert peek_write_key(b"{nope") is None


def test_convert_message_from_objects() -> None:
    assert convert_message({"userId": "u", "event": "E"}).event == "E"
    with pytest.raises(InvalidMessage):
        convert_message(["not", "an", "object"])
    with pytest.raises(InvalidMessage) as info:
        convert_message({"userId": "u", "event": 1})
    assert info.value.field == "event"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "type",
                "userId",
                "anonymousId",
                "event",
                "messageId",
                "properties",
                "timestamp",
                "sentAt",
                "groupId",
                "previousId",
                "context",
            ]
        ),
        json_values,
    )
)
def test_any_json_object_is_accepted_or_refused_with_a_field(obj: dict[str, object]) -> None:
    """Whatever the JSON, decoding + validation end in a message or an InvalidMessage."""
    try:
        msg = decode_message(msgspec.json.encode(obj))
        validate(msg, msg.type or "track")
    except InvalidMessage as exc:
        assert isinstance(exc.reason, str) and exc.reason


def test_decoding_a_batchs_messages_in_one_loop_refuses_each_bad_one_as_decode_message_does() -> (
    None
):
    bodies = [
        _msg(type="track", userId="u1", event="A"),
        _msg(type="track", userId=[]),
        b'{"type": "track",',
        b'{"userId": "\xff"}',
        b"[" * 10_000,
        _msg(type="identify", anonymousId=7),
    ]
    raws = decode_batch(b'{"batch": [%s]}' % b",".join(bodies[:2] + bodies[5:])).batch
    for items, sources in ((decode_messages(bodies), bodies), (decode_messages(raws), raws)):
        assert len(items) == len(sources)
        for item, body in zip(items, sources, strict=True):
            try:
                expected: object = decode_message(body)
            except InvalidMessage as exc:
                assert isinstance(item, InvalidMessage)
                assert (type(item), item.field, item.reason) == (type(exc), exc.field, exc.reason)
            else:
                assert item == expected
