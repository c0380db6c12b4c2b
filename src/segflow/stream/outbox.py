"""The changes outbox: written in the processor's transaction, read as a :class:`ChangeFeed`.

Every change has a sequence number (``meta/outbox_seq`` counts them). A batch's changes are
stored as **one row**: key ``{first sequence:016x}``, value the msgpack array of its changes
in order (a row per change cost a write per change, most of them the ``IdentityLinked`` of
newcomers). An erased change (a deletion regulation) becomes ``nil`` in its row, so the
sequence numbers of the others stay.

A row starts with the format number ``2``; then each item is a change (a map), ``nil``, or a
:class:`MembershipRun`: one evaluation's membership changes of one profile (an array: the
profile, the two times, the first sequence, the segments entered and exited), which stands for
as many positions as it has segments. With 100 rules a newcomer enters ~14 segments at once;
as maps those changes were ~150 bytes each, 60% of a batch's bytes (issue #15). Rows written
before — an array of maps and ``nil`` (format 1), or one change each — are read as they are.

>>> from segflow.stream.state import MemoryStateStore
>>> from segflow.spec import ProfileMerged
>>> store = MemoryStateStore()
>>> tx = store.begin_global()
>>> merged = [ProfileMerged(survivor="a", absorbed=b, reason="r", at_ms=1, sequence=1) for b in "bc"]
>>> tx.set("outbox", seq_key(1), encode_changes(merged)); tx.commit()
>>> feed = StateChangeFeed(store.reader())
>>> [(s, c.absorbed) for s, c in feed.read(0)], feed.read(1)[0][0], feed.last_seq()
([(1, 'b'), (2, 'c')], 2, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from segflow.spec.changes import AnyChange, MembershipChange
from segflow.stream.keys import OUTBOX, seq_key
from segflow.stream.state.base import StateReader

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[AnyChange] = msgspec.msgpack.Decoder(AnyChange)
_rows: msgspec.msgpack.Decoder[list[AnyChange | None]] = msgspec.msgpack.Decoder(
    list[AnyChange | None]
)
_END = "g"  # past every hexadecimal key
FORMAT = 2  # the first item of a row written now (module docstring)


class MembershipRun(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The membership changes one evaluation made to one profile, numbered in a row: the
    segments ``entered`` then ``exited`` (each sorted), with the profile's sequence numbers
    from ``first_sequence`` on, all valid from ``at_ms`` and recorded at ``recorded_at_ms``.

    >>> run = MembershipRun("p1", 5, 7, 3, ["a", "b"], ["c"])
    >>> len(run), [(c.segment, c.kind, c.sequence) for c in run.changes()]
    (3, [('a', 'entered', 3), ('b', 'entered', 4), ('c', 'exited', 5)])
    """

    profile_id: str
    at_ms: int
    recorded_at_ms: int
    first_sequence: int
    entered: list[str]
    exited: list[str]

    def __len__(self) -> int:
        return len(self.entered) + len(self.exited)

    def changes(self) -> list[MembershipChange]:
        """The changes it stands for, in order."""
        out = []
        seq = self.first_sequence
        kind: Literal["entered", "exited"] = "entered"
        for segments in (self.entered, self.exited):
            for segment in segments:
                out.append(
                    MembershipChange(
                        profile_id=self.profile_id,
                        segment=segment,
                        kind=kind,
                        at_ms=self.at_ms,
                        sequence=seq,
                        recorded_at_ms=self.recorded_at_ms,
                    )
                )
                seq += 1
            kind = "exited"
        return out


Item = AnyChange | MembershipRun | None
_run = msgspec.msgpack.Decoder(MembershipRun)
_items = msgspec.msgpack.Decoder(list[msgspec.Raw])


def encode_change(change: AnyChange) -> bytes:
    return _encoder.encode(change)


def decode_change(data: bytes) -> AnyChange:
    return _decoder.decode(data)


