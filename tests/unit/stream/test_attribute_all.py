"""The processor's inline identity paths give what its general paths give.

``EventHandler.attribute_all`` handles a returning person and a newcomer inline (identifier
keys formatted once, the newcomer's profile, owners and links written without looking the
owners up again); the identifier extractor has a path for the usual event; a merge decodes
the compiled kernel's states once. Each is held equal to the general path here, with real
components: the compiled rule kernel and RocksDB.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.state import changes_apart, dump_state, general_path

from segflow.clock import ManualClock
from segflow.identity import ExternalId, Identifier, IdentityRules, TypeLimit, resolve
from segflow.identity.identifiers import Extractor
from segflow.log.base import Record
from segflow.profiles import decode_profile, encode_profile
from segflow.rules import StaticProfile, compile_segments
from segflow.rules.incremental.kernel import AVAILABLE, compile_kernel, merge_checked
from segflow.spec import Event
from segflow.spec.changes import IdentityLinked
from segflow.stream import MemoryStateStore, Processor
from segflow.stream import handler as handler_module
from segflow.stream.keys import MergeRecord
from segflow.stream.outbox import decode_change
from segflow.stream.state.rocksdb import RocksStateStore

T0 = 1_700_000_000_000
RULES = {
    "buyers": 'did "Order Completed"',
    "pros": 'trait plan = "pro"',
    "view_then_buy": 'did "Viewed" then "Order Completed"',
    "active": 'did "Viewed" at least 2 times in last 7 days',
}


class ListLog:
    """One partition holding ``events`` in order."""

    partitions = 1

    def __init__(self, events: list[Event]) -> None:
        self.records = [Record(0, i, e) for i, e in enumerate(events)]

    def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        return self.records[offset : offset + max_records]


def traffic(n: int, people: int, seed: int) -> list[Event]:
    """Seeded traffic like the processor benchmark's (anonymous devices, logins that link and
    merge them, server-side events by user id, tickets by email), with consent changes,
    blocked values, padded and upper-case emails."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        p = rnd.randrange(people)
        device = rnd.choice((f"d{p}-{rnd.randrange(2)}", f" d{p}-0 ", "null"))
        ts = T0 + i * 1_000
        common: dict[str, Any] = {
            "message_id": f"m{i}",
            "source_id": "s",
            "timestamp_ms": ts,
            "received_at_ms": ts,
        }
        r = rnd.random()
        if r < 0.6:
            out.append(
                Event(
                    type="track",
                    anonymous_id=device,
                    event=rnd.choice(("Viewed", "Added")),
                    **common,
                )
            )
        elif r < 0.75:
            traits = {"email": f" U{p}@Example.com", "plan": rnd.choice(("free", "pro"))}
            if rnd.random() < 0.3:
                traits["consent"] = rnd.choice(("granted", "denied"))
            out.append(
                Event(
                    type="identify",
                    anonymous_id=device,
                    user_id=f"user-{p}",
                    traits=traits,
                    **common,
                )
            )
        elif r < 0.93:
            out.append(
                Event(
                    type="track",
                    user_id=f"user-{p}",
                    anonymous_id=device,
                    event="Order Completed",
                    **common,
                )
            )
        else:
            ctx = {"traits": {"email": f"u{p}@example.com"}}
            out.append(
                Event(type="track", anonymous_id=f"srv-{i}", event="Ticket", context=ctx, **common)
            )
    return out  # fmt: skip


def processed(events: list[Event], path: Path, *, general: bool) -> dict[str, Any]:
    """Every namespace of the state after the processor consumed ``events`` in batches of 40
    on RocksDB with the kernel-compiled ``RULES`` (``general``: every event through
    ``EventHandler.attribute`` instead of the inline paths, and every resolution through the
    resolver's walk)."""
    store = RocksStateStore(path, sync=False)
    proc = Processor(ListLog(events), store, compile_segments(RULES), ManualClock(T0 + 10**8))
    if general:
        general_path(proc.handler)
    while proc.run_once(40) > 0:
        pass
    store.close()
    return dump_state(path)


