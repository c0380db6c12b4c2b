"""The kernel's native merge of two profiles' states against its pure-Python reference
(``kernel.merge_checked_python``: decode, ``program.merge``, encode): the same bytes and the same
"is it exact?" answer, on states the kernel wrote for generated histories and rules and on
generated states that hold what histories rarely reach — equal (time, message id) pairs on both
sides, folds on both sides (ties in first/last, signed zeros, value counts), and sequences whose
merge is inexact."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.integration.rules.test_differential import Arrival, definitions, histories
from tests.unit.rules.test_kernel import SETTINGS, needs_kernel

from segflow.rules import StaticProfile, compile_segments
from segflow.rules.incremental import kernel
from segflow.rules.incremental.kernel import format as kernel_format
from segflow.rules.incremental.state import (
    Entry,
    Fold,
    PathFold,
    ProfileState,
    SeqFold,
    SeqState,
    SlotState,
)
from segflow.spec.events import Event


def same_merge(k: Any, a: bytes | None, b: bytes | None) -> bytes | None:
    native = kernel.merge_checked(k, a, b)
    reference = kernel.merge_checked_python(k, a, b)
    assert native == reference
    assert k.merge_states(a, b) == native[0] and k.can_merge(a, b) == native[1]
    return native[0]


@needs_kernel
@settings(SETTINGS, max_examples=60)
@given(histories(), definitions(), st.data())
def test_native_merge_equals_the_reference_on_states_the_kernel_wrote(
    arrivals: list[Arrival], defs: tuple[dict[str, str], dict[str, str]], data: st.DataObject
) -> None:
    k = kernel.compile_kernel(compile_segments(*defs))
    states: dict[str, bytes | None] = {}
    seen: list[bytes] = []
    for a in arrivals:
        res = k.on_event(
            StaticProfile(a.profile_id), states.get(a.profile_id), a.event, a.arrived_ms
        )
        states[a.profile_id] = res.state
        if res.state:
            seen.append(res.state)
    if not seen:
        return
    for _ in range(6):
        a, b = data.draw(st.sampled_from(seen)), data.draw(st.sampled_from(seen))
        merged = same_merge(k, a, b)
        assert same_merge(k, merged, data.draw(st.sampled_from(seen))) is not None


# --- generated states ---------------------------------------------------------------------------

RULES = {
    "sums": 'sum(x of "A") > 1 and count("A" in last 1 hour) >= 1',
    "modes": 'most_frequent(y of "A") = "red" and min(x of "A") < 0 and max(y of "A") > 2',
    "plan": 'trait plan = "pro"',
    "since": "trait signup in last 7 days",
    "funnel": 'did "A" then "B" within 2 hours',
}
PROGRAM = compile_segments(RULES)
MIDS = st.sampled_from(["m1", "m2", "m3", "é", "m10", ""])
TIMES = st.integers(-3, 3) | st.integers(-(1 << 62), 1 << 62)
NUMS = st.sampled_from([0.0, -0.0, 1.5, -2.0, math.inf, math.nan]) | st.integers(-5, 5)
VALUES = st.none() | st.booleans() | NUMS | st.just(1 << 70) | st.sampled_from(["red", "é", ""])
TRAITS = st.none() | st.sampled_from(["pro", "free", "2026-12-01", 3, 1.5, [1, "pro"], {"a": 1}])


def entries(width: int, traits: bool = False) -> Any:
    vals = st.tuples(TRAITS) if traits else st.tuples(*[VALUES] * width)
    rows = st.lists(st.tuples(TIMES, MIDS, vals), max_size=6)
    return rows.map(lambda rs: sorted({(t, m): Entry(t, m, v) for t, m, v in rs}.values()))


at = st.tuples(TIMES, MIDS, st.sampled_from(["red", "blue", "1", ""]))
path_folds = st.builds(
    PathFold,
    sum=NUMS.map(float),
    n=st.integers(0, 9),
    min=st.none() | NUMS.map(float),
    max=st.none() | NUMS.map(float),
    first=st.none() | at,
    last=st.none() | at,
    counts=st.none()
    | st.dictionaries(st.sampled_from(["red", "blue", "é", "1"]), st.integers(1, 5), min_size=1),
)


def folds(width: int, traits: bool) -> Any:
    if traits:
        raw = st.none() | st.tuples(TIMES, MIDS, TRAITS)
        paths = raw.map(lambda r: [PathFold(raw_last=r)])
    else:
        paths = st.lists(path_folds, min_size=width, max_size=width)
    return st.builds(Fold, count=st.integers(0, 9), first_ts=st.none() | TIMES, paths=paths)


@st.composite
def states(draw: Any, layout: Any) -> bytes:
    slots, seqs = {}, {}
    for slot in layout.slots:
        if draw(st.booleans()):
            width, traits = len(slot.plan_paths), slot.kind == "trait"
            fold = draw(st.none() | folds(width, traits)) if slot.fold else None
            slots[slot.key] = SlotState(draw(entries(width, traits)), fold)
    for seq in layout.seqs:
        if draw(st.booleans()):
            k = len(seq.seq.steps)
            machine = st.builds(
                SeqFold,
                last=st.lists(st.none() | TIMES, min_size=k, max_size=k),
                hit=st.booleans(),
                upto=st.none() | TIMES,
            )
            rows = entries(0).map(lambda es: [Entry(e.ts, e.mid, (3,)) for e in es])
            seqs[seq.key] = SeqState(draw(rows), draw(st.none() | machine))
    st_ = ProfileState(layout.fingerprint, slots, seqs)
    return kernel_format.encode(st_, layout)


@needs_kernel
@settings(SETTINGS, max_examples=200)
@given(st.data())
def test_native_merge_equals_the_reference_on_generated_states(data: st.DataObject) -> None:
    k = kernel.compile_kernel(PROGRAM)
    a, b = data.draw(states(k.layout)), data.draw(states(k.layout))
    assert kernel_format.encode(kernel_format.decode(a, k.layout), k.layout) == a  # canonical
    same_merge(k, a, b)
    same_merge(k, b, a)
    same_merge(k, a, a)


@needs_kernel
def test_an_inexact_sequence_merge_keeps_the_survivors_machine_as_the_reference_does() -> None:
    k = kernel.compile_kernel(PROGRAM)
    seq = k.layout.seqs[0]
    folded = ProfileState(
        k.layout.fingerprint,
        seqs={seq.key: SeqState([Entry(50, "m1", (1,))], SeqFold([10, None], False, 20))},
    )
    other = ProfileState(
        k.layout.fingerprint,
        seqs={seq.key: SeqState([Entry(15, "m2", (2,))], SeqFold([None, None], False, 5))},
    )
    a, b = (kernel_format.encode(s, k.layout) for s in (folded, other))
    merged, exact = kernel.merge_checked(k, a, b)
    assert not exact
    out = kernel_format.decode(merged or b"", k.layout).seqs[seq.key]
    assert out.fold == SeqFold([10, None], False, 20)
    assert [e.mid for e in out.entries] == ["m2", "m1"]


@needs_kernel
def test_states_of_another_rule_set_or_format_merge_through_the_reference() -> None:
    old = compile_segments({"a": 'did "A" in last 1 hour'})
    k = kernel.compile_kernel(PROGRAM)
    ev = Event(
        type="track",
        message_id="m1",
        source_id="s",
        timestamp_ms=1_000,
        received_at_ms=1_000,
        event="A",
        properties={"x": 2, "y": "red"},
    )
    python_state = old.on_event(StaticProfile("p"), None, ev, 1_000).state
    kernel_old = kernel.compile_kernel(old).on_event(StaticProfile("p"), None, ev, 1_000).state
    mine = k.on_event(StaticProfile("q"), None, ev, 2_000).state
    for other in (python_state, kernel_old):
        merged, exact = same_merge(k, mine, other), kernel.merge_checked(k, other, mine)[1]
        assert exact and merged is not None and merged[:12] == k.layout.header


@needs_kernel
def test_a_truncated_state_is_refused_not_read_past_its_end() -> None:
    k = kernel.compile_kernel(PROGRAM)
    ev = Event(
        type="track",
        message_id="m1",
        source_id="s",
        timestamp_ms=1_000,
        received_at_ms=1_000,
        event="A",
        properties={"x": 2},
    )
    state = k.on_event(StaticProfile("p"), None, ev, 1_000).state or b""
    with pytest.raises(ValueError):
        kernel.merge_checked(k, state, state[:-3])
