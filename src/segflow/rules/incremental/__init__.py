"""The incremental back end: rules evaluated per profile as events and time arrive.

Stages, one module each: ``plan`` (slots shared by all rules: what each selector keeps),
``state`` (the per-profile state those slots hold), ``executor`` (each rule compiled to
closures over that state) and ``program`` (:class:`SegmentProgram`, the evaluator the processor
calls). ``kernel`` holds the compiled (C++) executor that runs the same plan over the same
semantics natively, held equal to this one by the differential tests.
"""

from __future__ import annotations

from segflow.rules.incremental.program import (
    EvalResult,
    SegmentProgram,
    StaticProfile,
    compile_segments,
)

__all__ = ["EvalResult", "SegmentProgram", "StaticProfile", "compile_segments"]