def encode_changes(changes: Sequence[Item]) -> bytes:
    """One outbox row: ``changes`` in order (``None``: an erased change; a
    :class:`MembershipRun`: its changes).

    >>> run = MembershipRun("p1", 5, 7, 1, ["a"], ["b"])
    >>> [(c.segment, c.sequence) for c in decode_row(encode_changes([run, None]))[:2]]
    [('a', 1), ('b', 2)]
    """
    return _encoder.encode([FORMAT, *changes])


def decode_row(data: bytes) -> list[AnyChange | None]:
    """The changes of one outbox row, in order, a :class:`MembershipRun` expanded (rows of
    format 1 and of one change each, as written before, are read too)."""
    if _is_map(data[:1]):  # one change
        return [_decoder.decode(data)]
    items = _items.decode(data)
    if not items or bytes(items[0]) != b"\x02":  # format 1: changes and nil
        return _rows.decode(data)
    out: list[AnyChange | None] = []
    for raw in items[1:]:
        first = bytes(raw)[:1]
        if first == b"\xc0":
            out.append(None)
        elif _is_map(first):
            out.append(_decoder.decode(raw))
        else:
            out.extend(_run.decode(raw).changes())
    return out


def _is_map(first: bytes) -> bool:
    """Whether a msgpack value starting with the byte ``first`` is a map."""
    return bool(first) and (0x80 <= first[0] <= 0x8F or first in (b"\xde", b"\xdf"))


def row_sequences(key: str, data: bytes) -> list[tuple[int, AnyChange | None]]:
    """``(sequence, change)`` of every position of the row ``key``."""
    first = int(key, 16)
    return list(enumerate(decode_row(data), start=first))


class StateChangeFeed:
    """``segflow.spec.ChangeFeed`` over the committed outbox of a state store.

    A row holds a whole batch's changes (thousands under load) and a reader asks for fewer
    at a time (delivery: 1,000), so the row a read ends in is where the next one starts: the
    last row decoded is kept (with its bytes, so a row rewritten since, by an erasure, is
    decoded again), and a read fetches the rows it needs one scan at a time, not 64 rows of
    which it uses one.
    """

    def __init__(self, reader: StateReader) -> None:
        self.reader = reader
        self._row: tuple[str, bytes, list[tuple[int, AnyChange | None]]] | None = None

    def close(self) -> None:
        """Close the read connection."""
        self.reader.close()

    def read(self, after_seq: int, limit: int = 1000) -> list[tuple[int, AnyChange]]:
        """Up to ``limit`` changes with a sequence number above ``after_seq``, in order."""
        start = seq_key(after_seq + 1)
        out: list[tuple[int, AnyChange]] = []
        # the row holding after_seq + 1 starts at or before it
        found = self.reader.scan(OUTBOX, "", start + "\x00", reverse=True, limit=1)
        if found:
            if self._collect(found[0], after_seq, out, limit):
                return out[:limit]
            start = found[0][0] + "\x00"
        size = 1  # rows a scan asks for: one first (it may hold the whole read), then more
        while True:
            rows = self.reader.scan(OUTBOX, start, _END, limit=size)
            for row in rows:
                if self._collect(row, after_seq, out, limit):
                    return out[:limit]
            if len(rows) < size:
                return out
            start, size = rows[-1][0] + "\x00", 64

    def _collect(
        self, row: tuple[str, bytes], after_seq: int, out: list[tuple[int, AnyChange]], limit: int
    ) -> bool:
        """Add the changes of ``row`` after ``after_seq`` to ``out``; whether it has ``limit``."""
        key, value = row
        cached = self._row
        if cached is not None and cached[0] == key and cached[1] == value:
            sequences = cached[2]
        else:
            sequences = row_sequences(key, value)
            self._row = (key, value, sequences)
        for seq, change in sequences:
            if seq > after_seq and change is not None:
                out.append((seq, change))
        return len(out) >= limit

    def last_seq(self) -> int:
        """The sequence number of the newest committed change (0 when there is none)."""
        rows = self.reader.scan(OUTBOX, seq_key(1), _END, reverse=True, limit=1)
        if not rows:
            return 0
        key, value = rows[0]
        return int(key, 16) + len(decode_row(value)) - 1
