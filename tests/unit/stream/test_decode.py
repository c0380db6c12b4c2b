"""The processor's narrow decode (segflow.stream.decode) gives what decoding whole events gives.

A generated stream is appended to a real embedded log and consumed twice, on RocksDB with
the compiled rule kernel: once decoding only the fields the stages read, once decoding whole
events; every namespace of the state (profiles, owners, timelines, timers, memberships,
merges, conflicts, the outbox, dead letters) must be equal.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.state import dump_state

from segflow.clock import ManualClock
from segflow.identity import ExternalId, IdentityRules
from segflow.identity.identifiers import Extractor
from segflow.log.sqlite import SqliteEventLog
from segflow.rules import compile_segments
from segflow.rules.incremental import kernel
from segflow.spec import Event
from segflow.spec.events import encode_event
from segflow.stream import Processor, ProcessorSettings
from segflow.stream.decode import (
    PropertylessEvent,
    StreamEvent,
    decode_propertyless,
    decode_stream_event,
    decoder_for,
    reads_properties,
)
from segflow.stream.state.rocksdb import RocksStateStore

T0 = 1_700_000_000_000
RULES = {  # properties in filters and aggregates, traits, names, sequences, identified
    "buyers": 'did "Order Completed" where revenue > 50',
    "spenders": 'sum(revenue of "Order Completed" in last 90 days) >= 100',
    "pros": 'trait plan = "pro"',
    "view_then_buy": 'did "Viewed" then "Order Completed"',
    "pricing": 'did page "Pricing"',
    "known_active": 'is anonymous and did "Viewed" at least 2 times in last 7 days',
}
NAMES_AND_TRAITS = {  # no property read: events are decoded without their properties
    "buyers": 'did "Order Completed" at least 2 times',
    "pros": 'trait plan = "pro"',
    "view_then_buy": 'did "Viewed" then "Order Completed"',
    "pricing": 'did page "Pricing"',
}
CONTEXT = {
    "ip": "203.0.113.7",
    "library": {"name": "analytics.js", "version": "next-1.70.0"},
    "page": {"path": "/p", "url": "https://shop.example/p"},
    "userAgent": "Mozilla/5.0",
}


def traffic(n: int, people: int, seed: int) -> list[Event]:
    """Seeded traffic with analytics.js context on every event: anonymous views, logins
    (identify: links and merges, consent), orders by user id, pages, groups, aliases,
    tickets identified by ``context.traits.email`` and vendor ids in ``context.externalIds``."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        p = rnd.randrange(people)
        device = rnd.choice((f"d{p}-{rnd.randrange(2)}", "null"))
        ts = T0 + i * 1_000
        common: dict[str, Any] = {
            "message_id": f"m{i}",
            "source_id": "s",
            "timestamp_ms": ts,
            "received_at_ms": ts + rnd.randrange(3),
            "context": dict(CONTEXT),
        }
        r = rnd.random()
        if r < 0.45:
            out.append(
                Event(
                    type="track",
                    anonymous_id=device,
                    event=rnd.choice(("Viewed", "Added")),
                    properties={"category": rnd.choice(("shoes", "hats"))},
                    **common,
                )
            )
        elif r < 0.6:
            traits = {"email": f"u{p}@example.com", "plan": rnd.choice(("free", "pro"))}
            if rnd.random() < 0.3:
                traits["consent"] = rnd.choice(("granted", "denied"))
            out.append(
                Event(
                    type="identify",
                    anonymous_id=device,
                    user_id=f"user-{p}",
                    traits=traits,
                    **common,
                )
            )
        elif r < 0.8:
            out.append(
                Event(
                    type="track",
                    user_id=f"user-{p}",
                    anonymous_id=device,
                    event="Order Completed",
                    properties={"revenue": rnd.randrange(100)},
                    **common,
                )
            )
        elif r < 0.87:
            out.append(
                Event(
                    type="page",
                    anonymous_id=device,
                    name=rnd.choice(("Pricing", "Home")),
                    category="Docs",
                    **common,
                )
            )
        elif r < 0.9:
            out.append(
                Event(
                    type="group",
                    user_id=f"user-{p}",
                    group_id=f"g{p % 5}",
                    traits={"plan": "team"},
                    **common,
                )
            )
        elif r < 0.93:
            out.append(Event(type="alias", user_id=f"user-{p}", previous_id=f"d{p}-1", **common))
        else:
            common["context"] = {
                **CONTEXT,
                "traits": {"email": f"u{p}@example.com"},
                "externalIds": [{"type": "stripe_customer_id", "id": f"cus_{p}"}],
            }
            out.append(Event(type="track", anonymous_id=f"srv-{i}", event="Ticket", **common))
    return out  # fmt: skip


