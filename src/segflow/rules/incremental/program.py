"""The incremental evaluator: :class:`SegmentProgram` implements segflow.stream's ``SegmentEvaluator``.

>>> from segflow.spec.events import Event
>>> prog = compile_segments({"buyers": 'did "Order Completed" in last 1 hour'})
>>> ev = Event(type="track", message_id="m1", source_id="s", timestamp_ms=1_000,
...            received_at_ms=1_000, user_id="u1", event="Order Completed")
>>> res = prog.on_event(StaticProfile("p1"), None, ev, now_ms=1_000)
>>> sorted(res.members), res.next_wakeup_ms
(['buyers'], 3601000)
>>> sorted(prog.on_time(StaticProfile("p1"), res.state, now_ms=3_601_000).members)
[]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

from segflow.rules import ast
from segflow.rules.incremental.executor import (
    Context,
    ProfileView,
    compile_condition,
    compile_value,
    new_seq_fold,
    replay,
)
from segflow.rules.incremental.plan import DEFAULT_LATE_MS, Plan, SeqDef, SlotDef, build_plan
from segflow.rules.incremental.state import (
    Entry,
    ProfileState,
    SeqFold,
    SeqState,
    SlotState,
    decode,
    encode,
    fold,
    insert,
    merge_fold,
    prune,
)
from segflow.rules.passes import conditions
from segflow.rules.render import render
from segflow.rules.values import MISSING, get_path, index_key, selector_matches
from segflow.spec.events import Event


@dataclass(frozen=True)
class StaticProfile:
    """A minimal ProfileView for tests, previews and replays."""

    profile_id: str
    user_id: str | None = None
    traits: Mapping[str, Any] = field(default_factory=dict)
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    clusters: Mapping[str, str] = field(default_factory=dict)
    cluster_ids: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalResult:
    state: bytes | None
    members: frozenset[str]
    computed_traits: Mapping[str, Any]
    next_wakeup_ms: int | None


class SegmentProgram:
    """All segments and computed traits, compiled together (cycles and unknown names refused)."""

    def __init__(
        self, plan: Plan, definitions: Mapping[str, str], traits: Mapping[str, str]
    ) -> None:
        self.plan = plan
        self.definitions = dict(definitions)
        self.traits = dict(traits)
        self._rules = [(n, *compile_condition(plan, plan.segments[n])) for n in plan.order]
        self._trait_fns = [(n, *compile_value(plan, agg)) for n, agg in plan.traits.items()]
        self._candidates: dict[str | None, tuple[list[SlotDef], list[_SeqCheck]]] = {}
        self._indexed = {n for n in plan.by_name if n} | {
            n
            for qd in plan.seqs.values()
            for s in (*qd.seq.steps, qd.seq.absent)
            if s is not None and (n := index_key(s.selector))
        }

    # --- the SegmentEvaluator protocol --------------------------------------------------------
    def on_event(
        self, profile: ProfileView, state: bytes | None, event: Event, now_ms: int
    ) -> EvalResult:
        st = self._load(state)
        touched = self._record(st, event, now_ms)
        return self._evaluate(profile, st, now_ms, touched)

    def on_events(
        self, profile: ProfileView, state: bytes | None, events: Iterable[Event], now_ms: int
    ) -> EvalResult:
        """Record ``events`` (one profile's, in order), then evaluate once at ``now_ms``.

        The result is the one :meth:`on_event` gives for the last of them when called for
        each in turn (members, computed traits, timer; the state is equivalent): a rule's
        cached result and timer stay valid while nothing it reads changes.

        >>> prog = compile_segments({"two": 'did "A" at least 2 times'})
        >>> evs = [Event(type="track", message_id=f"m{i}", source_id="s", timestamp_ms=i,
        ...              received_at_ms=i, event="A") for i in (1, 2)]
        >>> sorted(prog.on_events(StaticProfile("p"), None, evs, now_ms=5).members)
        ['two']
        """
        st = self._load(state)
        touched: set[str] = set()
        for event in events:
            touched |= self._record(st, event, now_ms)
        return self._evaluate(profile, st, now_ms, touched)

    def on_time(self, profile: ProfileView, state: bytes | None, now_ms: int) -> EvalResult:
        return self._evaluate(profile, self._load(state), now_ms, set())

    def can_merge(self, survivor: bytes | None, absorbed: bytes | None) -> bool:
        """Whether :meth:`merge_states` is exact for these two states.

        Event slots always merge exactly (entries interleave, folds are order-insensitive). A
        sequence's folded state machine cannot take events older than what it has folded: the
        merge is exact only when at most one side has a fold and every entry of the other side
        is later than what that fold holds. Otherwise the caller replays the merged history.

        >>> prog = compile_segments({"s": 'did "A" then "B"'})
        >>> a = prog.on_event(StaticProfile("a"), None, Event(type="track", message_id="1",
        ...     source_id="s", timestamp_ms=0, received_at_ms=0, event="A"), 7_200_000).state
        >>> prog.can_merge(a, None), prog.can_merge(a, a)
        (True, False)
        """
        if not survivor or not absorbed:
            return True
        return mergeable(self._decode(survivor), self._decode(absorbed))

    def merge_states(self, survivor: bytes | None, absorbed: bytes | None) -> bytes | None:
        """Merge two profiles' states: exact when :meth:`can_merge` says so; otherwise a
        sequence keeps one side's fold (the processor replays the merged timeline instead)."""
        if not survivor or not absorbed:
            return survivor or absorbed
        return encode(merge(self.plan, self._decode(survivor), self._decode(absorbed)))

    def explain(
        self, profile: ProfileView, state: bytes | None, segment: str, now_ms: int
    ) -> list[Explanation]:
        """Every condition of ``segment`` for this profile at ``now_ms``: holds?, value, event times.

        >>> prog = compile_segments({"s": 'did "A" in last 1 hour and score churn > 0.5'})
        >>> [(e.condition, e.holds) for e in prog.explain(StaticProfile("p"), None, "s", 0)][1:]
        [('count("A" in last 1 hour) >= 1', False), ('score churn > 0.5', False)]
        """
        st = self._load(state)
        ctx = Context(self.plan, st, profile, now_ms)
        for name in self.plan.order:
            st.results[name] = ctx.cond(self.plan.segments[name])
        return [_explain(ctx, node) for node in conditions(self.plan.segments[segment])]

    # --- internals --------------------------------------------------------------------------
    def _decode(self, state: bytes | None) -> ProfileState:
        """A state as written by this evaluator, or by the compiled kernel (its own format)."""
        if state and state[:1] == b"\xff":
            from segflow.rules.incremental.kernel import format, layout

            found = self.plan.compiled.get(("kernel_layout",))
            if found is None:
                found = self.plan.compiled[("kernel_layout",)] = layout.build_layout(
                    self.plan, check=False
                )
            return format.decode(state, found)
        return decode(state)

    def _load(self, state: bytes | None) -> ProfileState:
        st = self._decode(state)
        if st.fingerprint != self.plan.fingerprint:
            st.fingerprint = self.plan.fingerprint
            st.results, st.wakes = {}, {}
            st.slots = {k: v for k, v in st.slots.items() if k in self.plan.slots}
            st.seqs = {k: v for k, v in st.seqs.items() if k in self.plan.seqs}
        return st

    def _record(self, st: ProfileState, event: Event, now_ms: int) -> set[str]:
        touched: set[str] = set()
        slots, seqs = self._candidates_for(event.event if event.type == "track" else None)
        for sd in slots:
            if selector_matches(sd.selector, event):
                slot = st.slots.setdefault(sd.key, SlotState())
                insert(slot, Entry(event.timestamp_ms, event.message_id, _values(sd, event)))
                _compact(slot, sd, now_ms)
                touched.add(sd.key)
        for key, qd, steps in seqs:
            mask = sum(1 << i for i, s in enumerate(steps) if selector_matches(s, event))
            if mask:
                seq = st.seqs.setdefault(key, SeqState())
                insert(seq, Entry(event.timestamp_ms, event.message_id, (mask,)))
                _compact_seq(seq, qd.seq, now_ms - qd.horizon_ms)
                touched.add(key)
        return touched

    def _candidates_for(self, name: str | None) -> tuple[list[SlotDef], list[_SeqCheck]]:
        """The slots and sequences an event of this track name (None: not a track) may match:
        indexed by name, so an event touches only what can read it."""
        if name not in self._indexed:
            name = None  # read by no rule: what matches any event only (a bounded cache)
        found = self._candidates.get(name)
        if found is None:
            by_name = self.plan.by_name
            slots = by_name.get(None, []) + (by_name.get(name, []) if name else [])
            seqs = []
            for key, qd in self.plan.seqs.items():
                steps = [s.selector for s in (*qd.seq.steps, qd.seq.absent) if s is not None]
                if any(index_key(s) in (None, name) for s in steps):
                    seqs.append((key, qd, steps))
            found = self._candidates[name] = (slots, seqs)
        return found

    def _evaluate(
        self, profile: ProfileView, st: ProfileState, now_ms: int, touched: set[str]
    ) -> EvalResult:
        ctx = Context(self.plan, st, profile, now_ms)
        plan, results, wakes_of = self.plan, st.results, st.wakes
        # a rule's timer changes only when its slots change or it comes due: those are
        # "moved"; rules re-evaluated for another reason (scores, a segment they refer to)
        # keep theirs
        moved = {name for name, wake in wakes_of.items() if wake <= now_ms} if wakes_of else set()
        for key in touched:
            moved |= plan.slot_rules.get(key, _NONE)
        if len(results) < len(plan.order):
            moved.update(name for name in plan.order if name not in results)
        dirty = moved | plan.profile_rules
        for name, holds, wake_of in self._rules:
            if name not in dirty:
                continue
            result = holds(ctx)
            if results.get(name) != result:
                dirty |= plan.dependents[name]
            results[name] = result
            if name not in moved:
                continue
            wake = wake_of(ctx)
            if wake is None:
                wakes_of.pop(name, None)
            else:
                wakes_of[name] = wake
        nxt = min(wakes_of.values()) if wakes_of else None
        traits = {}
        for name, value, wake_of in self._trait_fns:
            traits[name] = value(ctx)
            wake = wake_of(ctx)
            if wake is not None and (nxt is None or wake < nxt):
                nxt = wake
        members = frozenset(compress(results, results.values()))
        return EvalResult(encode(st), members, traits, nxt)


@dataclass(frozen=True)
class Explanation:
    """One condition of a rule: its text, whether it holds, its value and the events behind it."""

    condition: str
    holds: bool
    value: Any = None
    event_times_ms: tuple[int, ...] = ()


def _explain(ctx: Context, node: ast.Condition) -> Explanation:
    value: Any = None
    times: tuple[int, ...] = ()
    if isinstance(node, ast.Compare | ast.Exists):
        left = node.left if isinstance(node, ast.Compare) else node.value
        value = ctx.value(left)
        value = None if value is MISSING else value
        if isinstance(left, ast.Aggregate):
            _, slot = ctx.slot(left.selector)
            times = tuple(e.ts for e in ctx.window_items(slot, left.window))
    return Explanation(render(node), ctx.cond(node), value, times)


def _values(sd: SlotDef, event: Event) -> tuple[Any, ...]:
    source = event.traits if sd.selector.kind == "trait" else event.properties
    out = []
    for path in sd.paths:
        v = get_path(source, path)
        out.append(v if isinstance(v, str | int | float | bool | dict | list) else None)
    return tuple(out)


_NONE: frozenset[str] = frozenset()
_SeqCheck = tuple[str, SeqDef, list[ast.Selector]]


def _compact(slot: SlotState, sd: SlotDef, now_ms: int) -> None:
    if sd.fold:
        fold(slot, now_ms=now_ms, horizon_ms=sd.horizon_ms, npaths=len(sd.paths), counts=sd.counts)
    else:
        prune(slot, now_ms=now_ms, horizon_ms=sd.horizon_ms)


def _compact_seq(seq: SeqState, c: ast.Sequence, cut_ms: int) -> None:
    old = [e for e in seq.entries if e.ts <= cut_ms]
    if not old:
        return
    machine = seq.fold or new_seq_fold(c)
    replay(c, machine, old)
    upto = max(old[-1].ts, machine.upto if machine.upto is not None else old[-1].ts)
    seq.fold = SeqFold(machine.last, machine.hit, upto)
    del seq.entries[: len(old)]


_NO_SEQ = SeqState()


def mergeable(a: ProfileState, b: ProfileState) -> bool:
    """Whether merging two profiles' states is exact (see :meth:`SegmentProgram.can_merge`)."""
    return all(
        _seq_mergeable(a.seqs.get(key, _NO_SEQ), b.seqs.get(key, _NO_SEQ))
        for key in a.seqs.keys() & b.seqs.keys()
    )


def merge(plan: Plan, a: ProfileState, b: ProfileState) -> ProfileState:
    """Two profiles' states as one (see :meth:`SegmentProgram.merge_states`); its empty
    fingerprint makes the evaluator recompute every result and timer."""
    out = ProfileState(fingerprint="")
    for key in a.slots.keys() | b.slots.keys():
        sa, sb = a.slots.get(key, SlotState()), b.slots.get(key, SlotState())
        merged = SlotState(entries=list(sa.entries))
        for e in sb.entries:
            insert(merged, e)
        sd = plan.slots.get(key)
        merged.fold = merge_fold(sa.fold, sb.fold, bool(sd and sd.counts))
        out.slots[key] = merged
    for key in a.seqs.keys() | b.seqs.keys():
        qa, qb = a.seqs.get(key, SeqState()), b.seqs.get(key, SeqState())
        seq = SeqState(entries=list(qa.entries), fold=qa.fold or qb.fold)
        for e in qb.entries:
            insert(seq, e)
        out.seqs[key] = seq
    return out


def _seq_mergeable(a: SeqState, b: SeqState) -> bool:
    if a.fold is None and b.fold is None:
        return True
    if a.fold is not None and b.fold is not None:
        return False
    folded, other = (a, b) if a.fold is not None else (b, a)
    upto = folded.fold.upto if folded.fold is not None else None
    if not other.entries:
        return True
    return upto is not None and other.entries[0].ts > upto


def compile_segments(
    definitions: Mapping[str, str],
    traits: Mapping[str, str] | None = None,
    *,
    late_ms: int = DEFAULT_LATE_MS,
) -> SegmentProgram:
    """Compile segments (name -> rule) and computed traits (name -> expression) together.

    Raises :class:`RuleSyntaxError` with every error of every definition, or
    :class:`RuleCycleError` when segments refer to each other in a cycle.

    >>> compile_segments({"pro": 'trait plan = "pro"'}).plan.order
    ['pro']
    """
    traits = dict(traits or {})
    return SegmentProgram(build_plan(definitions, traits, late_ms), definitions, traits)
