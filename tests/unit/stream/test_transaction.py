"""The processor's transaction: a Batch committed when the block ends, rolled back otherwise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segflow.clock import ManualClock
from segflow.stream import MemoryStateStore, Processor, ProfileReader
from segflow.stream.batch import WorkingSet

T0 = 1_700_000_000_000
MemoryLog = Any
EventFactory = Callable[..., Any]


def drain(proc: Processor) -> int:
    total = 0
    while (n := proc.run_once(50)) > 0:
        total += n
    return total


def _processor(memory_log: Any, make_event: Callable[..., Any]) -> tuple[Processor, str]:
    proc = Processor(memory_log, MemoryStateStore(), clock=ManualClock(T0))
    memory_log.append([make_event("identify", T0, user_id="u1", traits={"plan": "free"})])
    proc.run_once()
    found = ProfileReader(proc.store.reader(), memory_log).lookup("user_id", "u1")
    assert found is not None
    return proc, found.profile_id


def test_a_block_that_raises_leaves_no_trace_in_the_store_or_the_working_set(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    proc, pid = _processor(memory_log, make_event)
    with pytest.raises(RuntimeError), proc.transaction() as batch:
        batch.profile(pid).traits["plan"] = "pro"  # changed in place, then the block fails
        batch.put(batch.profile(pid))
        raise RuntimeError("boom")
    with proc.transaction() as batch:
        assert batch.profile(pid).traits["plan"] == "free"
        batch.discard = True
    reader = ProfileReader(proc.store.reader(), memory_log)
    assert reader.get(pid).traits["plan"] == "free"  # type: ignore[union-attr]


def test_a_discarded_batch_writes_nothing_and_a_committed_one_is_kept(
    memory_log: Any, make_event: Callable[..., Any]
) -> None:
    proc, pid = _processor(memory_log, make_event)
    with proc.transaction() as batch:
        batch.tx.set("meta", "note", b"no")
        batch.profile(pid).traits["plan"] = "pro"
        batch.put(batch.profile(pid))
        batch.discard = True
    assert proc.store.reader().get("meta", "note") is None
    with proc.transaction() as batch:
        assert batch.profile(pid).traits["plan"] == "free"
        batch.profile(pid).traits["plan"] = "team"
        batch.put(batch.profile(pid))
    reader = ProfileReader(proc.store.reader(), memory_log)
    assert reader.get(pid).traits["plan"] == "team"  # type: ignore[union-attr]
    if proc.working is not None:
        assert proc.working.profiles[pid].traits["plan"] == "team"  # type: ignore[union-attr]


def test_the_working_set_keeps_the_newest_profiles_up_to_its_size() -> None:
    ws = WorkingSet(max_profiles=2, max_owners=2)
    ws.keep({"a": None, "b": None}, {"k1": "a"})
    ws.keep({"a": None, "c": None}, {"k2": "c", "k3": "c"})
    assert list(ws.profiles) == ["a", "c"]  # "a" was used again: "b" is the oldest
    assert list(ws.owners) == ["k2", "k3"]


def test_a_trimmed_working_set_no_longer_answers_for_unknown_identifiers() -> None:
    ws = WorkingSet(max_profiles=2, max_owners=2)
    assert ws.load_owners([("user_id:a", b"p1")]) and ws.complete
    ws.keep({}, {"user_id:b": "p2", "user_id:c": "p3"})  # three owners: the oldest goes
    assert not ws.complete


def test_a_restarted_processor_holds_every_owner_and_reads_none_for_a_newcomer(
    tmp_path: Path, memory_log: MemoryLog, make_event: EventFactory
) -> None:
    from segflow.stream.state.rocksdb import RocksStateStore, RocksTransaction

    store = RocksStateStore(tmp_path / "state", sync=False)
    try:
        memory_log.append([make_event("identify", T0, user_id="u1", anonymous_id="a1")])
        drain(Processor(memory_log, store, clock=ManualClock(T0)))
        proc = Processor(memory_log, store, clock=ManualClock(T0))  # a restart
        proc.working = WorkingSet()  # as on RocksDB (the fixtures may run without one)
        read: list[str] = []
        get, prefetch = RocksTransaction.get, RocksTransaction.prefetch

        def spy_get(self: Any, ns: str, key: str) -> Any:
            read.append(f"{ns}/{key}")
            return get(self, ns, key)

        def spy_prefetch(self: Any, ns: str, found: Any) -> None:
            found = list(found)
            read.extend(f"{ns}/{k}" for k in found)
            prefetch(self, ns, found)

        RocksTransaction.get = spy_get  # type: ignore[method-assign]
        RocksTransaction.prefetch = spy_prefetch  # type: ignore[method-assign]
        try:
            memory_log.append(
                [
                    make_event("track", T0 + 1, user_id="u2", event="E"),
                    make_event("track", T0 + 2, anonymous_id="a1", event="E"),
                ]
            )
            drain(proc)
        finally:
            RocksTransaction.get, RocksTransaction.prefetch = get, prefetch
        assert proc.working is not None and proc.working.complete
        assert not [r for r in read if r.startswith("owner/")]
        reader = ProfileReader(store.reader(), memory_log)
        u1, u2 = reader.lookup("user_id", "u1"), reader.lookup("user_id", "u2")
        assert u1 is not None and u2 is not None and u1.profile_id != u2.profile_id
        assert reader.lookup("anonymous_id", "a1").profile_id == u1.profile_id  # type: ignore[union-attr]
    finally:
        store.close()
