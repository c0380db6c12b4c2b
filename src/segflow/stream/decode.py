"""The processor's view of an event: only the fields its stages read, decoded from the log.

A log record holds a whole :class:`~segflow.spec.events.Event` (msgpack); most of its bytes
are ``context`` (the library, the page, the user agent, the IP) and ``integrations``, which
the processor never reads. :class:`StreamEvent` decodes the rest: the ids, times and names
the identity stage, the profile update and the dedupe index read, the ``properties`` and
``traits`` the rules read, and of ``context`` only what identity reads (``traits`` for the
email, ``externalIds``); msgspec skips the other keys without building them.
:class:`PropertylessEvent` leaves ``properties`` out as well, when nothing reads them.

It answers every attribute the processor's stages, the rule programs (Python and the
compiled kernel) and the identity extractor ask for as the full event would, so the
processor's outputs (profiles, memberships, the outbox, dead letters) are the same
(``tests/unit/stream/test_decode.py``). :func:`decoder_for` says when it may be used: the
evaluator is a rule program (or none), whose reads are known, and no identity rule reads a
path of ``context`` beyond those two keys; otherwise the processor decodes whole events.

>>> from segflow.spec.events import Event, encode_event
>>> e = Event(type="track", message_id="m1", source_id="web", timestamp_ms=5,
...           received_at_ms=6, anonymous_id="a1", event="Viewed",
...           context={"ip": "203.0.113.7", "traits": {"email": "a@b.c"}})
>>> s = decode_stream_event(encode_event(e))
>>> s.event, s.anonymous_id, s.context
('Viewed', 'a1', {'traits': {'email': 'a@b.c'}})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from segflow.identity import IdentityRules
from segflow.rules.ast import Aggregate
from segflow.rules.passes import selectors, values
from segflow.stream.evaluator import NullEvaluator

_NOTHING: dict[str, Any] = {}  # shared, never written (nothing writes an event's dicts)


class _Identifiers(msgspec.Struct, frozen=True):
    """What the identity stage reads of ``context``; its other keys are skipped."""

    traits: Any = None
    external_ids: Any = msgspec.field(default=None, name="externalIds")


class PropertylessEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of :class:`~segflow.spec.events.Event` that the processor reads, with the
    same names, types and defaults, but ``properties`` (left undecoded; read as empty), for a
    rule set and identity rules that read none; ``context`` holds only ``traits`` and
    ``externalIds``."""

    type: str
    message_id: str
    source_id: str
    timestamp_ms: int
    received_at_ms: int
    user_id: str | None = None
    anonymous_id: str | None = None
    event: str | None = None
    name: str | None = None
    group_id: str | None = None
    previous_id: str | None = None
    traits: dict[str, Any] = {}
    identifiers: _Identifiers | None = msgspec.field(default=None, name="context")

    @property
    def properties(self) -> dict[str, Any]:
        """Empty: nothing that reads this event reads its properties."""
        return _NOTHING

    @property
    def context(self) -> dict[str, Any]:
        """``context`` as far as identity reads it: ``traits`` and ``externalIds`` (when sent)."""
        return _context(self.identifiers)

    @property
    def identity_key(self) -> str:
        """The log's partition key, as :attr:`Event.identity_key`."""
        return self.user_id or self.anonymous_id or ""


class StreamEvent(PropertylessEvent, frozen=True, kw_only=True):
    """:class:`PropertylessEvent` with ``properties`` decoded (the rule set reads them)."""

    properties: dict[str, Any] = {}


def _context(ids: _Identifiers | None) -> dict[str, Any]:
    if ids is None:
        return _NOTHING
    out = {}
    if ids.traits is not None:
        out["traits"] = ids.traits
    if ids.external_ids is not None:
        out["externalIds"] = ids.external_ids
    return out


decode_stream_event: Callable[[bytes], StreamEvent] = msgspec.msgpack.Decoder(StreamEvent).decode
decode_propertyless: Callable[[bytes], PropertylessEvent] = msgspec.msgpack.Decoder(
    PropertylessEvent
).decode


def decoder_for(evaluator: Any, rules: IdentityRules) -> Callable[[bytes], Any] | None:
    """The decoder of the fields the processor's stages read under ``evaluator`` and
    ``rules``: :func:`decode_stream_event`, or :func:`decode_propertyless` when nothing reads
    ``properties``; None when whole events are needed.

    A rule program (``plan``: :class:`~segflow.rules.incremental.SegmentProgram` or its
    kernel) reads the kind, names, ids, times, traits and (:func:`reads_properties`)
    properties; an evaluator of another kind may read anything. An identity rule reading a
    dotted path of ``context`` reads keys :class:`StreamEvent` skips.

    >>> decoder_for(NullEvaluator(), IdentityRules()) is decode_propertyless
    True
    >>> decoder_for(object(), IdentityRules()) is None
    True
    """
    if not isinstance(evaluator, NullEvaluator) and getattr(evaluator, "plan", None) is None:
        return None
    roots = {x.path.split(".", 1)[0] for x in rules.external_ids if x.path}
    if "context" in roots:
        return None
    if "properties" in roots or reads_properties(evaluator):
        return decode_stream_event
    return decode_propertyless


def reads_properties(evaluator: Any) -> bool:
    """Whether a rule program reads events' ``properties``: a selector's filter (``where``),
    or a value path of an aggregate over events (``sum(revenue of "Order Completed")``).

    >>> from segflow.rules import compile_segments
    >>> reads_properties(compile_segments({"s": 'did "A" where plan = "pro"'}))
    True
    >>> reads_properties(compile_segments({"s": 'did "A" at least 2 times', "t": 'trait x = 1'}))
    False
    """
    plan = getattr(evaluator, "plan", None)
    if plan is None:
        return False
    found = [s for cond in plan.segments.values() for s in selectors(cond)]
    aggregates = [v for c in plan.segments.values() for v in values(c) if isinstance(v, Aggregate)]
    aggregates += plan.traits.values()
    found += [agg.selector for agg in aggregates]
    found += [sd.selector for sd in plan.slots.values()]
    if any(sel.filter is not None for sel in found):
        return True
    if any(agg.path is not None and agg.selector.kind != "trait" for agg in aggregates):
        return True
    return any(sd.paths and sd.selector.kind != "trait" for sd in plan.slots.values())
