"""Evaluate conditions and values on one profile's state at ``now_ms``, and their timers.

Used by :class:`segflow.rules.evaluator.SegmentProgram`; the SQL compiler implements the same
meaning (docs/segments.md, "Semantics").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from segflow.rules import ast
from segflow.rules.program import IDENTIFIED, Plan, SlotDef, slot_key, trait_selector
from segflow.rules.state import Entry, ProfileState, SeqFold, SeqState, SlotState, after
from segflow.rules.values import MISSING, compare, exists, to_num, to_text, to_time_ms

_EMPTY = SlotState()


class Scores(Protocol):
    @property
    def scores(self) -> Mapping[str, float]: ...

    @property
    def clusters(self) -> Mapping[str, str]: ...


class Context:
    """One evaluation of a profile at ``now_ms`` (members of earlier segments in ``results``)."""

    def __init__(self, plan: Plan, state: ProfileState, profile: Scores, now_ms: int) -> None:
        self.plan = plan
        self.state = state
        self.profile = profile
        self.now = now_ms
        self.results = state.results

    # --- slots ----------------------------------------------------------------------------
    def slot(self, sel: ast.Selector) -> tuple[SlotDef, SlotState]:
        key = self.plan.keys.get(id(sel)) or slot_key(sel)
        return self.plan.slots[key], self.state.slots.get(key, _EMPTY)

    def window_items(self, st: SlotState, window: ast.Window) -> list[Entry]:
        hi = after(st.entries, self.now - window.near_ms)
        lo = 0 if window.far_ms is None else after(st.entries, self.now - window.far_ms)
        return st.entries[lo:hi]

    # --- values ---------------------------------------------------------------------------
    def value(self, v: ast.Value) -> Any:
        if isinstance(v, ast.Aggregate):
            return self.aggregate(v)
        if isinstance(v, ast.TraitRef):
            return self.trait(v.path)
        if isinstance(v, ast.FirstSeen):
            return self.first_seen()
        if isinstance(v, ast.ScoreRef):
            return self.profile.scores.get(v.model)
        if isinstance(v, ast.ClusterRef):
            return self.profile.clusters.get(v.model)
        raise TypeError(f"unresolved value {v!r}")

    def aggregate(self, agg: ast.Aggregate) -> Any:
        sd, st = self.slot(agg.selector)
        items = self.window_items(st, agg.window)
        folded = st.fold if agg.window.far_ms is None else None
        if agg.func == "count":
            return len(items) + (folded.count if folded else 0)
        i = sd.paths.index(agg.path) if agg.path is not None else 0
        pf = folded.paths[i] if folded and i < len(folded.paths) else None
        if agg.func in ("sum", "avg", "min", "max"):
            nums = [n for n in (to_num(e.vals[i]) for e in items) if n is not None]
            total = (pf.sum if pf else 0.0) + sum(nums)
            n = (pf.n if pf else 0) + len(nums)
            if agg.func == "sum":
                return total
            if agg.func == "avg":
                return total / n if n else None
            extremes = nums + [x for x in ((pf.min, pf.max) if pf else ()) if x is not None]
            if not extremes:
                return None
            return min(extremes) if agg.func == "min" else max(extremes)
        texts = [(e.ts, e.mid, t) for e in items if (t := to_text(e.vals[i])) is not None]
        if agg.func in ("first", "last"):
            cands = texts + [x for x in ((pf.first, pf.last) if pf else ()) if x is not None]
            if not cands:
                return None
            pick = min if agg.func == "first" else max
            return pick(cands, key=lambda x: (x[0], x[1]))[2]
        counts: dict[str, int] = dict(pf.counts or {}) if pf else {}
        for _, _, t in texts:
            counts[t] = counts.get(t, 0) + 1
        if agg.func == "unique_count":
            return len(counts)
        if agg.func == "unique_list":
            return sorted(counts)
        if not counts:
            return None
        return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]

    def trait(self, path: ast.Path) -> Any:
        _, st = self.slot(trait_selector(path))
        items = self.window_items(st, ast.ALL_TIME)
        if items:
            return items[-1].vals[0]
        pf = st.fold.paths[0] if st.fold and st.fold.paths else None
        return pf.raw_last[2] if pf and pf.raw_last else MISSING

    def first_seen(self) -> int | None:
        _, st = self.slot(ast.ANY_EVENT)
        items = self.window_items(st, ast.ALL_TIME)
        firsts = [
            t for t in ((st.fold.first_ts if st.fold else None), items[0].ts if items else None)
        ]
        present = [t for t in firsts if t is not None]
        return min(present) if present else None

    # --- conditions -------------------------------------------------------------------------
    def cond(self, c: ast.Condition) -> bool:
        if isinstance(c, ast.And):
            return all(self.cond(i) for i in c.items)
        if isinstance(c, ast.Or):
            return any(self.cond(i) for i in c.items)
        if isinstance(c, ast.Not):
            return not self.cond(c.item)
        if isinstance(c, ast.Const):
            return c.value
        if isinstance(c, ast.Compare):
            value = self.value(c.left)
            return value is not MISSING and value is not None and compare(value, c.op, c.right)
        if isinstance(c, ast.Exists):
            return exists(self.value(c.value))
        if isinstance(c, ast.TimeIn):
            t = self.time_value(c.value)
            return t is not None and c.window.contains(t, self.now)  # type: ignore[arg-type]
        if isinstance(c, ast.InSegment):
            return self.results.get(c.name, False)
        if isinstance(c, ast.Anonymous):
            _, st = self.slot(IDENTIFIED)
            return not self.window_items(st, ast.ALL_TIME) and not (st.fold and st.fold.count)
        if isinstance(c, ast.Periodic):
            return self.periodic_hits(c) >= c.min_buckets
        return self.sequence(c)

    def time_value(self, v: ast.Value) -> float | None:
        if isinstance(v, ast.FirstSeen):
            first = self.first_seen()
            return None if first is None else float(first)
        raw = self.value(v)
        return None if raw is MISSING else to_time_ms(raw)

    def periodic_hits(self, c: ast.Periodic) -> int:
        _, st = self.slot(c.selector)
        hits, hi = 0, after(st.entries, self.now)
        for k in range(c.buckets):
            lo = after(st.entries, self.now - (k + 1) * c.period_ms)
            hits += lo < hi
            hi = lo
        return hits

    def seq_state(self, c: ast.Sequence) -> SeqFold:
        seq = self.state.seqs.get(self.plan.keys.get(id(c)) or repr(c), SeqState())
        fold = SeqFold(list(seq.fold.last), seq.fold.hit) if seq.fold else new_seq_fold(c)
        upto = after(seq.entries, self.now)
        replay(c, fold, seq.entries[:upto])
        return fold

    def sequence(self, c: ast.Sequence) -> bool:
        fold = self.seq_state(c)
        anchor = fold.last[-1]
        if anchor is None:
            return False
        if c.absent is None:
            return True
        w = c.absent.within_ms
        return not fold.hit and (w is None or anchor + w <= self.now)

    # --- timers -----------------------------------------------------------------------------
    def wake(self, c: ast.Condition) -> int | None:
        """Earliest time > now at which time alone may change ``c`` (None = never)."""
        return _min(self._wakes(c))

    def _wakes(self, c: ast.Condition) -> Iterable[int | None]:
        if isinstance(c, ast.And | ast.Or):
            for item in c.items:
                yield from self._wakes(item)
        elif isinstance(c, ast.Not):
            yield from self._wakes(c.item)
        elif isinstance(c, ast.Compare | ast.Exists):
            yield self.value_wake(c.left if isinstance(c, ast.Compare) else c.value)
        elif isinstance(c, ast.TimeIn):
            yield self.value_wake(c.value)
            t = self.time_value(c.value)
            if t is not None:
                for offset in (c.window.near_ms, c.window.far_ms):
                    if offset is not None:
                        yield _ceil_after(t + offset, self.now)
        elif isinstance(c, ast.Anonymous):
            yield self.entry_wake(self.slot(IDENTIFIED)[1], 0)
        elif isinstance(c, ast.Periodic):
            st = self.slot(c.selector)[1]
            for k in range(c.buckets + 1):
                yield self.entry_wake(st, k * c.period_ms)
        elif isinstance(c, ast.Sequence):
            yield from self.sequence_wakes(c)

    def value_wake(self, v: ast.Value) -> int | None:
        if isinstance(v, ast.Aggregate):
            st = self.slot(v.selector)[1]
            offsets = (0, v.window.near_ms, v.window.far_ms)
            return _min(self.entry_wake(st, d) for d in offsets if d is not None)
        if isinstance(v, ast.TraitRef):
            return self.entry_wake(self.slot(trait_selector(v.path))[1], 0)
        if isinstance(v, ast.FirstSeen):
            return self.entry_wake(self.slot(ast.ANY_EVENT)[1], 0)
        return None

    def entry_wake(self, st: SlotState | SeqState, offset_ms: int) -> int | None:
        """The first ``entry.ts + offset`` after now."""
        i = after(st.entries, self.now - offset_ms)
        return st.entries[i].ts + offset_ms if i < len(st.entries) else None

    def sequence_wakes(self, c: ast.Sequence) -> Iterable[int | None]:
        yield self.entry_wake(
            self.state.seqs.get(self.plan.keys.get(id(c)) or repr(c), SeqState()), 0
        )
        if c.absent is not None and c.absent.within_ms is not None:
            fold = self.seq_state(c)
            anchor = fold.last[-1]
            if anchor is not None and not fold.hit and anchor + c.absent.within_ms > self.now:
                yield anchor + c.absent.within_ms


def _ceil_after(t: float, now: int) -> int | None:
    ms = int(t) if t == int(t) else int(t) + 1
    return ms if ms > now else None


def _min(items: Iterable[int | None]) -> int | None:
    present = [i for i in items if i is not None]
    return min(present) if present else None


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