def test_the_inline_paths_give_the_general_paths_state_with_rules_on_rocksdb(
    tmp_path: Path,
) -> None:
    events = traffic(1_500, 300, seed=3)
    inline = processed(events, tmp_path / "inline", general=False)
    assert inline == processed(events, tmp_path / "general", general=True)
    # the stream exercised every path: newcomers, returning people, links, merges, consent
    assert len(inline["profile"]) > 100
    assert len(inline["merge"]) > 10
    assert len(inline["member"]) > 10
    assert any(b"consent_changed" in row for _, row in inline["outbox"])


values = st.one_of(
    st.none(),
    st.sampled_from(["u1", " u1 ", "NULL", "undefined", "", " ", "A@B.c ", "0", "x"]),
    st.integers(-2, 3),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=16),
    st.just({}),
)


@st.composite
def events(draw: Any) -> Event:
    kind = draw(st.sampled_from(["track", "identify", "page", "alias", "group"]))
    context: dict[str, Any] = {}
    if draw(st.booleans()):
        context["traits"] = {"email": draw(values)}
    if draw(st.booleans()):
        context["externalIds"] = [{"type": "stripe_customer_id", "id": draw(values)}]
    return Event(
        type=kind,
        message_id="m",
        source_id="s",
        timestamp_ms=1,
        received_at_ms=1,
        user_id=draw(values),
        anonymous_id=draw(values),
        previous_id=draw(values) if kind == "alias" else None,
        group_id=draw(st.sampled_from([None, "g1"])),
        traits={"email": draw(values)} if draw(st.booleans()) else {},
        context=context,
    )


EXTRACTORS = [
    Extractor(IdentityRules()),
    Extractor(IdentityRules(priority_order=("anonymous_id", "email", "user_id"))),
    Extractor(IdentityRules(external_ids=(ExternalId(type="device", path="context.device"),))),
    Extractor(IdentityRules(link_group_id=True)),
]


@settings(max_examples=300, deadline=None)
@given(events(), st.sampled_from(EXTRACTORS))
def test_the_usual_events_extraction_equals_the_general_one(event: Event, extract: Any) -> None:
    found, keys = extract.keyed(event)
    assert found == extract._general(event) == extract(event)
    assert all(type(i) is Identifier for i in found)
    assert keys == [str(i) for i in found]


@pytest.mark.skipif(not AVAILABLE, reason="the compiled rule kernel is not built")
def test_merge_checked_is_merge_states_and_can_merge() -> None:
    kernel = compile_kernel(compile_segments(RULES))

    def state(*names: str, start: int = 0) -> bytes:
        found = None
        for i, name in enumerate(names):
            e = Event(type="track", message_id=f"{name}{i}", source_id="s", timestamp_ms=start + i,
                      received_at_ms=start + i, event=name)  # fmt: skip
            found = kernel.on_event(StaticProfile("p"), found, e, now_ms=start + 7_200_000).state
        assert found is not None
        return found

    early, late = state("Viewed", "Order Completed"), state("Viewed", "Added", start=50)
    pairs = [(early, late), (late, early), (early, early), (None, late), (early, None)]
    for survivor, absorbed in pairs:
        expected = (kernel.merge_states(survivor, absorbed), kernel.can_merge(survivor, absorbed))
        assert merge_checked(kernel, survivor, absorbed) == expected
    assert not kernel.can_merge(early, early)  # the inexact case is among them


# -- a known person with new identifiers (EventHandler._linked) ------------------------------
TIGHT_RULES = [
    IdentityRules(),
    # a windowed limit: old emails stop counting, so the same link is refused, then allowed
    IdentityRules(limits={"user_id": TypeLimit(max_values=1), "email": TypeLimit(max_values=1, window_ms=20)}),
    IdentityRules(max_identifiers=3, max_merges=1),
    IdentityRules(max_merges=0, default_limit=2),
    IdentityRules(priority_order=("anonymous_id", "email", "user_id")),
]  # fmt: skip


@st.composite
def linking_streams(draw: Any) -> list[Event]:
    """Short streams over few people and devices: logins that link new identifiers to a known
    profile, and ones that merge or hit a limit."""
    out = []
    for i in range(draw(st.integers(1, 25))):
        anon = draw(st.sampled_from([None, "d1", "d2", "d3", "null"]))
        user = draw(st.sampled_from([None, "u1", "u2"]))
        email = draw(st.sampled_from([None, "a@x.io", "b@x.io", "c@x.io"]))
        kind = draw(st.sampled_from(["track", "identify"]))
        ts = T0 + draw(st.integers(0, 60))
        out.append(Event(type=kind, message_id=f"m{i}", source_id="s", timestamp_ms=ts,
                         received_at_ms=ts, anonymous_id=anon, user_id=user, event="E",
                         traits={"email": email} if email and kind == "identify" else {},
                         context={"traits": {"email": email}} if email and kind == "track" else {}))  # fmt: skip
    return out


