"""Per-profile rule state: bounded event entries plus folded aggregates, encoded with msgpack.

An *event slot* keeps the matching events of one selector whose time is within its horizon
(``ts > now - horizon_ms``, plus every event from the future) as sorted entries, and folds older
events into running aggregates (count, sum, min, max, first, last, value counts) when a rule
needs all time. A *sequence slot* folds a small state machine in time order.

>>> st = SlotState()
>>> insert(st, Entry(ts=5, mid="m1", vals=(2.5,)))
>>> fold(st, now_ms=10, horizon_ms=0, npaths=1, counts=False)
>>> st.fold.count, st.fold.paths[0].sum
(1, 2.5)
"""

from __future__ import annotations

import bisect
import operator
from typing import Any

import msgspec

from segflow.rules.values import to_num, to_text

TextAt = tuple[int, str, str]


class Entry(msgspec.Struct, array_like=True, frozen=True, order=True):
    ts: int
    mid: str
    vals: tuple[Any, ...] = ()


_TS = operator.attrgetter("ts")


def after(entries: list[Entry], ts_ms: int | float) -> int:
    """Index of the first entry with ``ts > ts_ms`` (entries are sorted)."""
    return bisect.bisect_right(entries, ts_ms, key=_TS)


class PathFold(msgspec.Struct, array_like=True):
    sum: float = 0.0
    n: int = 0
    min: float | None = None
    max: float | None = None
    first: TextAt | None = None
    last: TextAt | None = None
    counts: dict[str, int] | None = None
    raw_last: tuple[int, str, Any] | None = None


class Fold(msgspec.Struct, array_like=True):
    count: int = 0
    first_ts: int | None = None
    paths: list[PathFold] = []


class SlotState(msgspec.Struct, array_like=True):
    entries: list[Entry] = []
    fold: Fold | None = None


class SeqFold(msgspec.Struct, array_like=True):
    last: list[int | None] = []
    hit: bool = False
    upto: int | None = None  # the latest timestamp folded in (None: unknown, older states)


class SeqState(msgspec.Struct, array_like=True):
    entries: list[Entry] = []
    fold: SeqFold | None = None


class ProfileState(msgspec.Struct, array_like=True):
    fingerprint: str = ""
    slots: dict[str, SlotState] = {}
    seqs: dict[str, SeqState] = {}
    results: dict[str, bool] = {}
    wakes: dict[str, int] = {}


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ProfileState)


def encode(state: ProfileState) -> bytes:
    return _encoder.encode(state)


def decode(data: bytes | None) -> ProfileState:
    return ProfileState() if not data else _decoder.decode(data)


def _key(e: Entry) -> tuple[int, str]:
    return (e.ts, e.mid)


def insert(st: SlotState | SeqState, entry: Entry) -> None:
    """Insert keeping (ts, message id) order; a repeated message id is ignored."""
    entries = st.entries
    if not entries or (entry.ts, entry.mid) > (entries[-1].ts, entries[-1].mid):
        entries.append(entry)  # the usual case: the newest event
        return
    i = bisect.bisect_left(entries, _key(entry), key=_key)
    if i < len(entries) and _key(entries[i]) == _key(entry):
        return
    entries.insert(i, entry)


def add_to_fold(f: Fold, e: Entry, counts: bool) -> None:
    f.count += 1
    f.first_ts = e.ts if f.first_ts is None else min(f.first_ts, e.ts)
    while len(f.paths) < len(e.vals):
        f.paths.append(PathFold())
    for pf, raw in zip(f.paths, e.vals, strict=False):
        _add_value(pf, e, raw, counts)


def _add_value(pf: PathFold, e: Entry, raw: Any, counts: bool) -> None:
    num = to_num(raw)
    if num is not None:
        pf.sum += num
        pf.n += 1
        pf.min = num if pf.min is None else min(pf.min, num)
        pf.max = num if pf.max is None else max(pf.max, num)
    text = to_text(raw)
    if text is not None:
        at = (e.ts, e.mid, text)
        if pf.first is None or at[:2] < pf.first[:2]:
            pf.first = at
        if pf.last is None or at[:2] > pf.last[:2]:
            pf.last = at
        if counts:
            pf.counts = pf.counts or {}
            pf.counts[text] = pf.counts.get(text, 0) + 1
    if raw is not _ABSENT and (pf.raw_last is None or (e.ts, e.mid) > pf.raw_last[:2]):
        pf.raw_last = (e.ts, e.mid, raw)


_ABSENT = object()


def fold(st: SlotState, *, now_ms: int, horizon_ms: int | None, npaths: int, counts: bool) -> None:
    """Fold (or, with ``horizon_ms=None`` meaning no fold wanted, drop) old entries.

    ``horizon_ms`` is the look-back kept as entries; entries with ``ts <= now - horizon``
    go to the fold. Pass ``horizon_ms`` negative-free; to drop instead of fold see :func:`prune`.
    """
    if horizon_ms is None or not st.entries or st.entries[0].ts > now_ms - horizon_ms:
        return
    cut = after(st.entries, now_ms - horizon_ms)
    if cut == 0:
        return
    if st.fold is None:
        st.fold = Fold(paths=[PathFold() for _ in range(npaths)])
    for e in st.entries[:cut]:
        add_to_fold(st.fold, e, counts)
    del st.entries[:cut]


def prune(st: SlotState | SeqState, *, now_ms: int, horizon_ms: int) -> None:
    """Drop entries with ``ts <= now - horizon`` (no rule can see them again)."""
    if not st.entries or st.entries[0].ts > now_ms - horizon_ms:
        return
    del st.entries[: after(st.entries, now_ms - horizon_ms)]


def merge_fold(a: Fold | None, b: Fold | None, counts: bool) -> Fold | None:
    """Combine two folds (profile merge); every field is commutative."""
    if a is None or b is None:
        return a or b
    out = Fold(count=a.count + b.count, paths=[])
    firsts = [t for t in (a.first_ts, b.first_ts) if t is not None]
    out.first_ts = min(firsts) if firsts else None
    for pa, pb in zip(a.paths, b.paths, strict=False):
        pf = PathFold(sum=pa.sum + pb.sum, n=pa.n + pb.n)
        mins = [v for v in (pa.min, pb.min) if v is not None]
        maxs = [v for v in (pa.max, pb.max) if v is not None]
        pf.min, pf.max = (min(mins) if mins else None), (max(maxs) if maxs else None)
        ff = [x for x in (pa.first, pb.first) if x is not None]
        ll = [x for x in (pa.last, pb.last) if x is not None]
        rr = [x for x in (pa.raw_last, pb.raw_last) if x is not None]
        pf.first = min(ff, key=lambda x: x[:2]) if ff else None
        pf.last = max(ll, key=lambda x: x[:2]) if ll else None
        pf.raw_last = max(rr, key=lambda x: x[:2]) if rr else None
        if counts and (pa.counts or pb.counts):
            merged = dict(pa.counts or {})
            for k, v in (pb.counts or {}).items():
                merged[k] = merged.get(k, 0) + v
            pf.counts = merged
        out.paths.append(pf)
    return out
