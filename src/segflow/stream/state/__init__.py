"""State stores for the processor: the interface and its in-memory and SQLite backends."""

from segflow.stream.state.base import StateReader, StateStore, StateTransaction, StorePartition
from segflow.stream.state.memory import MemoryStateStore
from segflow.stream.state.sqlite import SqliteStateStore

__all__ = [
    "MemoryStateStore",
    "SqliteStateStore",
    "StateReader",
    "StateStore",
    "StateTransaction",
    "StorePartition",
]