def state_after(events: list[Event], rules: IdentityRules, batch: int, *, general: bool) -> Any:
    store = MemoryStateStore()
    proc = Processor(ListLog(events), store, clock=ManualClock(T0), rules=rules)
    if general:
        general_path(proc.handler)
    while proc.run_once(batch) > 0:
        pass
    reader = store.reader()
    namespaces = ("profile", "owner", "alias", "timeline", "merge", "conflict", "outbox")
    return changes_apart({ns: reader.scan(ns, "", "\U0010ffff") for ns in namespaces})


@settings(max_examples=150, deadline=None)
@given(linking_streams(), st.sampled_from(TIGHT_RULES), st.integers(1, 6))
def test_linking_a_known_person_inline_equals_the_resolver_under_any_rules(
    events: list[Event], rules: IdentityRules, batch: int
) -> None:
    assert state_after(events, rules, batch, general=False) == state_after(
        events, rules, batch, general=True
    )


def test_a_login_on_a_known_device_is_linked_without_the_resolver() -> None:
    events = [
        Event(type="track", message_id="m0", source_id="s", timestamp_ms=T0, received_at_ms=T0,
              anonymous_id="d1", event="Viewed"),
        Event(type="identify", message_id="m1", source_id="s", timestamp_ms=T0 + 1,
              received_at_ms=T0 + 1, anonymous_id="d1", user_id="u1", traits={"email": "a@x.io"}),
    ]  # fmt: skip
    store = MemoryStateStore()
    proc = Processor(ListLog(events), store, clock=ManualClock(T0))
    resolved: list[Any] = []
    slow = proc.handler._resolve
    proc.handler._resolve = lambda *a: resolved.append(a) or slow(*a)  # type: ignore[method-assign]
    while proc.run_once() > 0:
        pass
    assert resolved == []
    owners = dict(store.reader().scan("owner", "", "\U0010ffff"))
    assert owners["user_id:u1"] == owners["email:a@x.io"] == owners["anonymous_id:d1"]
    # the device's own link, then the user id and the email, strongest first
    changes = [
        decode_change(c)
        for _, c in state_after(events, IdentityRules(), 10, general=False)["outbox"]
    ]
    assert [(c.id_type, c.id_value, c.sequence) for c in changes if isinstance(c, IdentityLinked)] == [
        ("anonymous_id", "d1", 1), ("user_id", "u1", 2), ("email", "a@x.io", 3)
    ]  # fmt: skip


def test_a_split_profile_gets_its_new_identifiers_as_the_resolver_links_them(
    memory_log: Any, make_event: Any
) -> None:
    """A split profile excludes the other side's identifiers: the inline link leaves it to
    the resolver, which refuses those and links the rest."""

    def run(general: bool) -> Any:
        log = type(memory_log)()
        counter = iter(range(100))

        def ev(kind: str, ts: int, **fields: Any) -> Event:
            return make_event(kind, ts, message_id=f"m{next(counter):03d}", **fields)

        log.append([
            ev("identify", T0, anonymous_id="phone", user_id="u1", traits={"email": "e@x.io"}),
            ev("track", T0 + 1, anonymous_id="laptop", user_id="u1", event="B"),
        ])  # fmt: skip
        store = MemoryStateStore()
        proc = Processor(log, store, clock=ManualClock(T0 + 10))
        if general:
            general_path(proc.handler)
        while proc.run_once() > 0:
            pass
        owner = store.reader().get("owner", "user_id:u1")
        assert owner is not None
        proc.split(owner.decode(), ["anonymous_id:laptop"])
        log.append([
            ev("identify", T0 + 5, anonymous_id="laptop", traits={"email": "f@x.io"}),
            ev("track", T0 + 6, anonymous_id="laptop", user_id="u1", event="C"),
            ev("identify", T0 + 7, anonymous_id="tablet", user_id="u1"),
        ])  # fmt: skip
        while proc.run_once() > 0:
            pass
        reader = store.reader()
        namespaces = ("profile", "owner", "alias", "timeline", "merge", "conflict", "outbox")
        return changes_apart({ns: reader.scan(ns, "", "\U0010ffff") for ns in namespaces})

    inline = run(False)
    assert inline == run(True)
    assert inline["conflict"]  # the split's exclusion was hit


