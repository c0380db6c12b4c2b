"""The rule tree: frozen dataclasses produced by the parser and read by both back ends.

>>> w = Window(far_ms=3_600_000, near_ms=0)
>>> w.contains(ts_ms=1_000, at_ms=3_600_500), w.contains(ts_ms=500, at_ms=3_600_500)
(True, False)
"""

from __future__ import annotations

from collections.abc import Mapping
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


RankSide = Literal["top", "bottom"]


@dataclass(frozen=True, slots=True)
class ScoreRef:
    """A model's score, or (``rank`` set) the share of the run's scored profiles whose score is
    at least (``"top"``) or at most (``"bottom"``) this profile's, the profile itself included.

    ``score m in top P%`` is ``ScoreRef(m, "top") <= P/100``. Both evaluators read the value
    stored under :attr:`key`: the scoring run writes the shares beside the scores.

    >>> ScoreRef("bundle_72h").key, ScoreRef("bundle_72h", "top").key
    ('bundle_72h', 'bundle_72h:top')
    """

    model: str
    rank: RankSide | None = None

    @property
    def key(self) -> str:
        return self.model if self.rank is None else rank_key(self.model, self.rank)


def rank_key(model: str, side: RankSide) -> str:
    """Where a scoring run stores each profile's top (bottom) share (segflow.ml.ranks).

    >>> rank_key("churn", "bottom")
    'churn:bottom'
    """
    return f"{model}:{side}"


def split_scores(
    scores: Mapping[str, float],
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """A profile's stored scores as (the models' scores, each model's rank shares).

    >>> split_scores({"churn": 0.4, "churn:top": 0.1, "churn:bottom": 0.95})
    ({'churn': 0.4}, {'churn': {'top': 0.1, 'bottom': 0.95}})
    """
    plain: dict[str, float] = {}
    ranks: dict[str, dict[str, float]] = {}
    for key, value in scores.items():
        model, sep, side = key.rpartition(":")
        if sep and side in ("top", "bottom"):
            ranks.setdefault(model, {})[side] = value
        else:
            plain[key] = value
    return plain, ranks


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
