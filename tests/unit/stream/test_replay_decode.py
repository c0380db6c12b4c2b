"""A backfill decodes only the fields its rules read (``replay.rule_decoder``): the same
states and results as the whole events, for the kernel and the Python program, with
filters, value paths, traits, timers (``quiet``) and ``any event``."""

from __future__ import annotations

import random
from typing import Any

import pytest

from segflow.rules import StaticProfile, compile_segments
from segflow.rules.incremental.kernel import KernelProgram, compile_kernel
from segflow.spec import Event
from segflow.spec.events import encode_event
from segflow.stream import replay

T0 = 1_700_000_000_000
DAY = 86_400_000
RULE_SETS = {
    "filters and values": {
        "shoes": 'did "Viewed" where category = "shoes" at least 2 times in last 7 days',
        "nested": 'did "Viewed" where (product.sku = "x1" or plan exists)',
        "spend": 'sum(revenue of "Ordered" in last 30 days) >= 20',
        "top": 'most_frequent(category of "Viewed") = "hats"',
    },
    "any event, quiet and traits": {
        "quiet": "not did any event in last 3 days",
        "busy": "did any event on at least 2 of last 10 days",
        "pro": 'did identify and trait plan = "pro"',
        "home_then_buy": 'did page "Home" then "Ordered" within 1 day',
        "cheap": 'did "Ordered" where revenue < 5',
    },
    "no properties": {
        "viewed": 'did "Viewed" at least 2 times',
        "known": "is identified and did page",
        "quiet": "not did any event in last 2 days",
    },
}


def _events(seed: int, count: int) -> list[Event]:
    """One person's events of every kind, with properties the rules read, others they do
    not (nested, lists), and keys missing."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        ts = T0 + rng.randint(0, 20 * DAY)
        common: dict[str, Any] = {
            "message_id": f"m{seed}-{n}",
            "source_id": "web",
            "timestamp_ms": ts,
            "received_at_ms": ts,
            "anonymous_id": "a1",
            "user_id": rng.choice([None, "u1"]),
            "context": {"ip": "203.0.113.7", "page": {"url": "https://x.test/"}},
        }
        kind = rng.choice(["view", "view", "order", "page", "identify", "other"])
        if kind == "view":
            props: dict[str, Any] = {"price": rng.randint(1, 9), "tags": ["a", {"b": 1}]}
            if rng.random() < 0.8:
                props["category"] = rng.choice(["shoes", "hats"])
            if rng.random() < 0.4:
                props["product"] = {"sku": rng.choice(["x1", "x2"]), "n": [1, 2]}
            if rng.random() < 0.2:
                props["plan"] = None
            out.append(Event(type="track", event="Viewed", properties=props, **common))
        elif kind == "order":
            props = {"revenue": rng.choice([1, 4.5, 10, "12"]), "items": [{"sku": "x"}]}
            out.append(Event(type="track", event="Ordered", properties=props, **common))
        elif kind == "page":
            name = rng.choice(["Home", "Cart"])
            out.append(Event(type="page", name=name, properties={"category": "shoes"}, **common))
        elif kind == "identify":
            traits = {"plan": rng.choice(["pro", "free"]), "email": "a@b.c"}
            out.append(Event(type="identify", traits=traits, **common))
        else:
            out.append(Event(type="track", event="Other", properties={"category": "x"}, **common))
    return sorted(out, key=lambda e: e.timestamp_ms)


def _programs(rules: dict[str, str]) -> list[Any]:
    program = compile_segments(rules)
    if KernelProgram is None:
        return [program]
    return [program, compile_kernel(program)]


def assert_same_results(evaluator: Any, events: list[Any], given: list[Any], label: Any) -> None:
    """``evaluator`` given ``given`` instead of ``events`` (both in one evaluation) has the
    same state, members, computed traits and next wake-up at three instants."""
    profile = StaticProfile("p", user_id="u1", first_seen_ms=T0)
    for now in (T0 + 5 * DAY, T0 + 21 * DAY, T0 + 40 * DAY):
        whole = evaluator.on_events(profile, None, events, now)
        got = evaluator.on_events(profile, None, given, now)
        assert got.state == whole.state, (label, now)
        assert (got.members, got.computed_traits, got.next_wakeup_ms) == (
            whole.members,
            whole.computed_traits,
            whole.next_wakeup_ms,
        )


@pytest.mark.parametrize("name", sorted(RULE_SETS))
def test_the_rules_fields_alone_give_the_states_and_results_of_whole_events(name: str) -> None:
    for evaluator in _programs(RULE_SETS[name]):
        decode = replay.rule_decoder(evaluator)
        for seed in range(12):
            events = _events(seed, 4 + seed * 3)
            narrow = [decode(encode_event(e)) for e in events]
            assert_same_results(evaluator, events, narrow, (name, seed))


def test_the_decoder_holds_only_what_the_rules_read() -> None:
    payload = encode_event(
        Event(
            type="track",
            message_id="m1",
            source_id="web",
            timestamp_ms=T0,
            received_at_ms=T0,
            event="Viewed",
            properties={"category": "shoes", "price": 3, "product": {"sku": "x1"}},
        )
    )
    no_properties = replay.rule_decoder(compile_segments(RULE_SETS["no properties"]))
    assert no_properties(payload).properties == {} and no_properties(payload).event == "Viewed"
    python = compile_segments(RULE_SETS["filters and values"])
    assert replay.rule_decoder(python)(payload).properties == {
        "category": "shoes",
        "price": 3,
        "product": {"sku": "x1"},
    }
    if KernelProgram is not None:  # the kernel: only the keys its rules read
        picked = replay.rule_decoder(compile_kernel(python))(payload)
        assert picked.properties == {"category": "shoes", "product": {"sku": "x1"}}
        assert picked.message_id == "m1" and picked.timestamp_ms == T0


SKIPPING = {
    "names": {
        "shoes": 'did "Viewed" where category = "shoes" at least 2 times in last 7 days',
        "spend": 'sum(revenue of "Ordered" in last 30 days) >= 20',
    },
    "pages, identifies and sequences": {
        "home_then_buy": 'did page "Home" then "Ordered" within 1 day then not "Viewed"',
        "pro": 'did identify where plan exists and trait plan = "pro"',
        "known": "is identified",
    },
}


@pytest.mark.parametrize("name", sorted(SKIPPING))
def test_skipping_the_events_no_rule_reads_gives_the_states_and_results_of_all(name: str) -> None:
    for evaluator in _programs(SKIPPING[name]):
        keep, decode = replay.rule_filter(evaluator), replay.rule_decoder(evaluator)
        assert keep is not None
        skipped = 0
        for seed in range(12):
            events = _events(seed, 4 + seed * 3)
            payloads = [encode_event(e) for e in events]
            kept = [decode(p) for p in payloads if keep(p)]
            skipped += len(events) - len(kept)
            assert_same_results(evaluator, events, kept, (name, seed))
        assert skipped > 10  # (the "Other" events, and the views or the pages and identifies)


def test_a_rule_on_any_event_reads_every_event_and_nothing_is_skipped() -> None:
    for rules in (RULE_SETS["any event, quiet and traits"], RULE_SETS["no properties"]):
        for evaluator in _programs(rules):
            assert replay.rule_filter(evaluator) is None