def processed(
    log: SqliteEventLog, path: Path, *, narrow: bool, rules: IdentityRules, segments: Any = None
) -> Any:
    """Every namespace of the state after a processor consumed ``log`` in batches of 60."""
    store = RocksStateStore(path, sync=False)
    settings = ProcessorSettings(narrow_decode=narrow, mirror_offsets=False)
    program = compile_segments(segments or RULES)
    proc = Processor(log, store, program, ManualClock(T0 + 10**8), settings, rules)
    while proc.run_once(60) > 0:
        pass
    store.close()
    return dump_state(path)


def test_the_narrow_decode_gives_the_full_decodes_state_and_outbox(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=3)
    log.append(traffic(1_500, 250, seed=11))
    rules = IdentityRules()
    narrow = processed(log, tmp_path / "narrow", narrow=True, rules=rules)
    assert narrow == processed(log, tmp_path / "full", narrow=False, rules=rules)
    # the stream exercised links, merges, memberships, consent and the dead-letter path
    assert len(narrow["profile"]) > 100
    assert len(narrow["merge"]) > 10
    assert {k.split("|")[0] for k, _ in narrow["member"]} >= {"buyers", "pros", "pricing"}
    assert any(b"consent_changed" in row for _, row in narrow["outbox"])
    assert narrow["dead"]  # the "null"-only devices have no usable identifier
    log.close()


def test_events_decoded_without_properties_give_the_full_decodes_state(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=3)
    log.append(traffic(1_000, 200, seed=5))
    rules = IdentityRules(external_ids=(ExternalId(type="plan_id", path="traits.plan_id"),))
    assert decoder_for(compile_segments(NAMES_AND_TRAITS), rules) is decode_propertyless
    kw: Any = {"rules": rules, "segments": NAMES_AND_TRAITS}
    narrow = processed(log, tmp_path / "narrow", narrow=True, **kw)
    assert narrow == processed(log, tmp_path / "full", narrow=False, **kw)
    assert {k.split("|")[0] for k, _ in narrow["member"]} >= {"buyers", "pros", "pricing"}
    log.close()


NESTED = {  # a few keys, nested paths, a key no event has, values of every kind
    "shoe_viewers": 'did "Viewed" where product.category = "shoes" at least 2 times',
    "hat_viewers": 'did "Viewed" where (product.tags contains "wool" or category = "hats")',
    "missing": 'did "Viewed" where product.size exists',
    "top_category": 'most_frequent(product.category of "Viewed" in last 7 days) = "shoes"',
    "spenders": 'sum(revenue of "Order Completed") >= 100',
}


def nested_traffic(n: int, people: int, seed: int) -> list[Event]:
    """:func:`traffic` whose views carry nested ``product`` properties (some without, some
    with a null or a non-dict ``product``) next to keys no rule reads."""
    rnd = random.Random(seed)
    out = []
    for e in traffic(n, people, seed):
        if e.event == "Viewed":
            product = rnd.choice(
                (
                    {"category": rnd.choice(("shoes", "hats")), "tags": ["wool", "red"]},
                    {"category": "shoes", "sku": "s-1"},
                    None,
                    "shoes",
                )
            )
            props = {**e.properties, "product": product, "unread": {"x": [1, 2]}}
            if rnd.random() < 0.2:
                del props["product"]
            e = msgspec.structs.replace(e, properties=props)
        out.append(e)
    return out


def test_nested_property_paths_give_the_full_decodes_state(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=2)
    log.append(nested_traffic(1_000, 150, seed=3))
    rules = IdentityRules()
    assert decoder_for(compile_segments(NESTED), rules) is decode_stream_event
    narrow = processed(log, tmp_path / "narrow", narrow=True, rules=rules, segments=NESTED)
    assert narrow == processed(log, tmp_path / "full", narrow=False, rules=rules, segments=NESTED)
    assert {k.split("|")[0] for k, _ in narrow["member"]} >= {"shoe_viewers", "hat_viewers"}
    log.close()


