"""The processor's view of an event: only the fields its stages read, decoded from the log.

A log record holds a whole :class:`~segflow.spec.events.Event` (msgpack); most of its bytes
are ``context`` (the library, the page, the user agent, the IP) and ``integrations``, which
the processor never reads. :class:`StreamEvent` decodes the rest: the ids, times and names
the identity stage, the profile update and the dedupe index read, the ``properties`` and
``traits`` the rules read, and of ``context`` only what identity reads (``traits`` for the
email, ``externalIds``); msgspec skips the other keys without building them.
:class:`PropertylessEvent` leaves ``properties`` out as well, when nothing reads them; for
the compiled kernel, :func:`picking_decoder` keeps only the keys of ``properties`` the rule
set reads (:func:`property_keys`), in a struct the kernel reads in C++.

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

import functools
import re
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from segflow.identity import IdentityRules
from segflow.rules.ast import Aggregate, FAnd, Filter, FNot, FOr, Selector
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
    ``properties``, or for the compiled kernel :func:`picking_decoder` of the keys of
    ``properties`` the rule set reads (:func:`property_keys`); None when whole events are needed.

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
    if "properties" in roots:
        return decode_stream_event
    if not reads_properties(evaluator):
        return decode_propertyless
    keys = property_keys(evaluator) if _is_kernel(evaluator) else None
    return picking_decoder(keys) if keys is not None else decode_stream_event


def _is_kernel(evaluator: Any) -> bool:
    from segflow.rules.incremental.kernel import KernelProgram

    return KernelProgram is not None and isinstance(evaluator, KernelProgram)


def _selectors_and_paths(plan: Any) -> tuple[list[Selector], list[tuple[str, ...]]]:
    """Every selector of a plan and every path of ``properties`` it reads a value at (the
    walk of :func:`reads_properties`)."""
    found = [s for cond in plan.segments.values() for s in selectors(cond)]
    aggregates = [v for c in plan.segments.values() for v in values(c) if isinstance(v, Aggregate)]
    aggregates += plan.traits.values()
    found += [agg.selector for agg in aggregates]
    found += [sd.selector for sd in plan.slots.values()]
    paths = [
        agg.path for agg in aggregates if agg.path is not None and agg.selector.kind != "trait"
    ]
    paths += [p for sd in plan.slots.values() if sd.selector.kind != "trait" for p in sd.paths]
    return found, paths


def selectors_read(plan: Any) -> list[Selector]:
    """Every event selector of a rule plan (its segments', computed traits' and slots'): an
    event none of them matches is recorded by no rule.

    >>> from segflow.rules import compile_segments
    >>> sorted({s.kind for s in selectors_read(compile_segments({"s": 'did page'}).plan)})
    ['page']
    """
    return _selectors_and_paths(plan)[0]


def _filter_paths(flt: Filter) -> Iterator[tuple[str, ...]]:
    if isinstance(flt, FAnd | FOr):
        for item in flt.items:
            yield from _filter_paths(item)
    elif isinstance(flt, FNot):
        yield from _filter_paths(flt.item)
    else:
        yield flt.path


_PLAIN_KEY = re.compile(r'[^"\\\x00-\x1f]+')  # what msgspec accepts as a renamed field


def property_keys(evaluator: Any) -> tuple[str, ...] | None:
    """The top-level keys of ``properties`` a rule program reads (a filter's path, a value's
    path: ``product.category`` reads ``product`` whole), sorted; None when it may read any.

    >>> from segflow.rules import compile_segments
    >>> property_keys(compile_segments({"s": 'did "A" where (product.sku = "x" or plan exists)'}))
    ('plan', 'product')
    >>> property_keys(compile_segments({"s": 'sum(revenue of "B") > 1', "t": 'did "C"'}))
    ('revenue',)
    """
    plan = getattr(evaluator, "plan", None)
    if plan is None:
        return None
    found, paths = _selectors_and_paths(plan)
    paths += [p for sel in found if sel.filter is not None for p in _filter_paths(sel.filter)]
    if any(not p or not isinstance(p[0], str) or not _PLAIN_KEY.fullmatch(p[0]) for p in paths):
        return None
    return tuple(sorted({p[0] for p in paths}))


@functools.lru_cache(maxsize=64)
def picking_decoder(keys: tuple[str, ...]) -> Callable[[bytes], PropertylessEvent]:
    """A decoder of :class:`PropertylessEvent` with only ``keys`` of ``properties``
    (:func:`picking_type`).

    >>> from segflow.spec.events import Event, encode_event
    >>> e = Event(type="track", message_id="m1", source_id="web", timestamp_ms=5,
    ...           received_at_ms=6, event="A", properties={"plan": "pro", "x": [1]})
    >>> picking_decoder(("plan", "sku"))(encode_event(e)).properties
    {'plan': 'pro'}
    """
    event = picking_type(PropertylessEvent, keys, prefix="Picked")
    return msgspec.msgpack.Decoder(event).decode  # type: ignore[return-value]  # a subclass


def picking_type(
    base: type[msgspec.Struct], keys: tuple[str, ...], *, prefix: str, gc: bool = True
) -> type[msgspec.Struct]:
    """``base`` (a struct without ``properties``) with only ``keys`` of ``properties``: its
    ``picked`` struct holds their values (``msgspec.UNSET`` for a key the event does not have)
    and its ``properties`` is the dict of those it has. The compiled kernel reads the struct at
    its fields' offsets (``__segflow_picked__``) and builds that dict in C++. ``gc=False``: the
    cyclic collector does not track them (a backfill's many short-lived events)."""
    fields = [f"p{i}" for i in range(len(keys))]
    picked = msgspec.defstruct(
        f"{prefix}Properties",
        [(f, Any, msgspec.UNSET) for f in fields],
        rename=dict(zip(fields, keys, strict=True)),
        frozen=True,
        gc=gc,
    )

    def _properties(self: Any) -> dict[str, Any]:
        got = msgspec.structs.astuple(self.picked)
        return {k: v for k, v in zip(keys, got, strict=True) if v is not msgspec.UNSET}

    return msgspec.defstruct(
        f"{prefix}Event",
        [("picked", picked, msgspec.field(default_factory=picked, name="properties"))],
        bases=(base,),
        namespace={
            "properties": property(_properties, doc="The properties the rule set reads."),
            "__segflow_picked__": ("picked", picked),
        },
        frozen=True,
        kw_only=True,
        gc=gc,
    )


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
    found, paths = _selectors_and_paths(plan)
    return bool(paths) or any(sel.filter is not None for sel in found)
