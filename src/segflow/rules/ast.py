"""The rule tree: frozen dataclasses produced by the parser and read by both back ends.

>>> w = Window(far_ms=3_600_000, near_ms=0)
>>> w.contains(ts_ms=1_000, at_ms=3_600_500), w.contains(ts_ms=500, at_ms=3_600_500)
(True, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scalar = str | int | float | bool
Path = tuple[str, ...]
CompareOp = Literal["=", "!=", "<", "<=", ">", ">=", "in", "contains", "starts with"]
AggFunc = Literal[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "first",
    "last",
    "most_frequent",
    "unique_list",
    "unique_count",
]


@dataclass(frozen=True, slots=True)
class Window:
    """Event times ``t`` with ``at - far < t <= at - near``; ``far_ms=None`` is unbounded."""

    far_ms: int | None = None
    near_ms: int = 0

    def contains(self, ts_ms: int, at_ms: int) -> bool:
        if ts_ms > at_ms - self.near_ms:
            return False
        return self.far_ms is None or ts_ms > at_ms - self.far_ms


ALL_TIME = Window()


# --- property filters (inside ``where``) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class FCompare:
    path: Path
    op: CompareOp
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class FExists:
    path: Path


@dataclass(frozen=True, slots=True)
class FAnd:
    items: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class FOr:
    items: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class FNot:
    item: Filter


Filter = FCompare | FExists | FAnd | FOr | FNot

SelectorKind = Literal["track", "page", "screen", "identify", "any", "identified", "trait"]


@dataclass(frozen=True, slots=True)
class Selector:
    """Which events: a track event by name, page/screen (optionally by name), any event, ...

    ``identified`` = any event carrying a userId; ``trait`` = identify events setting ``trait``.
    """

    kind: SelectorKind
    name: str | None = None
    filter: Filter | None = None
    trait: Path | None = None


ANY_EVENT = Selector("any")


# --- values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Aggregate:
    func: AggFunc
    selector: Selector
    path: Path | None = None
    window: Window = ALL_TIME


@dataclass(frozen=True, slots=True)
class TraitRef:
    path: Path


@dataclass(frozen=True, slots=True)
class ComputedRef:
    name: str


@dataclass(frozen=True, slots=True)
class ScoreRef:
    model: str


@dataclass(frozen=True, slots=True)
class ClusterRef:
    model: str
    by_id: bool = False  # ``cluster id of model M``: the stable cluster id, not its name


@dataclass(frozen=True, slots=True)
class FirstSeen:
    pass


Value = Aggregate | TraitRef | ComputedRef | ScoreRef | ClusterRef | FirstSeen


# --- conditions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compare:
    left: Value
    op: CompareOp
    right: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Exists:
    value: Value


@dataclass(frozen=True, slots=True)
class TimeIn:
    """A time-valued value (a trait holding a date, first seen) lies in ``window``."""

    value: Value
    window: Window


@dataclass(frozen=True, slots=True)
class InSegment:
    name: str


@dataclass(frozen=True, slots=True)
class Anonymous:
    """No event up to T carries a userId."""


@dataclass(frozen=True, slots=True)
class Periodic:
    """Matching events in at least ``min_buckets`` of the last ``buckets`` periods of ``period_ms``.

    Period k (0 = most recent) holds event times ``at - (k+1)*period < t <= at - k*period``.
    """

    selector: Selector
    min_buckets: int
    buckets: int
    period_ms: int


@dataclass(frozen=True, slots=True)
class Step:
    selector: Selector
    within_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Sequence:
    """``did A then B within W ... [then not C [within W2]]`` (see docs/segments.md)."""

    steps: tuple[Step, ...]
    absent: Step | None = None


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition


@dataclass(frozen=True, slots=True)
class Const:
    value: bool


Condition = (
    Compare | Exists | TimeIn | InSegment | Anonymous | Periodic | Sequence | And | Or | Not | Const
)


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed rule: ``condition`` for a segment, or ``value`` for a computed trait."""

    text: str
    condition: Condition | None = None
    value: Value | None = None
