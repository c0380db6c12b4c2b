"""A plan laid out for the compiled kernel: plain, flat data the extension loads once.

The layout is canonical — slots and sequences sorted by key, each slot's property paths
sorted — so that one fingerprint (one rule set) always gives one state layout, whatever the
order the definitions came in. Every rule node becomes a tuple of small integers (see the
``C_*``, ``V_*`` and ``W_*`` codes, shared with ``kernel.hpp``); literals are kept as Python
values (the extension converts them once).

>>> from segflow.rules.incremental.plan import build_plan
>>> lay = build_layout(build_plan({"s": 'did "A" in last 1 hour and trait plan = "pro"'}, {}))
>>> [(s.kind, s.horizon_ms, s.fold) for s in lay.slots]
[('event', 3600000, False), ('trait', 0, True)]
>>> lay.slots[1].predicates
(('=', 'pro'),)
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, get_args

from segflow.rules import ast
from segflow.rules.ast import AggFunc, CompareOp
from segflow.rules.incremental.plan import IDENTIFIED, Plan, slot_key, trait_selector
from segflow.rules.values import index_key

FORMAT_VERSION = 1
MAGIC = b"\xffSK" + bytes([FORMAT_VERSION])

OPS = get_args(CompareOp)  # the kernel's operator and function codes: their positions
FUNCS = get_args(AggFunc)
MATCHER_KINDS = ("track", "page", "screen", "identify", "any", "identified", "trait")

# condition nodes: (code, a, b, c, d, e, children)
C_AND, C_OR, C_NOT, C_CONST, C_CMP, C_EXISTS, C_TIMEIN = 1, 2, 3, 4, 5, 6, 7
C_INSEG, C_ANON, C_PERIODIC, C_SEQ, C_TRAITBIT = 8, 9, 10, 11, 12
# value nodes
V_AGG, V_TRAIT, V_FIRSTSEEN, V_SCORE, V_CLUSTER, V_CLUSTERID = 20, 21, 22, 23, 24, 25
# filter nodes
F_CMP, F_EXISTS, F_AND, F_OR, F_NOT = 1, 2, 3, 4, 5
# timers: (code, a, b)
W_ENTRY, W_SEQENTRY, W_TIMEIN, W_PERIODIC, W_ABSENT = 1, 2, 3, 4, 5

_LIMIT = 1 << 61  # times, windows and periods the kernel computes with in int64


class Unsupported(Exception):
    """The plan uses something the kernel does not cover (the Python evaluator runs it)."""


def key_id(key: str) -> int:
    """A slot's or sequence's stable 64-bit id in the state (its key's hash)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def path_id(path: ast.Path) -> int:
    return int.from_bytes(hashlib.blake2b(repr(path).encode(), digest_size=4).digest(), "little")


def fingerprint_bytes(fingerprint: str) -> bytes:
    return hashlib.blake2b(fingerprint.encode(), digest_size=8).digest()


Node = tuple[int, int, int, int, int, int, tuple[int, ...]]
Wake = tuple[int, int, int]


@dataclass
class SlotLayout:
    key: str
    kind: str  # "event" or "trait"
    selector: ast.Selector
    matcher: int
    paths: tuple[ast.Path, ...]  # kernel order (sorted)
    plan_paths: tuple[ast.Path, ...]  # the plan's order (the Python state's ``vals``)
    horizon_ms: int
    fold: bool
    counts: bool
    predicates: tuple[tuple[str, Any], ...] = ()  # trait slots: (op, literal), one bit each
    needs_time: bool = False

    @functools.cached_property
    def key_id(self) -> int:
        """:func:`key_id` of ``key`` (worked out once: a merge's decoding read it per slot)."""
        return key_id(self.key)

    @functools.cached_property
    def path_ids(self) -> tuple[int, ...]:
        return tuple(path_id(p) for p in self.paths)

    @functools.cached_property
    def plan_pos_of_id(self) -> dict[int, int]:
        """A stored path's id -> its position in the plan's order (``plan_paths``)."""
        plan_pos = {p: j for j, p in enumerate(self.plan_paths)}
        return {pid: plan_pos[p] for pid, p in zip(self.path_ids, self.paths, strict=True)}


@dataclass
class SeqLayout:
    key: str
    seq: ast.Sequence
    matchers: tuple[int, ...]  # the steps', then the absent step's
    horizon_ms: int

    @functools.cached_property
    def key_id(self) -> int:
        return key_id(self.key)


@dataclass
class Layout:
    fingerprint: str
    slots: list[SlotLayout]
    seqs: list[SeqLayout]
    rules: list[str]
    traits: list[str]
    matchers: list[tuple[int, str | None, tuple[str, ...] | None, int]] = field(
        default_factory=list
    )
    filters: list[tuple[int, tuple[str, ...], int, int, tuple[int, ...]]] = field(
        default_factory=list
    )
    literals: list[Any] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    rule_roots: list[int] = field(default_factory=list)
    rule_wakes: list[tuple[Wake, ...]] = field(default_factory=list)
    dependents: list[tuple[int, ...]] = field(default_factory=list)
    profile_rules: list[bool] = field(default_factory=list)
    slot_rules: list[tuple[int, ...]] = field(default_factory=list)
    seq_rules: list[tuple[int, ...]] = field(default_factory=list)
    trait_roots: list[int] = field(default_factory=list)
    trait_wakes: list[tuple[Wake, ...]] = field(default_factory=list)
    buckets: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = (
        field(default_factory=list)
    )
    bucket_of: dict[Any, int] = field(default_factory=dict)

    @functools.cached_property
    def header(self) -> bytes:
        """The state's first 12 bytes: magic and version, then the rule set's id."""
        return MAGIC + self.fingerprint_bytes

    @functools.cached_property
    def fingerprint_bytes(self) -> bytes:
        """:func:`fingerprint_bytes` of the rule set (worked out once)."""
        return fingerprint_bytes(self.fingerprint)

    def slot_index(self, key: str) -> int | None:
        return self._slot_index.get(key)

    def seq_index(self, key: str) -> int | None:
        return self._seq_index.get(key)

    def __post_init__(self) -> None:
        self._slot_index = {s.key: i for i, s in enumerate(self.slots)}
        self._seq_index = {q.key: i for i, q in enumerate(self.seqs)}


def build_layout(plan: Plan, *, check: bool = True) -> Layout:
    """Lay ``plan`` out for the kernel (raises :class:`Unsupported` for what it cannot run;
    ``check=False`` lays out any plan, to read states only)."""
    return _Builder(plan, check).build()


def _check_int(value: int | None) -> None:
    if value is not None and not -_LIMIT < value < _LIMIT:
        raise Unsupported(f"a time of {value} ms is beyond the kernel's 64-bit arithmetic")


def _check_literal(value: Any) -> None:
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            try:
                float(item)
            except OverflowError as exc:
                raise Unsupported(f"the number {item} does not fit a double") from exc
        if isinstance(item, float) and not math.isfinite(item):
            raise Unsupported(f"the number {item} is not finite")


class _Builder:
    def __init__(self, plan: Plan, check: bool) -> None:
        self.plan, self.check = plan, check
        self.matcher_ids: dict[str, int] = {}
        self.layout = Layout(plan.fingerprint, [], [], list(plan.order), list(plan.traits))
        self.node_ids: dict[Node, int] = {}

    def _int(self, value: int | None) -> None:
        if self.check:
            _check_int(value)

    def _lit(self, value: Any) -> None:
        if self.check:
            _check_literal(value)

    # --- slots, sequences, matchers ------------------------------------------------------
    def build(self) -> Layout:
        plan, lay = self.plan, self.layout
        if len(plan.order) > 60_000 or len(plan.slots) + len(plan.seqs) > 60_000:
            raise Unsupported("more than 60,000 rules or slots")
        preds: dict[str, set[tuple[str, str]]] = {}
        literal_of: dict[tuple[str, str], Any] = {}
        timed: set[str] = set()
        for cond in plan.segments.values():
            self._scan_traits(cond, preds, literal_of, timed)
        for key in sorted(plan.slots):
            sd = plan.slots[key]
            self._int(sd.horizon_ms)
            kind = "trait" if sd.selector.kind == "trait" else "event"
            found = sorted(preds.get(key, set()))
            lay.slots.append(
                SlotLayout(
                    key=key,
                    kind=kind,
                    selector=sd.selector,
                    matcher=self.matcher(sd.selector),
                    paths=tuple(sorted(sd.paths)),
                    plan_paths=tuple(sd.paths),
                    horizon_ms=sd.horizon_ms,
                    fold=sd.fold,
                    counts=sd.counts,
                    predicates=tuple((op, literal_of[(op, r)]) for op, r in found),
                    needs_time=key in timed,
                )
            )
        for key in sorted(plan.seqs):
            qd = plan.seqs[key]
            self._int(qd.horizon_ms)
            steps = [*qd.seq.steps, *((qd.seq.absent,) if qd.seq.absent else ())]
            if len(steps) > 62:
                raise Unsupported("a sequence of more than 61 steps")
            for step in steps:
                self._int(step.within_ms)
            lay.seqs.append(
                SeqLayout(
                    key, qd.seq, tuple(self.matcher(s.selector) for s in steps), qd.horizon_ms
                )
            )
        lay.__post_init__()
        self._buckets()
        self._rules()
        return lay

    def _scan_traits(
        self,
        cond: ast.Condition,
        preds: dict[str, set[tuple[str, str]]],
        literal_of: dict[tuple[str, str], Any],
        timed: set[str],
    ) -> None:
        from segflow.rules.passes import conditions

        for node in conditions(cond):
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.TraitRef):
                self._lit(node.right)
                key = slot_key(trait_selector(node.left.path))
                pred = (node.op, repr(node.right))
                preds.setdefault(key, set()).add(pred)
                literal_of[pred] = node.right
            elif isinstance(node, ast.TimeIn) and isinstance(node.value, ast.TraitRef):
                timed.add(slot_key(trait_selector(node.value.path)))

    def matcher(self, sel: ast.Selector) -> int:
        key = slot_key(sel)
        if key not in self.matcher_ids:
            flt = -1 if sel.filter is None else self.filter(sel.filter)
            self.matcher_ids[key] = len(self.layout.matchers)
            self.layout.matchers.append((MATCHER_KINDS.index(sel.kind), sel.name, sel.trait, flt))
        return self.matcher_ids[key]

    def filter(self, flt: ast.Filter) -> int:
        lay = self.layout
        entry: tuple[int, tuple[str, ...], int, int, tuple[int, ...]]
        if isinstance(flt, ast.FCompare):
            self._lit(flt.value)
            entry = (F_CMP, flt.path, OPS.index(flt.op), self.literal(flt.value), ())
        elif isinstance(flt, ast.FExists):
            entry = (F_EXISTS, flt.path, 0, -1, ())
        elif isinstance(flt, ast.FAnd | ast.FOr):
            items = tuple(self.filter(f) for f in flt.items)
            entry = (F_AND if isinstance(flt, ast.FAnd) else F_OR, (), 0, -1, items)
        else:
            entry = (F_NOT, (), 0, -1, (self.filter(flt.item),))
        lay.filters.append(entry)
        return len(lay.filters) - 1

    def literal(self, value: Any) -> int:
        self.layout.literals.append(value)
        return len(self.layout.literals) - 1

    def _buckets(self) -> None:
        """Per track name read by some rule (and one for every other event): the matchers to
        test, the track matchers that cannot match (another name), and the slots and sequences
        an event may touch — the Python program's candidates."""
        lay = self.layout
        names: set[str] = {index_key(s.selector) or "" for s in lay.slots} - {""}
        for q in lay.seqs:
            for st in (*q.seq.steps, q.seq.absent):
                if st is not None and (n := index_key(st.selector)):
                    names.add(n)
        for name in [None, *sorted(names)]:
            slots = tuple(
                i for i, s in enumerate(lay.slots) if index_key(s.selector) in (None, name)
            )
            seqs = tuple(
                i
                for i, q in enumerate(lay.seqs)
                if any(
                    index_key(st.selector) in (None, name)
                    for st in (*q.seq.steps, q.seq.absent)
                    if st is not None
                )
            )
            used = {lay.slots[i].matcher for i in slots}
            used |= {m for i in seqs for m in lay.seqs[i].matchers}
            never = {m for m in used if lay.matchers[m][0] == 0 and lay.matchers[m][1] != name}
            if name is not None:
                lay.bucket_of[name] = len(lay.buckets)
            lay.buckets.append((tuple(sorted(used - never)), tuple(sorted(never)), slots, seqs))

    # --- rules -----------------------------------------------------------------------------
    def _rules(self) -> None:
        plan, lay = self.plan, self.layout
        index = {name: i for i, name in enumerate(plan.order)}
        for name in plan.order:
            cond = plan.segments[name]
            lay.rule_roots.append(self.cond(cond, index))
            lay.rule_wakes.append(tuple(sorted(set(self.wakes(cond)))))
            lay.dependents.append(tuple(sorted(index[d] for d in plan.dependents[name])))
            lay.profile_rules.append(name in plan.profile_rules)
        lay.slot_rules = [
            tuple(sorted(index[n] for n in plan.slot_rules.get(s.key, ()))) for s in lay.slots
        ]
        lay.seq_rules = [
            tuple(sorted(index[n] for n in plan.slot_rules.get(q.key, ()))) for q in lay.seqs
        ]
        for agg in plan.traits.values():
            lay.trait_roots.append(self.value(agg))
            lay.trait_wakes.append(tuple(sorted(set(self.value_wakes(agg)))))

    def node(self, code: int, *args: int, children: tuple[int, ...] = ()) -> int:
        a, b, c, d, e = (*args, 0, 0, 0, 0, 0)[:5]
        for v in (a, b, c, d, e):
            self._int(v)
        lay = self.layout
        lay.nodes.append((code, a, b, c, d, e, children))
        return len(lay.nodes) - 1

    def slot(self, sel: ast.Selector) -> int:
        found = self.layout.slot_index(slot_key(sel))
        assert found is not None, sel
        return found

    def seq(self, c: ast.Sequence) -> int:
        found = self.layout.seq_index(repr(c))
        assert found is not None, c
        return found

    def cond(self, c: ast.Condition, index: dict[str, int]) -> int:
        if isinstance(c, ast.And | ast.Or):
            items = tuple(self.cond(i, index) for i in c.items)
            return self.node(C_AND if isinstance(c, ast.And) else C_OR, children=items)
        if isinstance(c, ast.Not):
            return self.node(C_NOT, children=(self.cond(c.item, index),))
        if isinstance(c, ast.Const):
            return self.node(C_CONST, int(c.value))
        if isinstance(c, ast.Compare):
            self._lit(c.right)
            if isinstance(c.left, ast.TraitRef):
                slot = self.slot(trait_selector(c.left.path))
                preds = self.layout.slots[slot].predicates
                want = (c.op, repr(c.right))
                bit = next(i for i, (op, lit) in enumerate(preds) if (op, repr(lit)) == want)
                return self.node(C_TRAITBIT, slot, bit)
            return self.node(C_CMP, self.value(c.left), OPS.index(c.op), self.literal(c.right))
        if isinstance(c, ast.Exists):
            return self.node(C_EXISTS, self.value(c.value))
        if isinstance(c, ast.TimeIn):
            w = c.window
            far = 0 if w.far_ms is None else w.far_ms
            return self.node(
                C_TIMEIN, self.value(c.value), w.near_ms, far, int(w.far_ms is not None)
            )
        if isinstance(c, ast.InSegment):
            return self.node(C_INSEG, index[c.name])
        if isinstance(c, ast.Anonymous):
            return self.node(C_ANON, self.slot(IDENTIFIED))
        if isinstance(c, ast.Periodic):
            return self.node(
                C_PERIODIC, self.slot(c.selector), c.buckets, c.period_ms, c.min_buckets
            )
        return self.node(C_SEQ, self.seq(c))

    def value(self, v: ast.Value) -> int:
        if isinstance(v, ast.Aggregate):
            slot = self.slot(v.selector)
            path = 0 if v.path is None else self.layout.slots[slot].paths.index(v.path)
            w = v.window
            far = 0 if w.far_ms is None else w.far_ms
            fn = FUNCS.index(v.func) | (int(w.far_ms is not None) << 8)
            return self.node(V_AGG, fn, slot, path, w.near_ms, far)
        if isinstance(v, ast.TraitRef):
            return self.node(V_TRAIT, self.slot(trait_selector(v.path)))
        if isinstance(v, ast.FirstSeen):
            return self.node(V_FIRSTSEEN, self.slot(ast.ANY_EVENT))
        if isinstance(v, ast.ScoreRef):
            return self.node(V_SCORE, self.literal(v.key))
        if isinstance(v, ast.ClusterRef):
            return self.node(V_CLUSTERID if v.by_id else V_CLUSTER, self.literal(v.model))
        raise Unsupported(f"unresolved value {v!r}")

    # --- timers (as executor._wakes) -------------------------------------------------------
    def wakes(self, c: ast.Condition) -> list[Wake]:
        if isinstance(c, ast.And | ast.Or):
            return [w for item in c.items for w in self.wakes(item)]
        if isinstance(c, ast.Not):
            return self.wakes(c.item)
        if isinstance(c, ast.Compare | ast.Exists):
            return self.value_wakes(c.left if isinstance(c, ast.Compare) else c.value)
        if isinstance(c, ast.TimeIn):
            w = c.window
            far = 0 if w.far_ms is None else w.far_ms
            node = self.node(
                C_TIMEIN, self.value(c.value), w.near_ms, far, int(w.far_ms is not None)
            )
            return [*self.value_wakes(c.value), (W_TIMEIN, node, 0)]
        if isinstance(c, ast.Anonymous):
            return [(W_ENTRY, self.slot(IDENTIFIED), 0)]
        if isinstance(c, ast.Periodic):
            node = self.node(
                C_PERIODIC, self.slot(c.selector), c.buckets, c.period_ms, c.min_buckets
            )
            return [(W_PERIODIC, node, 0)]
        if isinstance(c, ast.Sequence):
            seq = self.seq(c)
            return [(W_SEQENTRY, seq, 0), (W_ABSENT, seq, 0)]
        return []

    def value_wakes(self, v: ast.Value) -> list[Wake]:
        if isinstance(v, ast.Aggregate):
            slot = self.slot(v.selector)
            offsets = {d for d in (0, v.window.near_ms, v.window.far_ms) if d is not None}
            return [(W_ENTRY, slot, d) for d in sorted(offsets)]
        if isinstance(v, ast.TraitRef):
            return [(W_ENTRY, self.slot(trait_selector(v.path)), 0)]
        if isinstance(v, ast.FirstSeen):
            return [(W_ENTRY, self.slot(ast.ANY_EVENT), 0)]
        return []
