"""The processor's transaction: a Batch committed when the block ends, rolled back otherwise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from segflow.clock import ManualClock
from segflow.stream import MemoryStateStore, Processor, ProfileReader
from segflow.stream.batch import WorkingSet

T0 = 1_700_000_000_000


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
