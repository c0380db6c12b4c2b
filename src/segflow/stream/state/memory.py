"""In-memory state store (tests, replays): same interface and semantics as the SQLite one.

>>> store = MemoryStateStore()
>>> tx = store.partition(0).begin()
>>> tx.set("profiles", "p1", b"x"); tx.set_offset(3); tx.commit()
>>> store.reader().get("profiles", "p1"), store.partition(0).begin().get_offset()
(b'x', 3)
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable

from segflow.stream.state.base import Offsets, Partition

_Key = tuple[str, str]


class MemoryStateStore:
    """Dict-backed store; commits are atomic under one lock."""

    exclusive = True  # in this process only

    def __init__(self) -> None:
        self.data: dict[str, dict[str, bytes]] = {}
        self.offsets: dict[int, int] = {}
        self.lock = threading.RLock()

    def partition(self, partition: int) -> Partition[MemoryTransaction]:
        return Partition(functools.partial(MemoryTransaction, self), partition)

    def begin_global(self) -> MemoryTransaction:
        return MemoryTransaction(self, None)

    def reader(self) -> MemoryReader:
        return MemoryReader(self)

    def close(self) -> None:
        return None


def _scan(
    items: dict[str, bytes], start: str, end: str, reverse: bool, limit: int | None
) -> list[tuple[str, bytes]]:
    keys = sorted((k for k in items if start <= k < end), reverse=reverse)
    if limit is not None:
        keys = keys[:limit]
    return [(k, items[k]) for k in keys]


class MemoryTransaction(Offsets):
    def __init__(self, store: MemoryStateStore, partition: int | None) -> None:
        self.store = store
        self.partition = partition
        self.pending: dict[_Key, bytes | None] = {}
        self.offsets: dict[int, int] = {}
        store.lock.acquire()  # one writer at a time, as with SQLite's BEGIN IMMEDIATE
        self.open = True

    def get(self, ns: str, key: str) -> bytes | None:
        if (ns, key) in self.pending:
            return self.pending[(ns, key)]
        with self.store.lock:
            return self.store.data.get(ns, {}).get(key)

    def set(self, ns: str, key: str, value: bytes) -> None:
        self.pending[(ns, key)] = value

    def delete(self, ns: str, key: str) -> None:
        self.pending[(ns, key)] = None

    def prefetch(self, ns: str, keys: Iterable[str]) -> None:
        return None  # everything is in memory already

    def scan(
        self, ns: str, start: str, end: str, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        with self.store.lock:
            view = dict(self.store.data.get(ns, {}))
        for (pns, key), value in self.pending.items():
            if pns != ns:
                continue
            if value is None:
                view.pop(key, None)
            else:
                view[key] = value
        return _scan(view, start, end, reverse, limit)

    def committed(self, partition: int) -> int:
        with self.store.lock:
            return self.store.offsets.get(partition, 0)

    def commit(self) -> None:
        with self.store.lock:
            for (ns, key), value in self.pending.items():
                bucket = self.store.data.setdefault(ns, {})
                if value is None:
                    bucket.pop(key, None)
                else:
                    bucket[key] = value
            self.store.offsets.update(self.offsets)
        self.pending.clear()
        self._release()

    def rollback(self) -> None:
        self.pending.clear()
        self.offsets.clear()
        self._release()

    def _release(self) -> None:
        if self.open:
            self.open = False
            self.store.lock.release()


class MemoryReader:
    def __init__(self, store: MemoryStateStore) -> None:
        self.store = store

    def get(self, ns: str, key: str) -> bytes | None:
        with self.store.lock:
            return self.store.data.get(ns, {}).get(key)

    def scan(
        self, ns: str, start: str, end: str, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        with self.store.lock:
            return _scan(self.store.data.get(ns, {}), start, end, reverse, limit)

    def close(self) -> None:
        return None
