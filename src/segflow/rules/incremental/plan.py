"""Compile many segments and computed traits into slots shared by all of them.

A *slot* is the state one selector needs (its horizon, whether old events are folded, which
property paths are kept); rules that read the same selector share one slot.

>>> p = build_plan({"a": 'did "A" in last 1 hour', "b": 'did "A" at least 2 times'}, {})
>>> [(s.horizon_ms, s.fold) for s in p.slots.values()]
[(3600000, True)]
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from segflow.rules import ast
from segflow.rules.definitions import parse_definitions
from segflow.rules.passes import (
    conditions,
    segment_refs,
    selectors,
    topological_order,
    values,
)
from segflow.rules.values import index_key

DEFAULT_LATE_MS = 3_600_000
COUNT_AGGS = frozenset({"most_frequent", "unique_list", "unique_count"})


@dataclass
class SlotDef:
    key: str
    selector: ast.Selector
    horizon_ms: int = 0
    fold: bool = False
    counts: bool = False
    paths: list[ast.Path] = field(default_factory=list)

    def path_index(self, path: ast.Path) -> int:
        if path not in self.paths:
            self.paths.append(path)
        return self.paths.index(path)


@dataclass
class SeqDef:
    key: str
    seq: ast.Sequence
    horizon_ms: int


@dataclass
class Plan:
    segments: dict[str, ast.Condition]
    traits: dict[str, ast.Aggregate]
    order: list[str]
    slots: dict[str, SlotDef]
    seqs: dict[str, SeqDef]
    rule_slots: dict[str, set[str]]
    dependents: dict[str, set[str]]
    profile_rules: set[str]
    by_name: dict[str | None, list[SlotDef]]
    fingerprint: str
    keys: dict[int, str] = field(default_factory=dict)
    slot_rules: dict[str, set[str]] = field(default_factory=dict)
    # the rules' nodes compiled to closures (segflow.rules.incremental.executor), filled on first use
    compiled: dict[tuple[Any, ...], Any] = field(default_factory=dict)


def slot_key(sel: ast.Selector) -> str:
    return repr(sel)


class _Builder:
    def __init__(self, late_ms: int) -> None:
        self.late_ms = late_ms
        self.slots: dict[str, SlotDef] = {}
        self.seqs: dict[str, SeqDef] = {}

    def slot(self, sel: ast.Selector) -> SlotDef:
        key = slot_key(sel)
        if key not in self.slots:
            self.slots[key] = SlotDef(key, sel)
        return self.slots[key]

    def use_window(self, sel: ast.Selector, window: ast.Window) -> SlotDef:
        sd = self.slot(sel)
        sd.horizon_ms = max(sd.horizon_ms, window.far_ms or 0, window.near_ms)
        sd.fold = sd.fold or window.far_ms is None
        return sd

    def use_value(self, value: ast.Value) -> set[str]:
        if isinstance(value, ast.Aggregate):
            sd = self.use_window(value.selector, value.window)
            if value.path is not None:
                sd.path_index(value.path)
                sd.counts = sd.counts or (value.func in COUNT_AGGS and value.window.far_ms is None)
            return {sd.key}
        if isinstance(value, ast.TraitRef):
            sd = self.use_window(trait_selector(value.path), ast.ALL_TIME)
            sd.path_index(value.path)
            return {sd.key}
        if isinstance(value, ast.FirstSeen):
            return {self.use_window(ast.ANY_EVENT, ast.ALL_TIME).key}
        return set()

    def use_condition(self, cond: ast.Condition) -> set[str]:
        keys: set[str] = set()
        for node in conditions(cond):
            if isinstance(node, ast.Periodic):
                keys.add(
                    self.use_window(node.selector, ast.Window(node.buckets * node.period_ms)).key
                )
            elif isinstance(node, ast.Anonymous):
                keys.add(self.use_window(IDENTIFIED, ast.ALL_TIME).key)
            elif isinstance(node, ast.Sequence):
                key = repr(node)
                self.seqs[key] = SeqDef(key, node, self.late_ms)
                keys.add(key)
        for value in values(cond):
            keys |= self.use_value(value)
        return keys


IDENTIFIED = ast.Selector("identified")


@functools.cache
def trait_selector(path: ast.Path) -> ast.Selector:
    return ast.Selector("trait", trait=path)


def build_plan(
    definitions: Mapping[str, str], traits: Mapping[str, str], late_ms: int = DEFAULT_LATE_MS
) -> Plan:
    """Parse, validate and plan every definition together (cycles raise RuleCycleError)."""
    conds, aggs = parse_definitions(definitions, traits)
    deps = {name: segment_refs(cond) for name, cond in conds.items()}
    order = topological_order(deps)
    builder = _Builder(late_ms)
    rule_slots = {name: builder.use_condition(cond) for name, cond in conds.items()}
    for agg in aggs.values():
        builder.use_value(agg)
    dependents: dict[str, set[str]] = {name: set() for name in conds}
    for name, used in deps.items():
        for dep in used:
            dependents[dep].add(name)
    profile_rules = {
        name
        for name, cond in conds.items()
        if any(isinstance(v, ast.ScoreRef | ast.ClusterRef) for v in values(cond))
    }
    by_name: dict[str | None, list[SlotDef]] = {}
    for sd in builder.slots.values():
        by_name.setdefault(index_key(sd.selector), []).append(sd)
    digest = hashlib.sha256(
        repr((sorted(definitions.items()), sorted(traits.items()), late_ms)).encode()
    ).hexdigest()[:16]
    keys = {id(s): slot_key(s) for s in (*_all_selectors(conds, aggs), ast.ANY_EVENT, IDENTIFIED)}
    keys.update(
        {
            id(n): repr(n)
            for c in conds.values()
            for n in conditions(c)
            if isinstance(n, ast.Sequence)
        }
    )
    return Plan(
        conds,
        aggs,
        order,
        builder.slots,
        builder.seqs,
        rule_slots,
        dependents,
        profile_rules,
        by_name,
        digest,
        keys,
        _invert(rule_slots),
    )


def _invert(rule_slots: Mapping[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, keys in rule_slots.items():
        for key in keys:
            out.setdefault(key, set()).add(name)
    return out


def _all_selectors(
    conds: Mapping[str, ast.Condition], aggs: Mapping[str, ast.Aggregate]
) -> list[ast.Selector]:
    found = [sel for cond in conds.values() for sel in selectors(cond)]
    return found + [agg.selector for agg in aggs.values()]
