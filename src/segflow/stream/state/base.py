"""The state store, layered as in quix-streams: store -> partition -> transaction.

A :class:`StateStore` holds namespaced key/value pairs (``str`` keys ordered byte-wise,
``bytes`` values). The processor opens one :class:`StateTransaction` per batch through the
partition it is processing; the transaction buffers writes and commits them with the consumer
offset of that partition, so state and offsets move together or not at all.

Identity is global (an identifier may reach a profile through any partition), so profile
namespaces are shared by all partitions of a store; a partition scopes the consumer offset.
Backends: :mod:`segflow.stream.state.memory` (tests), :mod:`segflow.stream.state.rocksdb`
(the embedded default: one writing process), :mod:`segflow.stream.state.sqlite` (processes of
one host sharing a file) and :mod:`segflow.stream.state.postgres` (hosts sharing a database).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, Protocol, TypeVar


class StateTransaction(Protocol):
    """Reads see this transaction's own writes; nothing is visible to others before ``commit``."""

    def get(self, ns: str, key: str) -> bytes | None: ...

    def set(self, ns: str, key: str, value: bytes) -> None: ...

    def delete(self, ns: str, key: str) -> None: ...

    def prefetch(self, ns: str, keys: Iterable[str]) -> None:
        """A hint: ``keys`` of ``ns`` will be read soon (backends may load them in bulk)."""
        ...

    def scan(
        self, ns: str, start: str, end: str, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        """Pairs with ``start <= key < end`` in key order (descending when ``reverse``)."""
        ...

    def get_offset(self, partition: int | None = None) -> int:
        """The next offset to consume of ``partition`` (default: the transaction's own; 0 when
        never committed)."""
        ...

    def set_offset(self, offset: int, partition: int | None = None) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


_Tx = TypeVar("_Tx", covariant=True)


class Partition(Generic[_Tx]):
    """A partition of a store: its transactions set that partition's offset by default
    (``open_transaction(partition)`` begins one, the store's own transaction type)."""

    def __init__(self, open_transaction: Callable[[int], _Tx], partition: int) -> None:
        self._open = open_transaction
        self._partition = partition

    @property
    def partition(self) -> int:
        return self._partition

    def begin(self) -> _Tx:
        return self._open(self._partition)


class Offsets:
    """The consumer offsets a transaction sets and reads back: its own partition's unless
    another is named (a global transaction must name one). Backends add ``committed``."""

    partition: int | None
    offsets: dict[int, int]

    def which(self, partition: int | None) -> int:
        """``partition``, or the transaction's own."""
        found = self.partition if partition is None else partition
        if found is None:
            raise ValueError("a global transaction needs an explicit partition")
        return found

    def get_offset(self, partition: int | None = None) -> int:
        partition = self.which(partition)
        if partition in self.offsets:
            return self.offsets[partition]
        return self.committed(partition)

    def set_offset(self, offset: int, partition: int | None = None) -> None:
        self.offsets[self.which(partition)] = offset

    def committed(self, partition: int) -> int:
        """The store's committed next offset of ``partition`` (0: never committed)."""
        raise NotImplementedError


class StorePartition(Protocol):
    @property
    def partition(self) -> int: ...

    def begin(self) -> StateTransaction: ...


class StateStore(Protocol):
    """``exclusive``: True when only this process writes the store (RocksDB, memory), so
    committed values may be cached across transactions; False when other processes may
    commit too (SQLite, PostgreSQL)."""

    exclusive: bool

    def partition(self, partition: int) -> StorePartition: ...

    def begin_global(self) -> StateTransaction:
        """A transaction not bound to one partition (a multi-partition batch, timers, admin);
        offsets are set with an explicit ``partition``."""
        ...

    def reader(self) -> StateReader: ...

    def close(self) -> None: ...


class StateReader(Protocol):
    """Committed state only, safe to use from another thread (the API, the change feed)."""

    def get(self, ns: str, key: str) -> bytes | None: ...

    def scan(
        self, ns: str, start: str, end: str, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[str, bytes]]: ...

    def close(self) -> None: ...


def prefix_end(prefix: str) -> str:
    """The smallest key greater than every key starting with ``prefix``.

    >>> prefix_end("p1|")
    'p1}'
    """
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def iter_scan(
    reader: StateReader, ns: str, start: str, end: str, page: int = 500
) -> Iterator[tuple[str, bytes]]:
    """All pairs of a range, fetched ``page`` at a time."""
    while True:
        rows = reader.scan(ns, start, end, limit=page)
        yield from rows
        if len(rows) < page:
            return
        start = rows[-1][0] + "\x00"
