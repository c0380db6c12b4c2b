from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segflow.identity import (
    Identifier,
    IdentityConfigError,
    IdentityRules,
    MemoryGraph,
    extract_identifiers,
    resolve,
    violation,
)
from segflow.spec import Event

NO_LIMITS = IdentityRules(
    limits={}, default_limit=10_000, max_identifiers=10_000, max_merges=10_000
)

ID_TYPES = ("user_id", "email", "anonymous_id", "phone")
values = st.sampled_from(["a", "b", "c", "d", "e", "null", "", "0"])
identifier = st.builds(Identifier, st.sampled_from(ID_TYPES), values)
event_ids = st.lists(identifier, min_size=1, max_size=3, unique=True)
streams = st.lists(event_ids, min_size=1, max_size=25)


def run(stream: list[list[Identifier]], rules: IdentityRules) -> MemoryGraph:
    graph = MemoryGraph()
    for n, ids in enumerate(stream):
        usable = sorted(
            (i for i in ids if not rules.is_blocked(i.type, i.value)),
            key=lambda i: rules.priority(i.type),
        )
        graph.apply(resolve(usable, graph, rules, n), n, f"m{n}")
    return graph


def grouping(graph: MemoryGraph) -> frozenset[frozenset[Identifier]]:
    return frozenset(frozenset(ids) for ids in graph.members.values())


def components(
    stream: list[list[Identifier]], rules: IdentityRules
) -> frozenset[frozenset[Identifier]]:
    parent: dict[Identifier, Identifier] = {}

    def find(x: Identifier) -> Identifier:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for ids in stream:
        usable = [i for i in ids if not rules.is_blocked(i.type, i.value)]
        for a in usable:
            find(a)
        for a, b in itertools.pairwise(usable):
            parent[find(a)] = find(b)
    groups: dict[Identifier, set[Identifier]] = {}
    for x in parent:
        groups.setdefault(find(x), set()).add(x)
    return frozenset(frozenset(g) for g in groups.values())


@settings(max_examples=150, deadline=None)
@given(streams, st.randoms(use_true_random=False))
def test_without_limits_grouping_is_independent_of_order(
    stream: list[list[Identifier]], rnd: object
) -> None:
    shuffled = list(stream)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    expected = components(stream, NO_LIMITS)
    assert grouping(run(stream, NO_LIMITS)) == expected
    assert grouping(run(shuffled, NO_LIMITS)) == expected


limit_rules = st.builds(
    lambda u, o, cap: IdentityRules(
        limits={"user_id": msgspec.convert({"max_values": u}, type=_limit_type())},
        default_limit=o,
        max_identifiers=cap,
    ),
    st.integers(1, 2),
    st.integers(1, 3),
    st.integers(2, 6),
)


def _limit_type() -> type:
    from segflow.identity import TypeLimit

    return TypeLimit


@settings(max_examples=150, deadline=None)
@given(streams, limit_rules)
def test_limits_are_never_exceeded_and_blocked_values_never_link(
    stream: list[list[Identifier]], rules: IdentityRules
) -> None:
    graph = run(stream, rules)
    for ids in graph.members.values():
        assert violation(ids, rules, 10**9) is None
        assert not any(rules.is_blocked(i.type, i.value) for i in ids)
    owned = [i for ids in graph.members.values() for i in ids]
    assert len(owned) == len(set(owned))  # one profile per identifier
    assert set(graph.owners) == set(owned)


@settings(max_examples=75, deadline=None)
@given(streams, limit_rules)
def test_replay_gives_the_same_result(stream: list[list[Identifier]], rules: IdentityRules) -> None:
    first, second = run(stream, rules), run(stream, rules)
    assert first.members == second.members and first.owners == second.owners


def test_two_users_one_device_keeps_them_apart() -> None:
    rules = IdentityRules()
    graph = MemoryGraph()
    ipad = Identifier("anonymous_id", "ipad")
    p1 = graph.apply(resolve([Identifier("user_id", "alice"), ipad], graph, rules, 1), 1, "m1")
    res = resolve([Identifier("user_id", "bob"), ipad], graph, rules, 2)
    assert res.profile_id is None and res.links == [Identifier("user_id", "bob")]
    assert [(c.identifier, c.owner, c.rule) for c in res.conflicts] == [
        ("anonymous_id:ipad", p1, "limit:user_id")
    ]


def test_merge_survivor_is_the_older_profile() -> None:
    graph = MemoryGraph()
    graph.add("new", 50, [(Identifier("user_id", "u"), 50)])
    graph.add("old", 10, [(Identifier("anonymous_id", "a"), 10)])
    res = resolve(
        [Identifier("user_id", "u"), Identifier("anonymous_id", "a")], graph, IdentityRules(), 60
    )
    assert res.profile_id == "old"
    assert [(m.survivor, m.absorbed, m.identifier) for m in res.merges] == [
        ("old", "new", "anonymous_id:a")
    ]


def test_windowed_limit_counts_only_recent_links() -> None:
    from segflow.identity import TypeLimit

    rules = IdentityRules(limits={"anonymous_id": TypeLimit(max_values=2, window_ms=100)})
    old = {Identifier("anonymous_id", "a"): 0, Identifier("anonymous_id", "b"): 0}
    assert violation({**old, Identifier("anonymous_id", "c"): 150}, rules, 150) is None
    assert (
        violation({**old, Identifier("anonymous_id", "c"): 50}, rules, 50) == "limit:anonymous_id"
    )


def test_merge_cap_blocks_merges() -> None:
    rules = IdentityRules(max_merges=0)
    graph = MemoryGraph()
    graph.add("p1", 1, [(Identifier("anonymous_id", "a"), 1)])
    graph.add("p2", 2, [(Identifier("anonymous_id", "b"), 2)])
    res = resolve(
        [Identifier("anonymous_id", "a"), Identifier("anonymous_id", "b")], graph, rules, 3
    )
    assert res.merges == [] and res.conflicts[0].rule == "max_merges"


def test_bad_rules_are_refused() -> None:
    with pytest.raises(IdentityConfigError):
        msgspec.convert({"limits": {"email": {"max_values": 0}}}, IdentityRules)


def test_extract_reads_email_context_and_skips_blocked() -> None:
    e = Event(
        type="track",
        message_id="m",
        source_id="s",
        timestamp_ms=1,
        received_at_ms=1,
        anonymous_id="undefined",
        user_id=" u7 ",
        context={"traits": {"email": "X@Y.Z"}},
    )
    assert [str(i) for i in extract_identifiers(e, IdentityRules())] == [
        "user_id:u7",
        "email:x@y.z",
    ]


def test_alias_links_previous_id() -> None:
    e = Event(
        type="alias",
        message_id="m",
        source_id="s",
        timestamp_ms=1,
        received_at_ms=1,
        user_id="u",
        previous_id="anon-1",
    )
    assert [str(i) for i in extract_identifiers(e, IdentityRules())] == [
        "user_id:u",
        "anonymous_id:anon-1",
    ]
