"""The running processor's garbage-collector policy (segflow.stream.garbage): survivors frozen
after each step, cyclic garbage among them freed by a full collection once the heap grew, and
the host's collector left alone unless the processor's loop runs."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest
from tests.unit.stream.conftest import EventFactory, MemoryLog

from segflow.stream import MemoryStateStore
from segflow.stream.garbage import GcPolicy
from segflow.stream.processor import Processor, ProcessorSettings


class Node:
    """A weak-referenceable object that can refer to itself."""

    def __init__(self) -> None:
        self.me: Node | None = None


def garbage_cycle() -> weakref.ref[Node]:
    """A reference cycle nothing else holds: only a collection frees it."""
    node = Node()
    node.me = node
    return weakref.ref(node)


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.collect()  # every generation's count from zero: what the tests count is their own
    yield
    gc.unfreeze()  # whatever a failed test left frozen
    gc.set_threshold(*threshold)


def test_a_cycle_frozen_with_the_survivors_waits_for_the_heap_to_grow() -> None:
    policy = GcPolicy(100_000, min_growth=5_000)
    policy.start()
    policy.after_step()  # a step boundary: the young count starts from zero
    cycle = garbage_cycle()
    policy.after_step()
    assert gc.get_freeze_count() > 0
    gc.collect()  # no collection walks frozen objects
    assert cycle() is not None and policy.collections == 0
    kept = [[] for _ in range(6_000)]  # the next step keeps more than the growth allows
    policy.after_step()
    assert policy.collections == 1
    assert cycle() is None  # thawed, collected, and the survivors frozen again
    assert gc.get_freeze_count() >= len(kept)
    policy.stop()
    assert gc.get_freeze_count() == 0


def test_objects_freed_during_steps_do_not_count_as_growth() -> None:
    policy = GcPolicy(100_000, min_growth=5_000)  # the processor's threshold: no young
    # collection within these steps (one would count what it found alive as growth)
    policy.start()
    for _ in range(5):  # each step allocates 2,000 objects and drops them again
        churn = [[] for _ in range(2_000)]
        del churn
        policy.after_step()
    assert policy.collections == 0
    policy.stop()


def test_without_start_or_with_freezing_off_nothing_is_frozen() -> None:
    idle = GcPolicy(0, min_growth=1)
    idle.after_step()
    off = GcPolicy(0, freeze=False, min_growth=1)
    off.start()
    off.after_step()
    assert gc.get_freeze_count() == 0
    assert not idle.active and not off.active


def test_the_processor_freezes_only_while_its_loop_runs(
    memory_log: MemoryLog, make_event: EventFactory
) -> None:
    proc = Processor(memory_log, MemoryStateStore(), settings=ProcessorSettings(gc_threshold=0))
    memory_log.append([make_event(user_id="u1", event="Signed Up")])
    proc.run_once()  # driven by hand (a test, a tool): the host's collector is left alone
    assert gc.get_freeze_count() == 0
    proc.start()
    try:
        deadline = time.monotonic() + 30  # the loop's first step freezes what survived it
        while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gc.get_freeze_count() > 0
    finally:
        proc.stop()
    assert gc.get_freeze_count() == 0


def test_growth_a_young_collection_promoted_still_counts() -> None:
    policy = GcPolicy(1_000, min_growth=5_000)  # young collections every 1,000 allocations
    policy.start()
    policy.after_step()
    cycle = garbage_cycle()
    policy.after_step()
    kept = [[] for _ in range(6_000)]  # promoted by young collections before the step ends
    policy.after_step()
    assert policy.collections == 1 and cycle() is None
    assert gc.get_freeze_count() >= len(kept)
    policy.stop()
