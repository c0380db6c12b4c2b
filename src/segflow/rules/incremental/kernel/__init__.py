"""The compiled rule kernel: the incremental evaluator in C++ (built by ``setup.py`` with Cython).

:func:`compile_kernel` turns a :class:`~segflow.rules.incremental.program.SegmentProgram` into
a :class:`KernelProgram`: the same ``SegmentEvaluator`` protocol (``on_event``, ``on_events``,
``on_time``, ``can_merge``, ``merge_states``), the same answers — members, computed traits and
timers, held equal by ``tests/unit/rules/test_kernel.py`` and the differential tests — over its
own compact binary state (:mod:`.format`), 10-50x faster.

``AVAILABLE`` says whether the extension was built and may be used: ``SEGFLOW_KERNEL=0`` turns
it off at run time, ``SEGFLOW_NO_KERNEL=1`` at install time skips building it. Without it
:func:`compile_kernel` returns the program itself, the pure-Python evaluator. It does so too for
a plan the kernel does not cover (:class:`~.layout.Unsupported`): times, windows or periods
beyond ±2^61 ms, number literals beyond a double, sequences of more than 61 steps, more than
60,000 rules or slots — nothing a real rule set writes.

>>> from segflow.rules import StaticProfile, compile_segments
>>> from segflow.spec.events import Event
>>> evaluator = compile_kernel(compile_segments({"buyers": 'did "Order Completed"'}))
>>> ev = Event(type="track", message_id="m1", source_id="s", timestamp_ms=1_000,
...            received_at_ms=1_000, event="Order Completed")
>>> sorted(evaluator.on_event(StaticProfile("p1"), None, ev, now_ms=1_000).members)
['buyers']
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from segflow.rules.incremental.kernel.layout import Unsupported

if TYPE_CHECKING:
    from segflow.rules.incremental.program import SegmentProgram

try:
    from segflow.rules.incremental.kernel import _kernel
    from segflow.rules.incremental.kernel._kernel import KernelProgram, KernelResult
except ImportError:  # not built: no compiler at install time, or SEGFLOW_NO_KERNEL=1
    _kernel = None  # type: ignore[assignment]
    KernelProgram = KernelResult = None  # type: ignore[assignment,misc]  # __all__ still resolves

AVAILABLE = _kernel is not None and os.environ.get("SEGFLOW_KERNEL", "1") != "0"


def status() -> str:
    """One line saying which evaluator :func:`compile_kernel` gives (``segflow serve``'s banner
    and the benchmarks print it: a fresh checkout has no compiled kernel and would silently
    measure the pure-Python evaluator).

    >>> status().startswith(("compiled rule kernel", "pure-Python evaluator"))
    True
    """
    if AVAILABLE:
        return f"compiled rule kernel ({os.path.basename(_kernel.__file__ or '_kernel')})"
    if _kernel is not None:
        return "pure-Python evaluator (the compiled rule kernel is turned off: SEGFLOW_KERNEL=0)"
    return (
        "pure-Python evaluator (the compiled rule kernel is not built:"
        " `python setup.py build_ext --inplace`)"
    )


def compile_kernel(program: SegmentProgram) -> KernelProgram | SegmentProgram:
    """The fastest evaluator of ``program``: a :class:`KernelProgram` when the kernel is
    :data:`AVAILABLE` and covers the plan, otherwise ``program`` itself.

    >>> from segflow.rules import compile_segments
    >>> prog = compile_segments({"s": 'did "A"'})
    >>> type(compile_kernel(prog)).__name__ in ("KernelProgram", "SegmentProgram")
    True
    >>> compile_kernel(prog).plan.fingerprint == prog.plan.fingerprint
    True
    """
    if not AVAILABLE or _kernel is None:
        return program
    try:
        return _kernel.KernelProgram(program)
    except Unsupported:
        return program


def merge_checked(
    program: KernelProgram, survivor: bytes | None, absorbed: bytes | None
) -> tuple[bytes | None, bool]:
    """``(program.merge_states(survivor, absorbed), program.can_merge(survivor, absorbed))``
    in one step: in C++ over the bytes of two states of the program's rule set (rows and
    one-sided sections copied, only a fold both sides hold decoded), by
    :func:`merge_checked_python` otherwise — the same bytes and answer either way.

    >>> from segflow.rules import compile_segments
    >>> kernel = compile_kernel(compile_segments({"s": 'did "A"'}))
    >>> merge_checked(kernel, None, None)
    (None, True)
    """
    return program.merge_checked(survivor, absorbed)


def merge_checked_python(
    program: KernelProgram, survivor: bytes | None, absorbed: bytes | None
) -> tuple[bytes | None, bool]:
    """The reference of :func:`merge_checked`: both states decoded once (``format.decode``,
    any format or rule set), merged by ``program.merge`` and encoded (``format.encode``).

    >>> from segflow.rules import compile_segments
    >>> kernel = compile_kernel(compile_segments({"s": 'did "A"'}))
    >>> merge_checked_python(kernel, None, b"x")
    (b'x', True)
    """
    if not survivor or not absorbed:
        return survivor or absorbed, True
    from segflow.rules.incremental.kernel import format as _format
    from segflow.rules.incremental.program import merge, mergeable

    a = program._profile_state(survivor)
    b = program._profile_state(absorbed)
    return _format.encode(merge(program.plan, a, b), program.layout), mergeable(a, b)


__all__ = [
    "AVAILABLE",
    "KernelProgram",
    "KernelResult",
    "Unsupported",
    "compile_kernel",
    "merge_checked",
    "merge_checked_python",
    "status",
]
