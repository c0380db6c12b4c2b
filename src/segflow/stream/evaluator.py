"""The seam between the processor (``segflow.stream``) and the segment rules (``segflow.rules``).

``segflow.rules`` implements these Protocols structurally, without importing ``stream``; what
the rules read of a profile is ``segflow.rules``' one ``ProfileView`` (``segflow.profiles.Profile``
is one). The processor keeps each profile's opaque ``state`` and last ``members``, diffs ``members`` to
emit membership changes, stores ``computed_traits`` on the profile and calls ``on_time`` when
the clock passes ``next_wakeup_ms``.

>>> from segflow.profiles import Profile
>>> r = NullEvaluator().on_time(Profile(profile_id="p", created_ms=0), None, 5)
>>> r.members, r.next_wakeup_ms
(frozenset(), None)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from segflow.rules.incremental.executor import ProfileView
from segflow.rules.incremental.kernel import KernelProgram, merge_checked
from segflow.spec.events import Event


class EvalResult(Protocol):
    """The agreed fields, read-only here so frozen dataclasses and Structs satisfy it."""

    @property
    def state(self) -> bytes | None: ...
    @property
    def members(self) -> frozenset[str]: ...
    @property
    def computed_traits(self) -> Mapping[str, Any]: ...
    @property
    def next_wakeup_ms(self) -> int | None: ...


class SegmentEvaluator(Protocol):
    def on_event(
        self, profile: ProfileView, state: bytes | None, event: Event, now_ms: int
    ) -> EvalResult: ...

    def on_time(self, profile: ProfileView, state: bytes | None, now_ms: int) -> EvalResult: ...

    def can_merge(self, survivor: bytes | None, absorbed: bytes | None) -> bool:
        """Whether ``merge_states`` is exact for these states; when not, the processor replays
        the merged profile's timeline from the log instead."""
        ...

    def merge_states(self, survivor: bytes | None, absorbed: bytes | None) -> bytes | None: ...


@dataclass(frozen=True)
class Evaluation:
    """A plain :class:`EvalResult` (what :class:`NullEvaluator` returns)."""

    state: bytes | None = None
    members: frozenset[str] = frozenset()
    computed_traits: Mapping[str, Any] = field(default_factory=dict)
    next_wakeup_ms: int | None = None


_EMPTY = Evaluation()


class NullEvaluator:
    """No segments: every profile is in no segment and never needs a timer."""

    def on_event(
        self, profile: ProfileView, state: bytes | None, event: Event, now_ms: int
    ) -> EvalResult:
        return _EMPTY

    def on_time(self, profile: ProfileView, state: bytes | None, now_ms: int) -> EvalResult:
        return _EMPTY

    def can_merge(self, survivor: bytes | None, absorbed: bytes | None) -> bool:
        return True

    def merge_states(self, survivor: bytes | None, absorbed: bytes | None) -> bytes | None:
        return survivor


def merge_rule_states(
    evaluator: SegmentEvaluator, survivor: bytes | None, absorbed: bytes | None
) -> tuple[bytes | None, bool]:
    """``(merge_states(survivor, absorbed), can_merge(survivor, absorbed))`` of ``evaluator``:
    the merged rule state of two profiles and whether it is exact. The compiled kernel
    decodes each state once for both (:func:`~segflow.rules.incremental.kernel.merge_checked`).

    >>> merge_rule_states(NullEvaluator(), b"s", b"a")
    (b's', True)
    """
    if KernelProgram is not None and type(evaluator) is KernelProgram:
        return merge_checked(evaluator, survivor, absorbed)
    exact = evaluator.can_merge(survivor, absorbed)
    return evaluator.merge_states(survivor, absorbed), exact
