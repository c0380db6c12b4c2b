"""segflow.rules: the segment language (docs/segments.md).

Stages, one module each: ``tokens`` -> ``parser`` -> ``ast`` -> ``passes`` -> back ends
(``incremental``: plan, state, executor, program, kernel; ``sql``: compiler, dialects).

>>> parse('did "Order Completed"').condition.op
'>='
>>> [d.severity for d in check('did "Order Complete"', known_events=["Order Completed"])]
['warning']
"""

from __future__ import annotations

from collections.abc import Iterable

from segflow.rules.ast import Rule
from segflow.rules.exceptions import Diagnostic, RuleCycleError, RuleSyntaxError
from segflow.rules.incremental import EvalResult, SegmentProgram, StaticProfile, compile_segments
from segflow.rules.parser import parse, parse_trait
from segflow.rules.passes import analyze, unknown_events

__all__ = [
    "Diagnostic",
    "EvalResult",
    "Rule",
    "RuleCycleError",
    "RuleSyntaxError",
    "SegmentProgram",
    "StaticProfile",
    "check",
    "compile_segments",
    "parse",
    "parse_trait",
]


def check(
    text: str, known_events: Iterable[str] | None = None, *, trait: bool = False
) -> list[Diagnostic]:
    """Every error and warning for a rule (or a computed trait), without raising."""
    try:
        rule = parse_trait(text) if trait else parse(text)
    except RuleSyntaxError as err:
        return list(err.diagnostics)
    found = analyze(rule)
    if known_events is not None:
        found += unknown_events(rule, known_events)
    return found
