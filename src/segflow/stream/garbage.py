"""The running processor's policy for CPython's cyclic garbage collector (docs/engine.md,
"The garbage collector").

Nearly everything the processor keeps between batches (the working set's profiles and owners)
lives long and is freed by reference counting when it goes; what a batch allocates and keeps
is walked by every young collection until it is old. Two settings, both process-wide like
every :mod:`gc` setting:

- :func:`tune_gc`: the first threshold raised from 700 to ``stream.gc_threshold`` allocations;
- :class:`GcPolicy`: after each loop step the survivors are frozen (:func:`gc.freeze`: moved
  to the permanent generation, which no collection walks, and the young count reset), so a
  young collection only ever walks one step's objects; once the tracked objects have grown by
  a quarter since the last full collection (CPython's own rule for its oldest generation),
  and by at least a million, the frozen objects are thawed and the whole heap collected once,
  so cyclic garbage among them (a cycle that became garbage during a step is frozen with the
  survivors) is bounded.

A full collection walks every tracked object: ~0.7-0.8 s with 200,000 profiles in the working
set (~1M objects, measured on `benchmarks.processor`'s stream), ~0.7 µs an object, against
~0.07 µs an object for the young collections a freeze saves. Hence the million: at a quarter
alone, a processor filling its working set from empty ran ~20 full collections in 90,000
events and lost more than the freezes saved. With CPython's thresholds as :func:`tune_gc` sets
them, the oldest generation was collected even more rarely (after 100 collections of the
middle one); a working set that neither grows nor leaks is never collected whole.
"""

from __future__ import annotations

import gc


def tune_gc(threshold: int) -> None:
    """Collect cyclic garbage every ``threshold`` allocations instead of every 700.

    The processor keeps hundreds of thousands of profiles (dicts and lists) in memory and
    creates a few containers per event; with CPython's default thresholds the collector ran
    every ~50 events and walked the working set, ~40% of the processor's time on the
    processor benchmark (profiled with py-spy; BENCHMARKS.md). Almost nothing it creates is
    cyclic (reference counting frees it), so rarer collections cost memory only for the few
    cycles that wait longer. Process-wide, like every ``gc`` setting; 0 leaves it alone.

    >>> import gc
    >>> before = gc.get_threshold()
    >>> tune_gc(50_000); gc.get_threshold()[0]
    50000
    >>> gc.set_threshold(*before)
    """
    if threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(threshold, max(gen1, 50), max(gen2, 100))


GROWTH = 0.25  # a full collection once the tracked objects grew this much (CPython's rule)
MIN_GROWTH = 1_000_000  # ... and by at least this many objects


class GcPolicy:
    """What the running processor does with the collector (module docstring).

    :meth:`start` (the processor's thread starts) tunes the threshold; :meth:`after_step`
    (after each loop step) freezes the survivors, and thaws and collects everything once the
    tracked objects grew by :data:`GROWTH` of what the last full collection left and by at
    least ``min_growth``; :meth:`stop` thaws them. Until :meth:`start`, :meth:`after_step` does
    nothing (a processor driven by ``run_once`` from a test or a tool leaves its host's
    collector alone). ``freeze=False``: the threshold only.

    The growth is counted from the young generation's count at each freeze and at the start
    of each collection CPython runs in between (tracked objects allocated less those freed
    since, never below zero), so it needs no walk of the frozen objects; only a full
    collection counts them again.

    >>> import gc
    >>> _ = gc.collect()  # the young count from zero
    >>> policy = GcPolicy(0, min_growth=250)
    >>> policy.start(); policy.after_step(); gc.get_freeze_count() > 0
    True
    >>> kept = [[] for _ in range(300)]; policy.after_step(); policy.collections
    1
    >>> policy.stop(); gc.get_freeze_count()
    0
    """

    def __init__(
        self, threshold: int, *, freeze: bool = True, min_growth: int = MIN_GROWTH
    ) -> None:
        self.threshold = threshold
        self.freeze = freeze
        self.min_growth = min_growth
        self.collections = 0  # full collections run (each after a thaw)
        self.active = False
        self._base = 0  # tracked objects the last full collection left
        self._grown = 0  # tracked objects added since (estimated)

    def start(self) -> None:
        """Tune the threshold (:func:`tune_gc`) and start freezing after each step."""
        tune_gc(self.threshold)
        if self.freeze and not self.active:
            self.active = True
            self._base, self._grown = 0, 0
            gc.callbacks.append(self._collecting)

    def _collecting(self, phase: str, info: dict[str, int]) -> None:
        """A collection starts: what it walks of the young generation counts as growth (its
        survivors go to an older generation, which the next freeze takes)."""
        if phase == "start":
            self._grown += gc.get_count()[0]

    def after_step(self) -> None:
        """Freeze what survived the step; thaw and collect everything when the tracked
        objects grew by :data:`GROWTH` since the last full collection."""
        if not self.active:
            return
        self._grown += gc.get_count()[0]
        gc.freeze()
        if self._grown > max(self.min_growth, self._base * GROWTH):
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.collections += 1
            self._base, self._grown = gc.get_freeze_count(), 0

    def stop(self) -> None:
        """Thaw the frozen objects (the collector walks them again, as before :meth:`start`)."""
        if self.active:
            self.active = False
            gc.callbacks.remove(self._collecting)
            gc.unfreeze()
