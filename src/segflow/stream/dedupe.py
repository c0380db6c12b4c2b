"""Duplicates the log let through, dropped by message id in the processor's state.

The embedded log refuses a ``(source_id, message_id)`` it appended within its dedupe window
(:mod:`segflow.log.dedupe`) in the same transaction as the append, so no duplicate reaches
it. The Kafka driver cannot: its collectors reserve a message id, produce, and confirm the
reservation after the broker's ack, and a collector that dies between the ack and the confirm
leaves a record whose retry is appended again (docs/scaling.md). The processor therefore
drops, within the same window, a record whose message id its partition already processed:
the check and the note of the first sighting commit with the offsets and the profiles, so a
duplicate is never counted twice, whatever the collector did and however the processor stops.

A retried message has the same identity key as the original (its ids come from the same
SDK call), so it lands in the same partition: the index is partition-local (what the
scale-out issue's shared-nothing processors need). Keys live in the state's ``seen``
namespace, ``{partition:04x}|{bucket:012x}|{digest}``, where ``bucket`` is the first sighting's
``received_at_ms`` divided by the window, so whole buckets older than the window are
deleted by a range scan instead of key by key against a time index; a lookup reads the
record's own bucket and the one before, and the one after when the record is within
:data:`SKEW_MS` of it (collectors' clocks may disagree by that much: a retry stamped
earlier than its original), and a record is a duplicate when
``|received_at - first| <= window``, as the embedded log decides.

Cost: two point reads (one bulk prefetch per batch) and one write per record, plus one
delete when its bucket ages out; ``stream.dedupe`` turns it on or off (``auto``: on with the
kafka driver, where it is needed).

>>> from segflow.log.base import Record
>>> from segflow.spec.events import Event
>>> from segflow.stream.state import MemoryStateStore
>>> def rec(offset, message_id, at):
...     e = Event(type="track", message_id=message_id, source_id="s", timestamp_ms=at,
...               received_at_ms=at, user_id="u", event="E")
...     return Record(0, offset, e)
>>> seen = SeenIndex(window_ms=1_000)
>>> store = MemoryStateStore()
>>> tx = store.begin_global()
>>> [r.offset for r in seen.filter(tx, [rec(0, "m1", 10), rec(1, "m1", 20), rec(2, "m2", 30)])]
[0, 2]
>>> [r.offset for r in seen.filter(tx, [rec(3, "m2", 900), rec(4, "m1", 1_500)])]
[4]
"""

from __future__ import annotations

from collections.abc import Sequence

from segflow.log.base import Record
from segflow.log.dedupe import dedupe_key
from segflow.stream import keys
from segflow.stream.state.base import StateTransaction

PRUNE_LIMIT = 10_000  # bucket keys deleted per batch at most (a batch adds ~ as many)
SKEW_MS = 5 * 60_000  # collectors' clocks may disagree by this much (the next bucket is read)


def seen_key(partition: int, bucket: int, digest: str) -> str:
    """The ``seen`` key of a message first seen in ``bucket`` of ``partition``.

    >>> seen_key(3, 17, "ab")
    '0003|000000000011|ab'
    """
    return f"{partition:04x}|{_bucket(bucket)}|{digest}"


def _bucket(bucket: int) -> str:
    return f"{max(bucket, 0):012x}"


class SeenIndex:
    """The message ids each partition processed within ``window_ms`` (module docstring)."""

    def __init__(self, window_ms: int) -> None:
        if window_ms <= 0:
            raise ValueError("the dedupe window must be positive")
        self.window_ms = window_ms
        self._pruned: dict[int, int] = {}  # partition -> buckets below this are gone

    def filter(self, tx: StateTransaction, records: Sequence[Record]) -> list[Record]:
        """``records`` without those whose message id their partition processed within the
        window (earlier in this list included); notes the others as seen, in ``tx``."""
        window, skew = self.window_ms, min(SKEW_MS, self.window_ms)
        hexes: dict[int, str] = {}  # bucket -> its key part
        found = []
        wanted = []
        for record in records:
            event = record.event
            at = event.received_at_ms
            bucket = at // window
            head = f"{record.partition:04x}|"  # seen_key's layout, its parts built once
            tail = "|" + dedupe_key(event.source_id, event.message_id).hex()
            near = (bucket, bucket - 1, bucket + 1) if at + skew >= (bucket + 1) * window else (
                bucket, bucket - 1)  # fmt: skip
            names = []
            for b in near:
                text = hexes.get(b)
                if text is None:
                    text = hexes[b] = _bucket(b)
                names.append(head + text + tail)
            found.append((record, at, bucket, names))
            wanted += names
        tx.prefetch(keys.SEEN, wanted)
        get = tx.get
        kept: list[Record] = []
        newest: dict[int, int] = {}  # partition -> newest bucket written
        for record, at, bucket, names in found:
            first = None
            for name in names:  # reads this transaction's writes: earlier records of the list
                raw = get(keys.SEEN, name)
                if raw is not None:
                    first = int(raw)
                    break
            if first is not None and abs(at - first) <= window:
                continue
            tx.set(keys.SEEN, names[0], str(at).encode())
            partition = record.partition
            if bucket > newest.get(partition, -1):
                newest[partition] = bucket
            kept.append(record)
        for partition, bucket in newest.items():
            self._prune(tx, partition, bucket)
        return kept

    def _prune(self, tx: StateTransaction, partition: int, bucket: int) -> None:
        """Delete the partition's buckets before ``bucket - 2``, up to :data:`PRUNE_LIMIT`
        keys a batch: a later record is in ``bucket - 1`` or after (a clock at most a window
        behind), and reads its own bucket and its two neighbours."""
        below = bucket - 2
        if below <= self._pruned.get(partition, 0):
            return
        lo, hi = f"{partition:04x}|", seen_key(partition, below, "")
        rows = tx.scan(keys.SEEN, lo, hi, limit=PRUNE_LIMIT)
        for key, _ in rows:
            tx.delete(keys.SEEN, key)
        if len(rows) < PRUNE_LIMIT:
            self._pruned[partition] = below
