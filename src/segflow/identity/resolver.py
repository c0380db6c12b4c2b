"""The resolver: which profile an event belongs to, which profiles it merges, what it refuses.

Pure: it reads the current identity graph through :class:`GraphView` and returns a
:class:`Resolution` that the processor applies. Identifiers are visited strongest first
(the rules' priority); the strongest one chooses the event's profile (its owner, or a new
profile), and each weaker identifier joins it only when the merge rules allow it. A refused
identifier stays with its own profile and the refusal is recorded as a :class:`Conflict`.

>>> from segflow.identity.rules import IdentityRules
>>> graph = MemoryGraph()
>>> graph.add("p1", 10, [(Identifier("anonymous_id", "a1"), 10), (Identifier("user_id", "u1"), 10)])
>>> r = resolve([Identifier("user_id", "u2"), Identifier("anonymous_id", "a1")], graph, IdentityRules(), 20)
>>> r.profile_id is None, [str(i) for i in r.links], r.conflicts[0].rule
(True, ['user_id:u2'], 'limit:user_id')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import msgspec

from segflow.identity.identifiers import Identifier
from segflow.identity.rules import IdentityRules


class GraphView(Protocol):
    """What the resolver reads of the identity graph (the processor's state, or a test graph)."""

    def owner(self, ident: Identifier) -> str | None:
        """The (surviving) profile holding ``ident``, None when unknown."""
        ...

    def identities(self, profile_id: str) -> Mapping[Identifier, int]:
        """The profile's identifiers with the time (ms) each was linked."""
        ...

    def age(self, profile_id: str) -> tuple[int, str]:
        """Sort key of age: ``(created_ms, profile_id)``; the smallest survives a merge."""
        ...

    def merge_count(self, profile_id: str) -> int: ...

    def excluded(self, profile_id: str) -> frozenset[Identifier]:
        """Identifiers this profile must never join (set by a split)."""
        ...


class Merge(msgspec.Struct, frozen=True):
    """``absorbed`` joins ``survivor`` because the event carried ``identifier``; ``rule`` says why."""

    survivor: str
    absorbed: str
    identifier: str
    rule: str


class Conflict(msgspec.Struct, frozen=True):
    """``identifier`` (owned by ``owner``, None when new) was kept out; ``rule`` is the one hit."""

    identifier: str
    owner: str | None
    rule: str


class Resolution(msgspec.Struct, frozen=True):
    """The event's profile (None: create one), identifiers to link to it, merges and conflicts."""

    profile_id: str | None
    links: list[Identifier]
    merges: list[Merge]
    conflicts: list[Conflict]


def violation(
    ids: Mapping[Identifier, int], rules: IdentityRules, now_ms: int, merges: int = 0
) -> str | None:
    """The first rule the identifier set ``ids`` breaks, or None.

    >>> violation({Identifier("user_id", "a"): 0, Identifier("user_id", "b"): 0}, IdentityRules(), 0)
    'limit:user_id'
    """
    if len(ids) > rules.max_identifiers:
        return "max_identifiers"
    if merges > rules.max_merges:
        return "max_merges"
    counts: dict[str, int] = {}
    for ident, linked_ms in ids.items():
        limit = rules.limit_for(ident.type)
        if limit.window_ms is not None and linked_ms <= now_ms - limit.window_ms:
            continue
        counts[ident.type] = counts.get(ident.type, 0) + 1
        if counts[ident.type] > limit.max_values:
            return f"limit:{ident.type}"
    return None


class _Target:
    """The profile being assembled while the resolver walks the identifiers."""

    def __init__(self, seed: str | None, ids: dict[Identifier, int], merges: int) -> None:
        self.seed = seed
        self.pids: dict[str, Identifier | None] = {} if seed is None else {seed: None}
        self.ids = ids
        self.merges = merges
        self.excluded: set[Identifier] = set()


def _join_rule(
    target: _Target,
    ident: Identifier,
    owner: str,
    graph: GraphView,
    rules: IdentityRules,
    now_ms: int,
) -> tuple[str | None, dict[Identifier, int], int]:
    other = graph.identities(owner)
    union = {**other, **target.ids}
    merges = target.merges + graph.merge_count(owner) + (1 if target.pids else 0)
    if target.excluded & other.keys() or graph.excluded(owner) & target.ids.keys():
        return "split", union, merges
    return violation(union, rules, now_ms, merges), union, merges


def resolve(
    idents: Sequence[Identifier], graph: GraphView, rules: IdentityRules, now_ms: int
) -> Resolution:
    """Resolve an event's identifiers (strongest first) against ``graph`` at event time ``now_ms``."""
    if not idents:
        return Resolution(None, [], [], [])
    seed_owner = graph.owner(idents[0])
    if seed_owner is not None and all(graph.owner(i) == seed_owner for i in idents[1:]):
        return Resolution(seed_owner, [], [], [])  # the common case: a known person again
    if seed_owner is None:
        target = _Target(None, {idents[0]: now_ms}, 0)
        links = [idents[0]]
    else:
        target = _Target(
            seed_owner, dict(graph.identities(seed_owner)), graph.merge_count(seed_owner)
        )
        target.excluded |= graph.excluded(seed_owner)
        links = []
    conflicts: list[Conflict] = []
    for ident in idents[1:]:
        owner = graph.owner(ident)
        if owner is not None and owner in target.pids:
            continue
        if owner is None:
            if ident in target.ids:
                continue
            added = {**target.ids, ident: now_ms}
            rule = violation(added, rules, now_ms, target.merges)
            if rule is None and ident not in target.excluded:
                target.ids = added
                links.append(ident)
            else:
                conflicts.append(Conflict(str(ident), None, rule or "split"))
            continue
        rule, union, merges = _join_rule(target, ident, owner, graph, rules, now_ms)
        if rule is not None:
            conflicts.append(Conflict(str(ident), owner, rule))
            continue
        target.pids[owner] = ident
        target.ids, target.merges = union, merges
        target.excluded |= graph.excluded(owner)
    return _finish(target, links, conflicts, graph)


def _finish(
    target: _Target, links: list[Identifier], conflicts: list[Conflict], graph: GraphView
) -> Resolution:
    if not target.pids:
        return Resolution(None, links, [], conflicts)
    survivor = min(target.pids, key=graph.age)
    join_of_survivor = target.pids[survivor]
    merges = []
    for pid, joined_by in target.pids.items():
        if pid == survivor:
            continue
        ident = joined_by if joined_by is not None else join_of_survivor
        merges.append(Merge(survivor, pid, str(ident), "shared_identifier"))
    return Resolution(survivor, links, merges, conflicts)


class MemoryGraph:
    """A dict-backed :class:`GraphView` that also applies resolutions (tests, property tests).

    >>> g = MemoryGraph()
    >>> pid = g.apply(resolve([Identifier("user_id", "u")], g, IdentityRules(), 5), 5, "m1")
    >>> g.owner(Identifier("user_id", "u")) == pid
    True
    """

    def __init__(self) -> None:
        self.owners: dict[Identifier, str] = {}
        self.members: dict[str, dict[Identifier, int]] = {}
        self.created: dict[str, int] = {}
        self.merges: dict[str, int] = {}
        self.alias: dict[str, str] = {}
        self._next = 0

    def add(self, pid: str, created_ms: int, ids: Iterable[tuple[Identifier, int]]) -> None:
        self.created[pid] = created_ms
        self.merges.setdefault(pid, 0)
        self.members.setdefault(pid, {})
        for ident, linked_ms in ids:
            self.owners[ident] = pid
            self.members[pid][ident] = linked_ms

    def owner(self, ident: Identifier) -> str | None:
        return self.owners.get(ident)

    def identities(self, profile_id: str) -> Mapping[Identifier, int]:
        return self.members[profile_id]

    def age(self, profile_id: str) -> tuple[int, str]:
        return (self.created[profile_id], profile_id)

    def merge_count(self, profile_id: str) -> int:
        return self.merges[profile_id]

    def excluded(self, profile_id: str) -> frozenset[Identifier]:
        return frozenset()

    def apply(self, res: Resolution, now_ms: int, message_id: str) -> str | None:
        """Apply ``res``; returns the event's profile id (None when it had no identifier)."""
        pid = res.profile_id
        if pid is None:
            if not res.links:
                return None
            self._next += 1
            pid = f"p{self._next:06d}"
            self.add(pid, now_ms, [])
        for m in res.merges:
            self.merges[pid] += 1 + self.merges.pop(m.absorbed)
            for ident, linked_ms in self.members.pop(m.absorbed).items():
                self.owners[ident] = pid
                self.members[pid].setdefault(ident, linked_ms)
            self.alias[m.absorbed] = pid
            del self.created[m.absorbed]
        self.add(pid, self.created[pid], [(i, now_ms) for i in res.links])
        return pid
