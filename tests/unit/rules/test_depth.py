"""Nesting depth is bounded by the parser (issue #17): every later stage walks the tree
recursively, so a rule at :data:`MAX_DEPTH` must compile everywhere and one level more must be
a diagnostic with line and column, not a ``RecursionError``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from segflow.rules import RuleSyntaxError, StaticProfile, compile_segments, parse, parse_trait
from segflow.rules.incremental.kernel.layout import build_layout
from segflow.rules.incremental.plan import build_plan
from segflow.rules.parser import MAX_DEPTH
from segflow.rules.render import render
from segflow.rules.sql.compiler import compile_members
from segflow.spec.events import Event

T0 = 1_700_000_000_000


def nested(depth: int) -> str:
    """A rule whose condition and event filter together nest ``depth`` levels."""
    half = depth // 2
    pairs, odd = divmod(depth - half, 2)  # each "not (" is two levels
    flt = "not " * odd + "not (" * pairs + "x = 1" + ")" * pairs
    return "(" * half + f'did "A" where {flt}' + ")" * half


@contextmanager
def frames_left(n: int) -> Iterator[None]:
    """Run with only ``n`` frames of Python stack above the caller's."""
    depth = len(__import__("inspect").stack(0))
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + n)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def test_one_level_past_the_limit_is_a_diagnostic_at_the_opening_token() -> None:
    with pytest.raises(RuleSyntaxError) as raised:
        parse("\n  " + "(" * (MAX_DEPTH + 1) + 'did "A"' + ")" * (MAX_DEPTH + 1))
    (diag,) = raised.value.diagnostics
    assert (diag.line, diag.column) == (2, 3 + MAX_DEPTH)
    assert f"more than {MAX_DEPTH} levels deep" in diag.message


@pytest.mark.parametrize(
    "text",
    ["not " * 5000 + 'did "A"', 'did "A" where ' + "(" * 5000 + "x = 1" + ")" * 5000, nested(MAX_DEPTH + 1)],
)  # fmt: skip
def test_any_depth_past_the_limit_is_one_diagnostic(text: str) -> None:
    with pytest.raises(RuleSyntaxError) as raised:
        parse(text)
    assert len(raised.value.diagnostics) == 1


def test_a_computed_traits_filter_is_bounded_too() -> None:
    with pytest.raises(RuleSyntaxError, match="levels deep"):
        parse_trait('count("A" where ' + "not " * 500 + "x = 1)")


def test_a_rule_at_the_limit_compiles_on_every_path_within_a_small_stack() -> None:
    rule = nested(MAX_DEPTH)
    parse(rule)  # at the limit: accepted
    with frames_left(600):
        program = compile_segments({"deep": rule}, {})
        plan = build_plan({"deep": rule}, {})
        build_layout(plan)
        compile_members(rule, at_ms=T0)
        render(parse(rule).condition)  # type: ignore[arg-type]
    event = Event(
        type="track", message_id="m", source_id="web", timestamp_ms=T0, received_at_ms=T0,
        event="A", user_id="u", properties={"x": 1},
    )  # fmt: skip
    result = program.on_event(StaticProfile("p"), None, event, T0)
    assert result is not None
