"""Errors of the state stores.

::

    SegflowError
    ├── TransientError
    │   ├── StateConflict        an optimistic batch read what another processor changed
    │   │                        (:mod:`segflow.stream.state.optimistic`)
    │   └── StateStoreBusy       another process (or another store in this one) writes the
    │                            RocksDB directory: one writer per directory
    └── ConflictError
        └── StateStoreReadOnly   a write asked of a store opened for reading (a process
                                 without the ``process`` role)
"""

from __future__ import annotations

from segflow.errors import ConflictError, TransientError


class StateStoreBusy(TransientError):
    """The state directory is opened for writing elsewhere (one writing process per
    RocksDB directory): ``path`` and, when known, the writer's ``pid``."""

    code = "state_store_busy"

    def __init__(self, path: str, pid: int | None = None, *, retry_after_s: float = 1.0) -> None:
        who = f"process {pid}" if pid else "another writer"
        super().__init__(
            f"state store {path} is already open for writing by {who} "
            "(one writing process per directory; readers open it as secondaries)",
            retry_after_s=retry_after_s,
            details={"path": path, "pid": pid},
        )
        self.path = path
        self.pid = pid


class StateStoreReadOnly(ConflictError):
    """A transaction was asked of a read-only view of the state (``path``)."""

    code = "state_store_read_only"

    def __init__(self, path: str) -> None:
        super().__init__(
            f"state store {path} is open read-only in this process (the processor writes it)",
            details={"path": path},
        )
        self.path = path
