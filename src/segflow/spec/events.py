"""The normalised event: what the collector appends to the log and every consumer reads.

Wire names stay Segment's camelCase at the HTTP edge (``segflow.collect``); inside segflow the
event is this snake_case struct, with times as ``int`` epoch milliseconds.

>>> e = Event(type="track", message_id="m1", source_id="web", timestamp_ms=1_000,
...           received_at_ms=1_000, anonymous_id="a1", event="Product Viewed")
>>> decode_event(encode_event(e)) == e
True
>>> e.identity_key
'a1'
"""

from __future__ import annotations

from typing import Any

import msgspec

EVENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One Segment-spec message after validation and normalisation.

    ``timestamp_ms`` is event time, already corrected for client clock skew
    (``received_at - (sent_at - original_timestamp)`` when ``sentAt`` was given).
    ``event`` is the track event name (normalised by the source's naming rules);
    page and screen calls keep their ``name`` and ``category``.
    ``flags`` records what normalisation did (e.g. ``"future_timestamp_clamped"``);
    ``violations`` records tracking-plan violations in ``flag`` mode.
    """

    type: str
    message_id: str
    source_id: str
    timestamp_ms: int
    received_at_ms: int
    user_id: str | None = None
    anonymous_id: str | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    group_id: str | None = None
    previous_id: str | None = None
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    context: dict[str, Any] = {}
    integrations: dict[str, Any] = {}
    original_timestamp_ms: int | None = None
    sent_at_ms: int | None = None
    flags: tuple[str, ...] = ()
    violations: tuple[str, ...] = ()

    @property
    def identity_key(self) -> str:
        """The log's partition key: ``userId`` when present, else ``anonymousId``."""
        return self.user_id or self.anonymous_id or ""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Event)

EVENT_ENCODER = _encoder
"""The encoder :func:`encode_event` uses, for loops that encode many events
(``EVENT_ENCODER.encode`` bound once: no Python frame per event)."""


def encode_event(event: Event) -> bytes:
    """Serialise an event for the log (msgpack)."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    """Inverse of :func:`encode_event`."""
    return _decoder.decode(data)
