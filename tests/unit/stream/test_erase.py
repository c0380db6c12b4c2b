"""Erasing a person from the processor's state, through its command intake: exits first,
no membership while erasing, then nothing left (profiles, graph, timelines, outbox)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segflow.clock import ManualClock
from segflow.identity import Identifier
from segflow.stream import Evaluation, MemoryStateStore, Processor, keys
from segflow.stream.erase import erase_profiles, retire, timeline_positions

T0 = 1_700_000_000_000


class Always:
    """Every profile is in segment "all" (and wants a timer in an hour)."""

    def on_event(self, profile: Any, state: bytes | None, event: Any, now_ms: int) -> Any:
        return Evaluation(b"s", frozenset({"all"}), {"seen": True}, now_ms + 3_600_000)

    def on_time(self, profile: Any, state: bytes | None, now_ms: int) -> Any:
        return Evaluation(state, frozenset({"all"}), {"seen": True}, now_ms + 3_600_000)

    def can_merge(self, survivor: bytes | None, absorbed: bytes | None) -> bool:
        return True

    def merge_states(self, survivor: bytes | None, absorbed: bytes | None) -> bytes | None:
        return survivor or absorbed


def build(memory_log: Any, make_event: Callable[..., Any]) -> Processor:
    memory_log.append(
        [
            make_event("track", T0, anonymous_id="a-ann", event="A"),
            make_event(
                "identify",
                T0 + 1,
                anonymous_id="a-ann",
                user_id="ann",
                traits={"email": "ann@x.io"},
            ),
            make_event(
                "track",
                T0 + 2,
                anonymous_id="a-ann2",
                event="B",
                context={"traits": {"email": "ann@x.io"}},
            ),
            make_event("track", T0 + 3, user_id="bob", event="C"),
        ]
    )
    proc = Processor(memory_log, MemoryStateStore(), clock=ManualClock(T0 + 10), evaluator=Always())
    while proc.run_once() > 0:
        pass
    return proc


def outbox(proc: Processor) -> list[Any]:
    return [c for _, c in proc.change_feed().read(0, 10_000)]


def test_retire_then_erase_leaves_nothing_of_the_person(memory_log: Any, make_event: Any) -> None:
    proc = build(memory_log, make_event)
    before = len(outbox(proc))
    found = proc.submit(lambda b, now: retire(b, [Identifier("email", "ann@x.io")], now))
    proc.run_once()
    retired = found.result(timeout=0)
    assert retired.exits == 1 and len(retired.profile_ids) >= 2  # the survivor and the absorbed
    assert ("anonymous_id", "a-ann2") in retired.identifiers and (
        "user_id",
        "ann",
    ) in retired.identifiers
    [survivor] = retired.identities
    assert [(c.kind, c.segment, c.profile_id) for c in outbox(proc)[before:]] == [
        ("exited", "all", survivor)
    ]
    assert retired.exit_seq == len(outbox(proc))

    # while erasing, events and timers give it no membership back
    memory_log.append([make_event("track", T0 + 20, user_id="ann", event="D")])
    proc.clock.advance(7_200_000)  # type: ignore[attr-defined]
    proc.run_once()
    tx = proc.store.begin_global()
    assert tx.scan(keys.MEMBER, "all|", "all}") == [("all|" + _bob(proc), b"")]
    tx.rollback()

    positions = proc.submit(lambda b, now: timeline_positions(b, retired.profile_ids))
    proc.run_once()
    assert len(positions.result(timeout=0)) == 4  # A, identify, B and the late D
    erased = proc.submit(lambda b, now: erase_profiles(b, retired.profile_ids, retired.identifiers))
    proc.run_once()
    counts = erased.result(timeout=0)
    assert counts["profiles"] == 1 and counts["identifiers"] == 4 and counts["timeline"] == 4
    dump = _dump(proc)
    for needle in (b"ann@x.io", b"a-ann", *(p.encode() for p in retired.profile_ids)):
        assert not [k for k in dump if needle in k[0].encode() + k[1].encode() + k[2]], needle
    assert any(b"bob" in k[1].encode() + k[2] for k in dump)  # the other person is untouched


def test_a_command_waits_for_its_barrier(memory_log: Any, make_event: Any) -> None:
    proc = build(memory_log, make_event)
    end = memory_log.end_offsets()
    part = next(p for p, o in end.items() if o > 0)
    waiting = proc.submit(lambda b, now: "ran", after={part: end[part] + 1})
    proc.run_once()
    assert not waiting.done()
    memory_log.records[part].append(
        memory_log.records[part][-1].__class__(
            part, end[part], make_event("track", T0 + 30, user_id="zed", event="E")
        )
    )
    proc.run_once()
    assert waiting.result(timeout=0) == "ran"


def _bob(proc: Processor) -> str:
    raw = proc.store.reader().get(keys.OWNER, "user_id:bob")
    assert raw is not None
    return raw.decode()


def _dump(proc: Processor) -> list[tuple[str, str, bytes]]:
    reader = proc.store.reader()
    namespaces = (
        "profile",
        "owner",
        "alias",
        "timeline",
        "timer",
        "member",
        "merge",
        "conflict",
        "outbox",
        "dead",
        "dropped",
    )
    return [(ns, k, v) for ns in namespaces for k, v in reader.scan(ns, "", "\U0010ffff")]
