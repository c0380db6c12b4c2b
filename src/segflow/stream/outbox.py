"""The changes outbox: written in the processor's transaction, read as a :class:`ChangeFeed`.

>>> from segflow.stream.state import MemoryStateStore
>>> from segflow.spec import ProfileMerged
>>> store = MemoryStateStore()
>>> tx = store.begin_global()
>>> tx.set("outbox", "0000000000000001", encode_change(ProfileMerged(survivor="a", absorbed="b",
...        reason="r", at_ms=1, sequence=1))); tx.commit()
>>> feed = StateChangeFeed(store.reader())
>>> [(s, c.absorbed) for s, c in feed.read(0)], feed.last_seq()
([(1, 'b')], 1)
"""

from __future__ import annotations

import msgspec

from segflow.spec.changes import AnyChange
from segflow.stream.keys import OUTBOX, seq_key
from segflow.stream.state.base import StateReader

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[AnyChange] = msgspec.msgpack.Decoder(AnyChange)


def encode_change(change: AnyChange) -> bytes:
    return _encoder.encode(change)


def decode_change(data: bytes) -> AnyChange:
    return _decoder.decode(data)


class StateChangeFeed:
    """``segflow.spec.ChangeFeed`` over the committed outbox of a state store."""

    def __init__(self, reader: StateReader) -> None:
        self.reader = reader

    def close(self) -> None:
        """Close the read connection."""
        self.reader.close()

    def read(self, after_seq: int, limit: int = 1000) -> list[tuple[int, AnyChange]]:
        rows = self.reader.scan(OUTBOX, seq_key(after_seq + 1), "g", limit=limit)
        return [(int(k, 16), decode_change(v)) for k, v in rows]

    def last_seq(self) -> int:
        """The sequence number of the newest committed change (0 when there is none)."""
        rows = self.reader.scan(OUTBOX, seq_key(1), "g", reverse=True, limit=1)
        return int(rows[0][0], 16) if rows else 0
