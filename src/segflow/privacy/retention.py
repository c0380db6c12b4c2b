"""How much raw history the rules read, against how much the log and the warehouse keep.

Both stores may drop raw events after a while (``log.retention_ms``,
``warehouse.retention_ms``; off by default). Rules must not lose history they read:

- the **log** is replayed when the rule set changes (every profile's rule state is rebuilt
  from its timeline: ``segflow.stream.backfill``) and when a profile is split;
- the **warehouse** is where previews, batch evaluation and the SQL side of every rule run.

So a rule that reads the last 90 days cannot run on a 30-day retention, and a rule without a
window (``did "Signed Up"``, a trait, ``first seen``, a sequence, ``anonymous``) reads all
history and cannot run with any retention. segflow **refuses** such a configuration rather
than silently keeping more (an operator who sets a retention relies on it being applied):
at start-up with :class:`~segflow.privacy.exceptions.RetentionTooShort` (a ``ConfigError``),
and when a rule is created or edited with a ``ValidationError`` (HTTP 400) naming the rule.

>>> from segflow.rules import compile_segments
>>> p = compile_segments({"active": 'did "Login" in last 7 days', "buyer": 'did "Order Completed"'})
>>> [(n.name, n.days) for n in needs(p)]
[('active', 7.0), ('buyer', None)]
>>> [n.name for n in too_long(p, 30 * 86_400_000)]
['buyer']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from segflow.config import Settings
from segflow.errors import ValidationError
from segflow.privacy.exceptions import RetentionTooShort
from segflow.rules import SegmentProgram, ast
from segflow.rules.passes import conditions

DAY_MS = 86_400_000


@dataclass(frozen=True)
class HistoryNeed:
    """How far back a definition reads raw events (``math.inf``: all history)."""

    kind: str
    name: str
    need_ms: float

    @property
    def days(self) -> float | None:
        return None if math.isinf(self.need_ms) else round(self.need_ms / DAY_MS, 3)

    def describe(self) -> str:
        span = "all history" if self.days is None else f"{self.days:g} days"
        return f'{self.kind} "{self.name}" ({span})'


def _value_need(value: ast.Value) -> float:
    if isinstance(value, ast.Aggregate):
        return math.inf if value.window.far_ms is None else float(value.window.far_ms)
    if isinstance(value, ast.ScoreRef | ast.ClusterRef):
        return 0.0  # written by ML jobs, not read from raw events
    return math.inf  # traits and first-seen are folded from every event since the start


def _condition_need(
    cond: ast.Condition, segments: dict[str, ast.Condition], seen: set[str]
) -> float:
    need = 0.0
    for node in conditions(cond):
        if isinstance(node, ast.Compare):
            need = max(need, _value_need(node.left))
        elif isinstance(node, ast.Exists | ast.TimeIn):
            need = max(need, _value_need(node.value))
        elif isinstance(node, ast.Periodic):
            need = max(need, float(node.buckets * node.period_ms))
        elif isinstance(node, ast.Anonymous | ast.Sequence):
            need = math.inf  # "no userId ever", "A then B" at any time: all history
        elif isinstance(node, ast.InSegment) and node.name in segments and node.name not in seen:
            need = max(need, _condition_need(segments[node.name], segments, {*seen, node.name}))
    return need


def needs(program: SegmentProgram) -> list[HistoryNeed]:
    """The raw history every segment and computed trait of ``program`` reads."""
    plan = program.plan
    out = [
        HistoryNeed("segment", name, _condition_need(cond, plan.segments, {name}))
        for name, cond in sorted(plan.segments.items())
    ]
    out += [
        HistoryNeed("trait", name, _value_need(agg)) for name, agg in sorted(plan.traits.items())
    ]
    return out


def too_long(program: SegmentProgram, retention_ms: int) -> list[HistoryNeed]:
    """The definitions that read more than ``retention_ms`` of raw history."""
    return [n for n in needs(program) if n.need_ms > retention_ms]


def retentions(settings: Settings) -> list[tuple[str, int]]:
    """The retentions that are set: ``(setting name, ms)``."""
    found = [
        ("log.retention_ms", settings.log.retention_ms),
        ("warehouse.retention_ms", settings.warehouse.retention_ms),
    ]
    return [(name, ms) for name, ms in found if ms is not None]


def problems(settings: Settings, program: SegmentProgram) -> list[str]:
    """One sentence per retention that is shorter than what some definition reads."""
    out = []
    for setting, ms in retentions(settings):
        bad = too_long(program, ms)
        if bad:
            listed = ", ".join(n.describe() for n in bad)
            out.append(
                f"{setting} = {ms} ({ms / DAY_MS:g} days) keeps less raw history than {listed}"
                " read(s); lengthen or unset the retention, or give the rule a window"
                " (in last N days)"
            )
    return out


def check(settings: Settings, program: SegmentProgram) -> None:
    """Refuse to start when a retention is shorter than what the active rules read."""
    found = problems(settings, program)
    if found:
        raise RetentionTooShort("; ".join(found), details={"problems": found})


def guard(settings: Settings) -> Callable[[SegmentProgram], None]:
    """A check for ``SegmentService(history_check=...)``: a rule set that reads more than is
    kept is refused with a ``ValidationError`` on ``rule`` (HTTP 400)."""

    def refuse(program: SegmentProgram) -> None:
        found = problems(settings, program)
        if found:
            raise ValidationError("rule", "; ".join(found), details={"problems": found})

    return refuse
