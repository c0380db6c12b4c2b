"""The health of each part, from what the stores themselves record (works from any process).

Lag is counted in records: the log's end offsets minus each consumer group's committed offsets
(the processor mirrors its offsets to group ``processor``, the loader commits ``warehouse``).

>>> import tempfile, os
>>> from segflow.log.sqlite import SqliteEventLog
>>> log = SqliteEventLog(os.path.join(tempfile.mkdtemp(), "log.sqlite"), partitions=2)
>>> status(log, None)["parts"]["processor"]
{'lag': 0, 'committed': 0}
>>> log.close()
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from segflow.activate.store import DeliveryStore

SUPERVISOR_FILE = "supervisor.json"  # written by segflow.server.supervisor


class OffsetLog(Protocol):
    def end_offsets(self) -> dict[int, int]: ...

    def committed(self, group: str) -> dict[int, int]: ...


GROUPS = {"processor": "processor", "warehouse_loader": "warehouse"}


def status(log: OffsetLog, delivery: DeliveryStore | None) -> dict[str, Any]:
    """``{"events": N, "parts": {part: {...}}, "ok": bool}``; a part is behind when it lags."""
    end = log.end_offsets()
    parts: dict[str, dict[str, Any]] = {}
    for part, group in GROUPS.items():
        done = log.committed(group)
        lag = sum(max(0, e - done.get(p, 0)) for p, e in end.items())
        parts[part] = {"lag": lag, "committed": sum(done.values())}
    if delivery is not None:
        pending = dead = 0
        for dest in delivery.destinations():
            stats = delivery.stats(dest.name)
            pending += stats.pending
            dead += stats.dead
        parts["delivery"] = {"pending": pending, "dead": dead}
    return {"events": sum(end.values()), "parts": parts}


def supervised(data_dir: str | Path) -> dict[str, Any] | None:
    """The supervisor's report of its children (``DATA_DIR/supervisor.json``): ``{"pid",
    "started_at_ms", "children": [{"name", "role", "pid", "state", "restarts",
    "last_exit_code"}]}``; ``None`` without a running supervisor (single-process mode, or
    a file left by one that was SIGKILLed).

    >>> import tempfile
    >>> supervised(tempfile.mkdtemp()) is None
    True
    """
    try:
        report: dict[str, Any] = json.loads((Path(data_dir) / SUPERVISOR_FILE).read_text())
    except (OSError, ValueError):
        return None
    return report if alive(int(report.get("pid", 0))) else None


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
