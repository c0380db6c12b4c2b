"""The kernel's state format, in pure Python: :class:`ProfileState` <-> kernel bytes.

The compiled kernel reads and writes these bytes natively on its hot path; this module is
the format's reference, used where speed does not matter: a state of another format (the
Python evaluator's msgpack) or of another rule set is converted here before the kernel runs,
explanations and merges go through here, and the Python evaluator reads a kernel state with
it — also when the extension is not built.

Layout (little endian; ``varint`` is unsigned LEB128)::

    state    = magic "\\xffSK\\x01", rule set id (8), flags u8,
               nrules u16, has-result bits, result bits (ceil(nrules / 8) bytes each),
               nwakes u16, (rule u16, wake i64) * nwakes,
               nsections u16, section *
    section  = kind u8 (0 event slot, 1 trait slot, 2 sequence), index u16, key id u64,
               [event slots: npaths u8, path id u32 * npaths]
               [trait slots: bytes of predicate bits u8], body_len u32, body
    body     = n u32, widths u8, [base i64], ts * n, row offset * n, rows_len u32, rows,
               has_fold u8, [fold_len u32, fold]
               (widths bit 1: times as u32 after ``base`` — when they span less than 2^32 ms —
               else i64; bit 2: offsets as u16 — when rows_len < 65536 — else u32)
    row      = varint mid length, mid (UTF-8), payload
    payload  = event slot: a value per path; trait slot: a trait value; sequence: varint mask
    value    = tag u8: 0 none | 1 false | 2 true | 3 int i64 | 4 float f64 | 5 text (varint, bytes)
               | 6 big int (f64, varint, decimal text)
    trait    = flags u8 (1 not null, 2 has time), [time f64], predicate bits, varint, msgpack
    fold     = event slot: count i64, has_first u8, first_ts i64, npaths u8, path fold *
               trait slot: count i64, has_first u8, first_ts i64, has_last u8,
                           [ts i64, varint, mid, trait value]
               sequence:   k u8, (has u8, ts i64) * k, hit u8, has_upto u8, upto i64
    path fold = sum f64, n i64, flags u8 (1 min, 2 max, 4 first, 8 last, 16 counts),
               [min f64], [max f64], [first: ts i64, varint, mid, varint, text], [last: same],
               [counts: varint m, (varint, text, count i64) * m]

>>> from segflow.rules.incremental.plan import build_plan
>>> from segflow.rules.incremental.kernel.layout import build_layout
>>> from segflow.rules.incremental.state import ProfileState, SlotState, Entry
>>> lay = build_layout(build_plan({"s": 'sum(x of "A" in last 1 hour) > 1'}, {}))
>>> st = ProfileState(lay.fingerprint, {lay.slots[0].key: SlotState([Entry(5, "m1", (2,))])})
>>> decode(encode(st, lay), lay).slots[lay.slots[0].key].entries
[Entry(ts=5, mid='m1', vals=(2,))]
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from segflow.rules.incremental.kernel.layout import (
    MAGIC,
    Layout,
    SeqLayout,
    SlotLayout,
)
from segflow.rules.incremental.state import (
    Entry,
    Fold,
    PathFold,
    ProfileState,
    SeqFold,
    SeqState,
    SlotState,
)
from segflow.rules.values import compare, to_time_ms

EVENT, TRAIT, SEQ = 0, 1, 2
_I64, _U64, _U32, _U16, _F64 = (struct.Struct(f"<{c}") for c in "qQIHd")
_encode_raw = msgspec.msgpack.Encoder().encode
_decode_raw = msgspec.msgpack.Decoder().decode
_INT64 = range(-(1 << 63), 1 << 63)


def is_kernel_state(data: bytes | None) -> bool:
    """Whether ``data`` is a kernel state (of any rule set).

    >>> is_kernel_state(b"\\xffSK\\x01" + bytes(20)), is_kernel_state(b"\\x95")
    (True, False)
    """
    return bool(data) and data[:4] == MAGIC  # type: ignore[index]


# --- writing ------------------------------------------------------------------------------


def _varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _text(out: bytearray, text: str) -> None:
    raw = text.encode()
    _varint(out, len(raw))
    out += raw


def encode_value(out: bytearray, raw: Any) -> None:
    """One property value as the kernel keeps it (what ``to_num``/``to_text`` read)."""
    if isinstance(raw, bool):
        out.append(2 if raw else 1)
    elif isinstance(raw, int):
        if raw in _INT64:
            out.append(3)
            out += _I64.pack(raw)
        else:
            out.append(6)
            out += _F64.pack(float(raw))
            _text(out, str(raw))
    elif isinstance(raw, float):
        out.append(4)
        out += _F64.pack(raw)
    elif isinstance(raw, str):
        out.append(5)
        _text(out, raw)
    else:
        out.append(0)


def encode_trait(out: bytearray, raw: Any, slot: SlotLayout) -> None:
    """A trait's raw value with what the rules ask of it, computed once."""
    flags, time = (1 if raw is not None else 0), None
    if slot.needs_time:
        time = to_time_ms(raw)
        flags |= 2 if time is not None else 0
    out.append(flags)
    if time is not None:
        out += _F64.pack(time)
    bits = bytearray((len(slot.predicates) + 7) // 8)
    for i, (op, literal) in enumerate(slot.predicates):
        if raw is not None and compare(raw, op, literal):
            bits[i // 8] |= 1 << (i % 8)
    out += bits
    blob = _encode_raw(raw)
    _varint(out, len(blob))
    out += blob


def _body(entries: list[Entry], payload: Any, fold: bytes | None) -> bytes:
    rows = bytearray()
    offsets = []
    for e in entries:
        offsets.append(len(rows))
        _text(rows, e.mid)
        payload(rows, e)
    out = bytearray(_U32.pack(len(entries)))
    ts32 = bool(entries) and entries[-1].ts - entries[0].ts <= 0xFFFFFFFF
    off16 = len(rows) < 0x10000
    out.append(ts32 | off16 << 1)
    if ts32:
        out += _I64.pack(entries[0].ts)
        for e in entries:
            out += _U32.pack(e.ts - entries[0].ts)
    else:
        for e in entries:
            out += _I64.pack(e.ts)
    for o in offsets:
        out += (_U16 if off16 else _U32).pack(o)
    out += _U32.pack(len(rows)) + rows
    if fold is None:
        out.append(0)
    else:
        out += b"\x01" + _U32.pack(len(fold)) + fold
    return bytes(out)


def _text_at(out: bytearray, at: tuple[int, str, str]) -> None:
    out += _I64.pack(at[0])
    _text(out, at[1])
    _text(out, at[2])


def _event_fold(fold: Fold, slot: SlotLayout) -> bytes:
    out = bytearray(_I64.pack(fold.count))
    out += bytes([fold.first_ts is not None]) + _I64.pack(fold.first_ts or 0)
    out.append(len(slot.paths))
    for path in slot.paths:
        i = slot.plan_paths.index(path)
        pf = fold.paths[i] if i < len(fold.paths) else PathFold()
        out += _F64.pack(pf.sum) + _I64.pack(pf.n)
        flags = sum(
            bit
            for bit, v in ((1, pf.min), (2, pf.max), (4, pf.first), (8, pf.last), (16, pf.counts))
            if v is not None
        )
        out.append(flags)
        if pf.min is not None:
            out += _F64.pack(pf.min)
        if pf.max is not None:
            out += _F64.pack(pf.max)
        for at in (pf.first, pf.last):
            if at is not None:
                _text_at(out, at)
        if pf.counts is not None:
            _varint(out, len(pf.counts))
            for text in sorted(pf.counts, key=str.encode):
                _text(out, text)
                out += _I64.pack(pf.counts[text])
    return bytes(out)


def _trait_fold(fold: Fold, slot: SlotLayout) -> bytes:
    out = bytearray(_I64.pack(fold.count))
    out += bytes([fold.first_ts is not None]) + _I64.pack(fold.first_ts or 0)
    last = fold.paths[0].raw_last if fold.paths else None
    out.append(last is not None)
    if last is not None:
        out += _I64.pack(last[0])
        _text(out, last[1])
        encode_trait(out, last[2], slot)
    return bytes(out)


def _seq_fold(fold: SeqFold) -> bytes:
    out = bytearray([len(fold.last)])
    for t in fold.last:
        out += bytes([t is not None]) + _I64.pack(t or 0)
    out += bytes([fold.hit, fold.upto is not None]) + _I64.pack(fold.upto or 0)
    return bytes(out)


def section_prefix(index: int, part: SlotLayout | SeqLayout) -> bytes:
    """A section's first bytes: its kind, index and key id (and an event slot's path ids)."""
    kind = SEQ if isinstance(part, SeqLayout) else TRAIT if part.kind == "trait" else EVENT
    out = bytearray([kind]) + _U16.pack(index) + _U64.pack(part.key_id)
    if kind == EVENT:
        assert isinstance(part, SlotLayout)
        out.append(len(part.paths))
        for pid in part.path_ids:
            out += _U32.pack(pid)
    elif kind == TRAIT:
        assert isinstance(part, SlotLayout)
        out.append((len(part.predicates) + 7) // 8)
    return bytes(out)


def _section(index: int, part: SlotLayout | SeqLayout, body: bytes) -> bytes:
    return section_prefix(index, part) + _U32.pack(len(body)) + body


def encode(st: ProfileState, layout: Layout) -> bytes:
    """``st`` (of ``layout``'s plan: slot values in the plan's path order) as kernel bytes.

    Results and timers are kept only when ``st`` is of this rule set (its fingerprint)."""
    out = bytearray(layout.header)
    out.append(0)
    n = len(layout.rules)
    out += _U16.pack(n)
    same = st.fingerprint == layout.fingerprint
    have, value = bytearray((n + 7) // 8), bytearray((n + 7) // 8)
    wakes = []
    for i, name in enumerate(layout.rules):
        if same and name in st.results:
            have[i // 8] |= 1 << (i % 8)
            if st.results[name]:
                value[i // 8] |= 1 << (i % 8)
        if same and name in st.wakes:
            wakes.append((i, st.wakes[name]))
    out += have + value + _U16.pack(len(wakes))
    for i, wake in wakes:
        out += _U16.pack(i) + _I64.pack(wake)
    sections = []
    for i, slot in enumerate(layout.slots):
        sst = st.slots.get(slot.key)
        if sst is None:
            continue
        if slot.kind == "trait":

            def trait_row(rows: bytearray, e: Entry, slot: SlotLayout = slot) -> None:
                encode_trait(rows, e.vals[0] if e.vals else None, slot)

            fold = None if sst.fold is None else _trait_fold(sst.fold, slot)
            body = _body(sst.entries, trait_row, fold)
            sections.append(_section(i, slot, body))
            continue
        order = [slot.plan_paths.index(p) for p in slot.paths]

        def event_row(rows: bytearray, e: Entry, order: list[int] = order) -> None:
            for j in order:
                encode_value(rows, e.vals[j] if j < len(e.vals) else None)

        fold = None if sst.fold is None else _event_fold(sst.fold, slot)
        body = _body(sst.entries, event_row, fold)
        sections.append(_section(i, slot, body))
    for i, seq in enumerate(layout.seqs):
        qst = st.seqs.get(seq.key)
        if qst is None:
            continue

        def mask_row(rows: bytearray, e: Entry) -> None:
            _varint(rows, e.vals[0])

        fold = None if qst.fold is None else _seq_fold(qst.fold)
        sections.append(_section(i, seq, _body(qst.entries, mask_row, fold)))
    out += _U16.pack(len(sections))
    for section in sections:
        out += section
    return bytes(out)


# --- reading ------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise ValueError("a truncated kernel state")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise ValueError("a truncated kernel state")
        self.pos = pos + 1
        return self.data[pos]

    def unpack(self, fmt: struct.Struct) -> Any:
        return fmt.unpack(self.take(fmt.size))[0]

    def varint(self) -> int:
        n, shift = 0, 0
        while True:
            byte = self.u8()
            n |= (byte & 0x7F) << shift
            if byte < 0x80:
                return n
            shift += 7

    def text(self) -> str:
        data, pos = self.data, self.pos
        if pos < self.end and data[pos] < 0x80:  # a one-byte length, the usual case
            end = pos + 1 + data[pos]
            if end <= self.end:
                self.pos = end
                return data[pos + 1 : end].decode()
        return self.take(self.varint()).decode()


def decode_value(r: _Reader) -> Any:
    tag = r.u8()
    if tag in (0, 1, 2):
        return (None, False, True)[tag]
    if tag == 3:
        return r.unpack(_I64)
    if tag == 4:
        return r.unpack(_F64)
    if tag == 5:
        return r.text()
    if tag == 6:
        r.unpack(_F64)
        return int(r.text())
    raise ValueError(f"unknown value tag {tag} in a kernel state")


def decode_trait(r: _Reader, nbits: int) -> Any:
    flags = r.u8()
    if flags & 2:
        r.unpack(_F64)
    r.take(nbits)
    return _decode_raw(r.take(r.varint()))


def _entries(r: _Reader, row: Any) -> list[Entry]:
    n, widths = r.unpack(_U32), r.u8()
    if widths & 1:
        base = r.unpack(_I64)
        ts = [base + t for t in struct.unpack(f"<{n}I", r.take(4 * n))]
    else:
        ts = list(struct.unpack(f"<{n}q", r.take(8 * n)))
    r.take((2 if widths & 2 else 4) * n)  # row offsets: the rows are read in order
    rows = _Reader(r.data, r.pos + 4, r.pos + 4 + r.unpack(_U32))
    r.pos = rows.end
    return [Entry(t, rows.text(), row(rows)) for t in ts]


def _text_at_of(r: _Reader) -> tuple[int, str, str]:
    return (r.unpack(_I64), r.text(), r.text())


def _read_event_fold(r: _Reader, old_ids: list[int], slot: SlotLayout) -> Fold:
    count, has_first, first = r.unpack(_I64), r.u8(), r.unpack(_I64)
    found: dict[int, PathFold] = {}
    for pid in old_ids[: r.u8()]:
        pf = PathFold(sum=r.unpack(_F64), n=r.unpack(_I64))
        flags = r.u8()
        pf.min = r.unpack(_F64) if flags & 1 else None
        pf.max = r.unpack(_F64) if flags & 2 else None
        pf.first = _text_at_of(r) if flags & 4 else None
        pf.last = _text_at_of(r) if flags & 8 else None
        if flags & 16:
            pf.counts = {}
            for _ in range(r.varint()):
                text = r.text()
                pf.counts[text] = r.unpack(_I64)
        found[pid] = pf
    ids = dict(zip(slot.paths, slot.path_ids, strict=True))
    paths = [found.get(ids[p], PathFold()) for p in slot.plan_paths]
    return Fold(count=count, first_ts=first if has_first else None, paths=paths)


def _read_trait_fold(r: _Reader, nbits: int) -> Fold:
    count, has_first, first = r.unpack(_I64), r.u8(), r.unpack(_I64)
    pf = PathFold()
    if r.u8():
        ts, mid = r.unpack(_I64), r.text()
        pf.raw_last = (ts, mid, decode_trait(r, nbits))
    return Fold(count=count, first_ts=first if has_first else None, paths=[pf])


def _read_seq_fold(r: _Reader) -> SeqFold:
    last: list[int | None] = []
    for _ in range(r.u8()):
        has, t = r.u8(), r.unpack(_I64)
        last.append(t if has else None)
    hit, has_upto, upto = r.u8(), r.u8(), r.unpack(_I64)
    return SeqFold(last, bool(hit), upto if has_upto else None)


def decode(data: bytes, layout: Layout) -> ProfileState:
    """A kernel state as a :class:`ProfileState` of ``layout``'s plan.

    Slots and sequences are found by key (those the plan does not have are dropped), property
    values by path; results and timers are kept only when the state is of this rule set
    (otherwise the fingerprint is left empty, and the evaluator recomputes them)."""
    r = _Reader(data)
    if r.take(4) != MAGIC:
        raise ValueError("not a kernel state (or of another format version)")
    same = r.take(8) == layout.fingerprint_bytes
    r.u8()
    n = r.unpack(_U16)
    have, value = r.take((n + 7) // 8), r.take((n + 7) // 8)
    st = ProfileState(fingerprint=layout.fingerprint if same else "")
    names = layout.rules if same and n == len(layout.rules) else None
    for i in range(n):
        if names is not None and have[i // 8] >> (i % 8) & 1:
            st.results[names[i]] = bool(value[i // 8] >> (i % 8) & 1)
    for _ in range(r.unpack(_U16)):
        i, wake = r.unpack(_U16), r.unpack(_I64)
        if names is not None:
            st.wakes[names[i]] = wake
    slots = {s.key_id: s for s in layout.slots}
    seqs = {q.key_id: q for q in layout.seqs}
    for _ in range(r.unpack(_U16)):
        kind = r.u8()
        r.unpack(_U16)
        kid = r.unpack(_U64)
        old_ids = [r.unpack(_U32) for _ in range(r.u8())] if kind == EVENT else []
        nbits = r.u8() if kind == TRAIT else 0
        size = r.unpack(_U32)
        body = _Reader(data, r.pos, r.pos + size)
        r.pos += size
        if kind == SEQ and kid in seqs:
            entries = _entries(body, lambda rows: (rows.varint(),))
            seq_fold = _read_seq_fold(body) if body.u8() and body.unpack(_U32) else None
            st.seqs[seqs[kid].key] = SeqState(entries, seq_fold)
        elif kind == TRAIT and kid in slots and slots[kid].kind == "trait":
            slot = slots[kid]
            entries = _entries(body, lambda rows, k=nbits: (decode_trait(rows, k),))
            fold = _read_trait_fold(body, nbits) if body.u8() and body.unpack(_U32) else None
            st.slots[slot.key] = SlotState(entries, fold)
        elif kind == EVENT and kid in slots and slots[kid].kind == "event":
            slot = slots[kid]
            entries = _entries(
                body, lambda rows, k=len(old_ids): [decode_value(rows) for _ in range(k)]
            )
            plan_pos = slot.plan_pos_of_id  # the stored paths that the plan still reads
            places = [(i, plan_pos[pid]) for i, pid in enumerate(old_ids) if pid in plan_pos]
            width = len(slot.plan_paths)
            remapped = []
            for e in entries:
                vals: list[Any] = [None] * width
                for i, j in places:
                    vals[j] = e.vals[i]
                remapped.append(Entry(e.ts, e.mid, tuple(vals)))
            fold = None
            if body.u8():
                body.unpack(_U32)
                fold = _read_event_fold(body, old_ids, slot)
            st.slots[slot.key] = SlotState(remapped, fold)
    return st
