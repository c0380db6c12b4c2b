"""State stores for the processor: the interface and its in-memory, RocksDB and SQLite backends
(PostgreSQL: :mod:`segflow.stream.state.postgres`)."""

from segflow.stream.state.base import StateReader, StateStore, StateTransaction, StorePartition
from segflow.stream.state.memory import MemoryStateStore
from segflow.stream.state.rocksdb import RocksStateStore
from segflow.stream.state.sqlite import SqliteStateStore

__all__ = [
    "MemoryStateStore",
    "RocksStateStore",
    "SqliteStateStore",
    "StateReader",
    "StateStore",
    "StateTransaction",
    "StorePartition",
]
