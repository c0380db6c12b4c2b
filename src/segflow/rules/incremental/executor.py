"""Evaluate conditions and values on one profile's state at ``now_ms``, and their timers.

Used by :class:`segflow.rules.incremental.program.SegmentProgram`; the SQL compiler implements the same
meaning (docs/segments.md, "Semantics"). Each node of a plan's rules is compiled once into a
closure (its slot key, window and literal bound), cached on the plan: evaluating a rule is a few
calls and bisects, not a walk of the tree with a type test per node.

>>> from segflow.rules.incremental.plan import build_plan
>>> from segflow.rules.incremental.state import ProfileState, SlotState, Entry
>>> plan = build_plan({"s": 'did "A" at least 2 times in last 1 hour'}, {})
>>> st = ProfileState(slots={k: SlotState([Entry(1, "a"), Entry(5, "b")]) for k in plan.slots})
>>> ctx = Context(plan, st, None, now_ms=10)
>>> ctx.cond(plan.segments["s"]), ctx.wake(plan.segments["s"])
(True, 3600001)
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from segflow.rules import ast
from segflow.rules.incremental.plan import IDENTIFIED, Plan, SlotDef, slot_key, trait_selector
from segflow.rules.incremental.state import Entry, ProfileState, SeqFold, SeqState, SlotState, after
from segflow.rules.values import MISSING, compare, exists, to_num, to_text, to_time_ms

_EMPTY = SlotState()
_TS = operator.attrgetter(
    "ts"
)  # as segflow.rules.incremental.state.after, inlined on the hottest paths
_NO_SEQ = SeqState()
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

CondFn = Callable[["Context"], bool]
ValueFn = Callable[["Context"], Any]
WakeFn = Callable[["Context"], "int | None"]


class ProfileView(Protocol):
    """What the rules read from a profile besides its events: its id and the ML scores and
    clusters (``segflow.profiles.Profile`` is one; so is ``StaticProfile``). The one seam
    between the rules and a profile: ``segflow.stream`` hands its profiles in as these."""

    @property
    def profile_id(self) -> str: ...
    @property
    def scores(self) -> Mapping[str, float]: ...
    @property
    def clusters(self) -> Mapping[str, str]: ...
    @property
    def cluster_ids(self) -> Mapping[str, int]: ...


class Context:
    """One evaluation of a profile at ``now_ms`` (members of earlier segments in ``results``)."""

    __slots__ = ("now", "plan", "profile", "results", "seqs", "slots", "state")

    def __init__(self, plan: Plan, state: ProfileState, profile: ProfileView, now_ms: int) -> None:
        self.plan = plan
        self.state = state
        self.slots = state.slots
        self.seqs = state.seqs
        self.profile = profile
        self.now = now_ms
        self.results = state.results

    # --- the compiled entry points ----------------------------------------------------------
    def cond(self, c: ast.Condition) -> bool:
        fn: CondFn = _compiled(self.plan, c, _cond)
        return fn(self)

    def value(self, v: ast.Value) -> Any:
        return _compiled(self.plan, v, _value)(self)

    def aggregate(self, agg: ast.Aggregate) -> Any:
        return self.value(agg)

    def wake(self, c: ast.Condition) -> int | None:
        """Earliest time > now at which time alone may change ``c`` (None = never)."""
        fn: WakeFn = _compiled(self.plan, c, _cond_wake)
        return fn(self)

    def value_wake(self, v: ast.Value) -> int | None:
        fn: WakeFn = _compiled(self.plan, v, _value_wake)
        return fn(self)

    # --- for explanations ---------------------------------------------------------------------
    def slot(self, sel: ast.Selector) -> tuple[SlotDef, SlotState]:
        key = _slot_key(self.plan, sel)
        return self.plan.slots[key], self.slots.get(key, _EMPTY)

    def window_items(self, st: SlotState, window: ast.Window) -> list[Entry]:
        hi = after(st.entries, self.now - window.near_ms)
        lo = 0 if window.far_ms is None else after(st.entries, self.now - window.far_ms)
        return st.entries[lo:hi]

    def seq_state(self, c: ast.Sequence) -> SeqFold:
        return _seq_fold(c, self.seqs.get(_seq_key(self.plan, c), _NO_SEQ), self.now)


# --- compilation -----------------------------------------------------------------------------


def compile_condition(plan: Plan, c: ast.Condition) -> tuple[CondFn, WakeFn]:
    """A condition of ``plan`` as two closures: whether it holds, and its next timer."""
    cond: CondFn = _compiled(plan, c, _cond)
    wake: WakeFn = _compiled(plan, c, _cond_wake)
    return cond, wake


def compile_value(plan: Plan, v: ast.Value) -> tuple[ValueFn, WakeFn]:
    """A value of ``plan`` (a computed trait) as two closures: its value, and its next timer."""
    value: ValueFn = _compiled(plan, v, _value)
    wake: WakeFn = _compiled(plan, v, _value_wake)
    return value, wake


def _compiled(plan: Plan, node: Any, build: Callable[[Plan, Any], Any]) -> Any:
    """``build(plan, node)``, once per plan (nodes live as long as their plan)."""
    cache = plan.compiled
    key = (build.__name__, id(node))
    fn = cache.get(key)
    if fn is None:
        fn = cache[key] = build(plan, node)
    return fn


def _slot_key(plan: Plan, sel: ast.Selector) -> str:
    return plan.keys.get(id(sel)) or slot_key(sel)


def _seq_key(plan: Plan, c: ast.Sequence) -> str:
    return plan.keys.get(id(c)) or repr(c)


# --- conditions -------------------------------------------------------------------------------


def _cond(plan: Plan, c: ast.Condition) -> CondFn:
    if isinstance(c, ast.And | ast.Or):
        items = tuple(_compiled(plan, i, _cond) for i in c.items)
        if isinstance(c, ast.And):
            return lambda ctx: all(f(ctx) for f in items)
        return lambda ctx: any(f(ctx) for f in items)
    if isinstance(c, ast.Not):
        inner = _compiled(plan, c.item, _cond)
        return lambda ctx: not inner(ctx)
    if isinstance(c, ast.Const):
        const = c.value
        return lambda ctx: const
    if isinstance(c, ast.Compare):
        return _compare(plan, c)
    if isinstance(c, ast.Exists):
        value = _compiled(plan, c.value, _value)
        return lambda ctx: exists(value(ctx))
    if isinstance(c, ast.TimeIn):
        return _time_in(plan, c)
    if isinstance(c, ast.InSegment):
        name = c.name
        return lambda ctx: ctx.results.get(name, False)
    if isinstance(c, ast.Anonymous):
        key = _slot_key(plan, IDENTIFIED)

        def anonymous(ctx: Context) -> bool:
            st = ctx.slots.get(key, _EMPTY)
            return not (st.entries and st.entries[0].ts <= ctx.now) and not (
                st.fold and st.fold.count
            )

        return anonymous
    if isinstance(c, ast.Periodic):
        return _periodic(plan, c)
    return _sequence(plan, c)


def _compare(plan: Plan, c: ast.Compare) -> CondFn:
    value = _compiled(plan, c.left, _value)
    op, right = c.op, c.right
    fast = _OPS.get(op)
    counted = isinstance(c.left, ast.Aggregate) and c.left.func == "count"
    if (
        counted
        and fast is not None
        and isinstance(right, int | float)
        and not isinstance(right, bool)
    ):
        literal = float(right)
        return lambda ctx: fast(value(ctx), literal)  # a count is never null
    return lambda ctx: (v := value(ctx)) is not MISSING and v is not None and compare(v, op, right)


def _time_in(plan: Plan, c: ast.TimeIn) -> CondFn:
    time_of = _time_value(plan, c.value)
    window = c.window

    def time_in(ctx: Context) -> bool:
        t = time_of(ctx)
        return t is not None and window.contains(t, ctx.now)  # type: ignore[arg-type]

    return time_in


def _time_value(plan: Plan, v: ast.Value) -> Callable[[Context], float | None]:
    if isinstance(v, ast.FirstSeen):
        first = _compiled(plan, v, _value)
        return lambda ctx: None if (t := first(ctx)) is None else float(t)
    raw = _compiled(plan, v, _value)
    return lambda ctx: None if (r := raw(ctx)) is MISSING else to_time_ms(r)


def _periodic(plan: Plan, c: ast.Periodic) -> CondFn:
    key, buckets, period, needed = (
        _slot_key(plan, c.selector),
        c.buckets,
        c.period_ms,
        c.min_buckets,
    )

    def periodic(ctx: Context) -> bool:
        entries = ctx.slots.get(key, _EMPTY).entries
        now = ctx.now
        lo = bisect_right(entries, now - buckets * period, key=_TS)
        hi = bisect_right(entries, now, key=_TS)
        if hi - lo <= 2 * buckets:  # few events: the period of each (k = (now - t) // period)
            return len({(now - e.ts) // period for e in entries[lo:hi]}) >= needed
        hits = 0
        for k in range(buckets):
            start = bisect_right(entries, now - (k + 1) * period, key=_TS)
            hits += start < hi
            hi = start
        return hits >= needed

    return periodic


def _periodic_wake(plan: Plan, c: ast.Periodic) -> WakeFn:
    """When an event crosses into the next period (or out of the last, or becomes current):
    ``min over k`` of the first ``t + k·period`` after now, computed per event when few."""
    key, buckets, period = _slot_key(plan, c.selector), c.buckets, c.period_ms
    by_offset = _earliest([_entry_wake(plan, key, k * period) for k in range(buckets + 1)])

    def periodic_wake(ctx: Context) -> int | None:
        st = ctx.slots.get(key)
        if st is None:
            return None
        entries, now = st.entries, ctx.now
        lo = bisect_right(entries, now - buckets * period, key=_TS)
        if len(entries) - lo > 2 * buckets:
            return by_offset(ctx)
        best = None
        for e in entries[lo:]:
            d = now - e.ts
            t = e.ts if d < 0 else e.ts + (d // period + 1) * period
            if best is None or t < best:
                best = t
        return best

    return periodic_wake


def _sequence(plan: Plan, c: ast.Sequence) -> CondFn:
    key = _seq_key(plan, c)
    absent = c.absent

    def sequence(ctx: Context) -> bool:
        fold = _seq_fold(c, ctx.seqs.get(key, _NO_SEQ), ctx.now)
        anchor = fold.last[-1]
        if anchor is None:
            return False
        if absent is None:
            return True
        w = absent.within_ms
        return not fold.hit and (w is None or anchor + w <= ctx.now)

    return sequence


def _seq_fold(c: ast.Sequence, seq: SeqState, now: int) -> SeqFold:
    fold = SeqFold(list(seq.fold.last), seq.fold.hit) if seq.fold else new_seq_fold(c)
    replay(c, fold, seq.entries[: after(seq.entries, now)])
    return fold


# --- values -----------------------------------------------------------------------------------


def _value(plan: Plan, v: ast.Value) -> ValueFn:
    if isinstance(v, ast.Aggregate):
        return _aggregate(plan, v)
    if isinstance(v, ast.TraitRef):
        return _trait(plan, v.path)
    if isinstance(v, ast.FirstSeen):
        return _first_seen(plan)
    if isinstance(v, ast.ScoreRef):
        key = v.key
        return lambda ctx: ctx.profile.scores.get(key)
    if isinstance(v, ast.ClusterRef):
        model = v.model
        if v.by_id:
            return lambda ctx: ctx.profile.cluster_ids.get(model)
        return lambda ctx: ctx.profile.clusters.get(model)
    raise TypeError(f"unresolved value {v!r}")


def _aggregate(plan: Plan, agg: ast.Aggregate) -> ValueFn:
    key = _slot_key(plan, agg.selector)
    sd = plan.slots[key]
    near, far = agg.window.near_ms, agg.window.far_ms
    folds = far is None
    i = sd.paths.index(agg.path) if agg.path is not None else 0

    def items(ctx: Context) -> tuple[list[Entry], Any]:
        st = ctx.slots.get(key, _EMPTY)
        entries = st.entries
        hi = after(entries, ctx.now - near)
        lo = 0 if far is None else after(entries, ctx.now - far)
        return entries[lo:hi], (st.fold if folds else None)

    if agg.func == "count":

        def count(ctx: Context) -> int:
            st = ctx.slots.get(key, _EMPTY)
            entries = st.entries
            hi = bisect_right(entries, ctx.now - near, key=_TS)
            lo = 0 if far is None else bisect_right(entries, ctx.now - far, key=_TS)
            folded = st.fold.count if folds and st.fold else 0
            return max(0, hi - lo) + folded

        return count
    finish = _FINISH[agg.func]
    return lambda ctx: finish(*items(ctx), i)


def _numeric(func: str) -> Callable[[list[Entry], Any, int], Any]:
    def numbers(entries: list[Entry], folded: Any, i: int) -> Any:
        pf = folded.paths[i] if folded and i < len(folded.paths) else None
        nums = [n for n in (to_num(e.vals[i]) for e in entries) if n is not None]
        if func in ("sum", "avg"):
            total = (pf.sum if pf else 0.0) + sum(nums)
            if func == "sum":
                return total
            n = (pf.n if pf else 0) + len(nums)
            return total / n if n else None
        extremes = nums + [x for x in ((pf.min, pf.max) if pf else ()) if x is not None]
        if not extremes:
            return None
        return min(extremes) if func == "min" else max(extremes)

    return numbers


def _textual(func: str) -> Callable[[list[Entry], Any, int], Any]:
    def texts(entries: list[Entry], folded: Any, i: int) -> Any:
        pf = folded.paths[i] if folded and i < len(folded.paths) else None
        found = [(e.ts, e.mid, t) for e in entries if (t := to_text(e.vals[i])) is not None]
        if func in ("first", "last"):
            cands = found + [x for x in ((pf.first, pf.last) if pf else ()) if x is not None]
            if not cands:
                return None
            pick = min if func == "first" else max
            return pick(cands, key=lambda x: (x[0], x[1]))[2]
        counts: dict[str, int] = dict(pf.counts or {}) if pf else {}
        for _, _, t in found:
            counts[t] = counts.get(t, 0) + 1
        if func == "unique_count":
            return len(counts)
        if func == "unique_list":
            return sorted(counts)
        if not counts:
            return None
        return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]

    return texts


_FINISH = {
    **{f: _numeric(f) for f in ("sum", "avg", "min", "max")},
    **{f: _textual(f) for f in ("first", "last", "most_frequent", "unique_list", "unique_count")},
}


def _trait(plan: Plan, path: ast.Path) -> ValueFn:
    key = _slot_key(plan, trait_selector(path))

    def trait(ctx: Context) -> Any:
        st = ctx.slots.get(key, _EMPTY)
        upto = after(st.entries, ctx.now)
        if upto:
            return st.entries[upto - 1].vals[0]
        pf = st.fold.paths[0] if st.fold and st.fold.paths else None
        return pf.raw_last[2] if pf and pf.raw_last else MISSING

    return trait


def _first_seen(plan: Plan) -> ValueFn:
    key = _slot_key(plan, ast.ANY_EVENT)

    def first_seen(ctx: Context) -> int | None:
        st = ctx.slots.get(key, _EMPTY)
        entry = st.entries[0].ts if st.entries and st.entries[0].ts <= ctx.now else None
        folded = st.fold.first_ts if st.fold else None
        present = [t for t in (folded, entry) if t is not None]
        return min(present) if present else None

    return first_seen


# --- timers -----------------------------------------------------------------------------------


def _earliest(fns: list[WakeFn]) -> WakeFn:
    """The earliest of several timers (None when none is set)."""
    if not fns:
        return lambda ctx: None
    if len(fns) == 1:
        return fns[0]

    def earliest(ctx: Context) -> int | None:
        best = None
        for fn in fns:
            t = fn(ctx)
            if t is not None and (best is None or t < best):
                best = t
        return best

    return earliest


def _entry_wake(plan: Plan, key: str, offset: int, seq: bool = False) -> WakeFn:
    """The first ``entry.ts + offset`` after now, of slot (or sequence) ``key``."""
    cache_key = ("entry_wake", key, offset, seq)
    found: WakeFn | None = plan.compiled.get(cache_key)
    if found is not None:
        return found

    def entry_wake(ctx: Context) -> int | None:
        st = (ctx.seqs if seq else ctx.slots).get(key)
        if st is None:
            return None
        entries = st.entries
        i = bisect_right(entries, ctx.now - offset, key=_TS)
        return entries[i].ts + offset if i < len(entries) else None

    plan.compiled[cache_key] = entry_wake
    return entry_wake


def _cond_wake(plan: Plan, c: ast.Condition) -> WakeFn:
    unique: dict[int, WakeFn] = {id(w): w for w in _wakes(plan, c)}  # shared entry timers once
    return _earliest(list(unique.values()))


def _wakes(plan: Plan, c: ast.Condition) -> list[WakeFn]:
    if isinstance(c, ast.And | ast.Or):
        return [w for item in c.items for w in _wakes(plan, item)]
    if isinstance(c, ast.Not):
        return _wakes(plan, c.item)
    if isinstance(c, ast.Compare | ast.Exists):
        return _value_wakes(plan, c.left if isinstance(c, ast.Compare) else c.value)
    if isinstance(c, ast.TimeIn):
        return [*_value_wakes(plan, c.value), _time_in_wake(plan, c)]
    if isinstance(c, ast.Anonymous):
        return [_entry_wake(plan, _slot_key(plan, IDENTIFIED), 0)]
    if isinstance(c, ast.Periodic):
        return [_compiled(plan, c, _periodic_wake)]
    if isinstance(c, ast.Sequence):
        return [_entry_wake(plan, _seq_key(plan, c), 0, seq=True), _absent_wake(plan, c)]
    return []


def _value_wake(plan: Plan, v: ast.Value) -> WakeFn:
    return _earliest(_value_wakes(plan, v))


def _value_wakes(plan: Plan, v: ast.Value) -> list[WakeFn]:
    if isinstance(v, ast.Aggregate):
        key = _slot_key(plan, v.selector)
        offsets = sorted({d for d in (0, v.window.near_ms, v.window.far_ms) if d is not None})
        return [_entry_wake(plan, key, d) for d in offsets]
    if isinstance(v, ast.TraitRef):
        return [_entry_wake(plan, _slot_key(plan, trait_selector(v.path)), 0)]
    if isinstance(v, ast.FirstSeen):
        return [_entry_wake(plan, _slot_key(plan, ast.ANY_EVENT), 0)]
    return []


def _time_in_wake(plan: Plan, c: ast.TimeIn) -> WakeFn:
    time_of = _time_value(plan, c.value)
    offsets = [o for o in (c.window.near_ms, c.window.far_ms) if o is not None]

    def time_in_wake(ctx: Context) -> int | None:
        t = time_of(ctx)
        if t is None:
            return None
        found = [w for o in offsets if (w := _ceil_after(t + o, ctx.now)) is not None]
        return min(found) if found else None

    return time_in_wake


def _absent_wake(plan: Plan, c: ast.Sequence) -> WakeFn:
    key = _seq_key(plan, c)
    within = c.absent.within_ms if c.absent is not None else None

    def absent_wake(ctx: Context) -> int | None:
        if within is None:
            return None
        fold = _seq_fold(c, ctx.seqs.get(key, _NO_SEQ), ctx.now)
        anchor = fold.last[-1]
        if anchor is not None and not fold.hit and anchor + within > ctx.now:
            return anchor + within
        return None

    return absent_wake


def _ceil_after(t: float, now: int) -> int | None:
    ms = int(t) if t == int(t) else int(t) + 1
    return ms if ms > now else None


# --- sequences --------------------------------------------------------------------------------


def new_seq_fold(c: ast.Sequence) -> SeqFold:
    return SeqFold([None] * len(c.steps), False)


def replay(c: ast.Sequence, fold: SeqFold, entries: list[Entry]) -> None:
    """Advance the sequence machine over ``entries`` (sorted), one timestamp group at a time."""
    i = 0
    while i < len(entries):
        ts, mask = entries[i].ts, 0
        while i < len(entries) and entries[i].ts == ts:
            mask |= entries[i].vals[0]
            i += 1
        step(c, fold, ts, mask)


def step(c: ast.Sequence, fold: SeqFold, ts: int, mask: int) -> None:
    k = len(c.steps)
    anchor = fold.last[-1]
    if c.absent is not None and mask >> k & 1 and anchor is not None:
        w = c.absent.within_ms
        if ts > anchor and (w is None or ts <= anchor + w):
            fold.hit = True
    new = list(fold.last)
    for idx, st in enumerate(c.steps):
        if not mask >> idx & 1:
            continue
        if idx == 0:
            new[0] = ts
            continue
        prev = fold.last[idx - 1]
        if prev is not None and (st.within_ms is None or ts - prev <= st.within_ms):
            new[idx] = ts
    if new[-1] != anchor:
        fold.hit = False
    fold.last = new
