"""The changes outbox: written in the processor's transaction, read as a :class:`ChangeFeed`.

Every change has a sequence number (``meta/outbox_seq`` counts them). A batch's changes are
stored as **one row**: key ``{first sequence:016x}``, value the msgpack array of its changes
in order (a row per change cost a write per change, most of them the ``IdentityLinked`` of
newcomers). An erased change (a deletion regulation) becomes ``nil`` in its row, so the
sequence numbers of the others stay. Rows of one change each, as written before, are read as
they are.

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

import msgspec

from segflow.spec.changes import AnyChange
from segflow.stream.keys import OUTBOX, seq_key
from segflow.stream.state.base import StateReader

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[AnyChange] = msgspec.msgpack.Decoder(AnyChange)
_rows: msgspec.msgpack.Decoder[list[AnyChange | None]] = msgspec.msgpack.Decoder(
    list[AnyChange | None]
)
_END = "g"  # past every hexadecimal key


def encode_change(change: AnyChange) -> bytes:
    return _encoder.encode(change)


def decode_change(data: bytes) -> AnyChange:
    return _decoder.decode(data)


def encode_changes(changes: Sequence[AnyChange | None]) -> bytes:
    """One outbox row: ``changes`` in order (``None``: an erased change)."""
    return _encoder.encode(changes)


def decode_row(data: bytes) -> list[AnyChange | None]:
    """The changes of one outbox row, in order (a row of one change each, as written before
    batches shared rows, is read too)."""
    if (data[:1] and 0x80 <= data[0] <= 0x8F) or data[:1] in (b"\xde", b"\xdf"):  # a map
        return [_decoder.decode(data)]
    return _rows.decode(data)


def row_sequences(key: str, data: bytes) -> list[tuple[int, AnyChange | None]]:
    """``(sequence, change)`` of every position of the row ``key``."""
    first = int(key, 16)
    return list(enumerate(decode_row(data), start=first))


class StateChangeFeed:
    """``segflow.spec.ChangeFeed`` over the committed outbox of a state store."""

    def __init__(self, reader: StateReader) -> None:
        self.reader = reader

    def close(self) -> None:
        """Close the read connection."""
        self.reader.close()

    def read(self, after_seq: int, limit: int = 1000) -> list[tuple[int, AnyChange]]:
        """Up to ``limit`` changes with a sequence number above ``after_seq``, in order."""
        start = seq_key(after_seq + 1)
        # the row holding after_seq + 1 starts at or before it
        found = self.reader.scan(OUTBOX, "", start + "\x00", reverse=True, limit=1)
        if found:
            start = found[0][0]
        out: list[tuple[int, AnyChange]] = []
        while True:
            rows = self.reader.scan(OUTBOX, start, _END, limit=64)
            for key, value in rows:
                for seq, change in row_sequences(key, value):
                    if seq > after_seq and change is not None:
                        out.append((seq, change))
                if len(out) >= limit:
                    return out[:limit]
            if len(rows) < 64:
                return out
            start = rows[-1][0] + "\x00"

    def last_seq(self) -> int:
        """The sequence number of the newest committed change (0 when there is none)."""
        rows = self.reader.scan(OUTBOX, seq_key(1), _END, reverse=True, limit=1)
        if not rows:
            return 0
        key, value = rows[0]
        return int(key, 16) + len(decode_row(value)) - 1
