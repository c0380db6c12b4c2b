"""The cyclic garbage collector of a process that serves HTTP, tuned for request handling.

A ``/v1/batch`` request of 100 events allocates ~1,000 containers (decoded messages, their
``properties`` and ``context`` dicts, the normalised events) that live until the log's group
commit answers. With CPython's defaults the young generation was collected about once a
request, the survivors were promoted, and every few hundred requests a full collection walked
the whole heap: the modules, classes and caches of every role the process imported (~250,000
objects). Profiled under load (py-spy ``--gil --native``, the supervised ``segflow serve``'s
HTTP worker), ``gc_collect_main`` was 38% of the worker's interpreter time.

:func:`settle_heap` runs once start-up is over: it moves everything allocated so far out of
the collector's reach (``gc.freeze()``: start-up objects are long-lived; a cycle among them is
never collected) and raises the first threshold (as the processor does,
:func:`segflow.stream.garbage.tune_gc`), so a young collection finds most of a request's
objects already freed by reference counting.
"""

from __future__ import annotations

import gc


def settle_heap(threshold: int) -> None:
    """Freeze what start-up allocated and collect young objects every ``threshold``
    allocations (never fewer than the process's current threshold; 0 leaves the threshold).

    >>> before = gc.get_threshold()
    >>> settle_heap(50_000); gc.get_threshold()[0] >= 50_000, gc.get_freeze_count() > 0
    (True, True)
    >>> gc.unfreeze(); gc.set_threshold(*before)
    """
    gc.collect()  # start-up's garbage goes now, not into the frozen generation
    gc.freeze()
    if threshold > 0:
        first, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(max(first, threshold), gen1, gen2)


__all__ = ["settle_heap"]