def test_an_unknown_identifier_the_profile_excludes_is_left_to_the_resolver() -> None:
    """A profile excludes an identifier nobody owns now (the other side of a split was
    erased): the inline link must not link it; the resolver records the conflict."""
    events = [
        Event(type="track", message_id="m0", source_id="s", timestamp_ms=T0, received_at_ms=T0,
              anonymous_id="d1", event="Viewed"),
        Event(type="identify", message_id="m1", source_id="s", timestamp_ms=T0 + 1,
              received_at_ms=T0 + 1, anonymous_id="d1", user_id="u9"),
    ]  # fmt: skip

    def run(general: bool) -> Any:
        store = MemoryStateStore()
        proc = Processor(ListLog(events), store, clock=ManualClock(T0))
        if general:
            general_path(proc.handler)
        proc.run_once(1)
        tx = store.begin_global()
        pid = tx.get("owner", "anonymous_id:d1")
        assert pid is not None
        profile = decode_profile(tx.get("profile", pid.decode()) or b"")
        profile.excluded = ["user_id:u9"]
        tx.set("profile", pid.decode(), encode_profile(profile))
        tx.commit()
        if proc.working is not None:
            proc.working.clear()
        while proc.run_once() > 0:
            pass
        reader = store.reader()
        return {ns: reader.scan(ns, "", "\U0010ffff") for ns in ("profile", "owner", "conflict")}

    inline = run(False)
    assert inline == run(True)
    assert inline["conflict"]
    assert dict(inline["owner"])["user_id:u9"] != dict(inline["owner"])["anonymous_id:d1"]


@settings(max_examples=150, deadline=None)
@given(linking_streams(), st.sampled_from(TIGHT_RULES), st.integers(1, 6))
def test_the_unrefused_resolution_is_the_resolvers_whenever_it_answers(
    events: list[Event], rules: IdentityRules, batch: int
) -> None:
    store = MemoryStateStore()
    proc = Processor(ListLog(events), store, clock=ManualClock(T0), rules=rules)
    handler, quick = proc.handler, proc.handler._unrefused

    def checked(b: Any, idents: list[Identifier], now_ms: int, *keys: Any) -> Any:
        found = quick(b, idents, now_ms, *keys)
        assert found is None or found == resolve(idents, b, rules, now_ms)
        return found

    handler._unrefused = checked  # type: ignore[method-assign]
    while proc.run_once(batch) > 0:
        pass


def test_a_second_device_merges_without_the_resolvers_walk() -> None:
    """A person's second device logs in: the oldest profile (the user id's) survives, the
    device's is merged in by the device id, the new email linked, as the resolver decides."""
    events = [
        Event(type="identify", message_id="m0", source_id="s", timestamp_ms=T0, received_at_ms=T0,
              anonymous_id="d1", user_id="u1"),
        Event(type="track", message_id="m1", source_id="s", timestamp_ms=T0 + 1,
              received_at_ms=T0 + 1, anonymous_id="d2", event="Viewed"),
        Event(type="identify", message_id="m2", source_id="s", timestamp_ms=T0 + 2,
              received_at_ms=T0 + 2, anonymous_id="d2", user_id="u1", traits={"email": "a@x.io"}),
    ]  # fmt: skip
    walked: list[Any] = []
    original = handler_module.resolve
    handler_module.resolve = lambda *a: walked.append(a) or original(*a)  # type: ignore[assignment]
    try:
        inline = state_after(events, IdentityRules(), 10, general=False)
    finally:
        handler_module.resolve = original  # type: ignore[assignment]
    assert walked == []
    assert inline == state_after(events, IdentityRules(), 10, general=True)
    (merge,) = [msgspec.msgpack.decode(v, type=MergeRecord) for _, v in inline["merge"]]
    assert (merge.identifier, merge.rule) == ("anonymous_id:d2", "shared_identifier")
    owners = dict(inline["owner"])
    assert owners["anonymous_id:d2"] == owners["email:a@x.io"] == owners["user_id:u1"]