def test_the_processor_reads_stream_events_from_a_log_that_hands_out_encoded_ones(
    tmp_path: Path,
) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=1)
    log.append(traffic(5, 5, seed=1))
    store = RocksStateStore(tmp_path / "state", sync=False)
    proc = Processor(log, store, compile_segments(RULES), ManualClock(T0))
    picked = {type(r.event) for r in proc._read_log(0, 0, 10)}
    if kernel.AVAILABLE:  # the kernel reads only the keys it needs, in a struct (C++)
        assert [t.__name__ for t in picked] == ["PickedEvent"]
    else:
        assert picked == {StreamEvent}
    proc.handler.evaluator = compile_segments(RULES)  # the Python program: all the properties
    assert {type(r.event) for r in proc._read_log(0, 0, 10)} == {StreamEvent}
    proc.handler.evaluator = compile_segments(NAMES_AND_TRAITS)
    assert {type(r.event) for r in proc._read_log(0, 0, 10)} == {PropertylessEvent}
    proc.handler.evaluator = _Anything()  # an evaluator of unknown reads gets whole events
    assert {type(r.event) for r in proc._read_log(0, 0, 10)} == {Event}
    store.close()
    log.close()


class _Anything:
    """An evaluator that is not a rule program (it might read any field)."""


def test_an_external_id_read_from_context_needs_whole_events() -> None:
    device = IdentityRules(external_ids=(ExternalId(type="device", path="context.device.id"),))
    plan = IdentityRules(external_ids=(ExternalId(type="plan_id", path="traits.plan_id"),))
    program = compile_segments(RULES)
    assert decoder_for(program, device) is None
    assert decoder_for(program, plan) is decode_stream_event
    assert decoder_for(program, IdentityRules()) is decode_stream_event


def test_a_rule_set_reads_properties_through_filters_and_value_paths() -> None:
    reading = [
        'did "A" where plan = "pro"',
        'sum(revenue of "Order Completed" in last 90 days) >= 100',
        'did "A" then "B" where n > 1',
        'did page "Pricing" where path exists at least 2 times',
        'most_frequent(category of "Viewed" in last 7 days) = "shoes"',
    ]
    for rule in reading:
        assert reads_properties(compile_segments({"s": rule})), rule
    assert not reads_properties(compile_segments(NAMES_AND_TRAITS))
    no_props = IdentityRules(external_ids=(ExternalId(type="sku", path="properties.sku"),))
    assert decoder_for(compile_segments(NAMES_AND_TRAITS), no_props) is decode_stream_event


values = st.one_of(
    st.none(),
    st.sampled_from(["u1", " u1 ", "NULL", "", "A@B.c ", "0"]),
    st.integers(-2, 3),
    st.booleans(),
    st.just({}),
)

EXTRACTORS = [
    Extractor(IdentityRules()),
    Extractor(IdentityRules(priority_order=("anonymous_id", "email", "user_id"))),
    Extractor(IdentityRules(external_ids=(ExternalId(type="plan", path="traits.plan"),))),
    Extractor(IdentityRules(link_group_id=True)),
]


@st.composite
def events(draw: Any) -> Event:
    kind = draw(st.sampled_from(["track", "identify", "page", "alias", "group"]))
    context: dict[str, Any] = {}
    if draw(st.booleans()):
        context["ip"] = "203.0.113.7"
    if draw(st.booleans()):
        context["traits"] = draw(st.one_of(values, st.fixed_dictionaries({"email": values})))
    if draw(st.booleans()):
        context["externalIds"] = [{"type": "stripe_customer_id", "id": draw(values)}]
    return Event(
        type=kind,
        message_id="m",
        source_id="s",
        timestamp_ms=1,
        received_at_ms=1,
        user_id=draw(st.sampled_from([None, "u1", " u2 ", "null"])),
        anonymous_id=draw(st.sampled_from([None, "a1", "0"])),
        previous_id=draw(st.sampled_from([None, "a2"])) if kind == "alias" else None,
        group_id=draw(st.sampled_from([None, "g1"])),
        traits={"email": draw(values), "plan": draw(values)} if draw(st.booleans()) else {},
        context=context,
    )


@settings(max_examples=300, deadline=None)
@given(events(), st.sampled_from(EXTRACTORS))
def test_a_stream_event_has_the_whole_events_identifiers_and_fields(
    event: Event, extract: Any
) -> None:
    narrow = decode_stream_event(encode_event(event))
    assert extract.keyed(narrow) == extract.keyed(event)
    for field in StreamEvent.__struct_fields__:
        if field != "identifiers":
            assert getattr(narrow, field) == getattr(event, field), field
    assert narrow.identity_key == event.identity_key
    bare = decode_propertyless(encode_event(event))
    assert extract.keyed(bare) == extract.keyed(event)
    assert bare.properties == {} and bare.context == narrow.context
