"""Scores and cluster labels from ``segflow.ml`` into profile state (the ML ``AttributeSink``).

ML jobs run beside the processor; they hand their per-profile results to an
:class:`AttributeInbox`, and the processor applies them at its next batch boundary, in their
own state transaction: each profile's ``scores`` / ``clusters`` are updated, its rules are
re-evaluated (``on_time``), and any membership change goes to the outbox like any other.
A profile id that a merge absorbed since the job read the warehouse is followed to its
survivor; an id that no longer exists is skipped (and counted).

The inbox lives in memory: results handed over and not yet applied are lost if the process
dies, and a replay of the log from offset 0 does not reproduce them — the next scoring run
does (docs/ml.md, "Scores in rules").

>>> inbox = AttributeInbox()
>>> inbox.put_scores("churn", [("p1", 0.9)], at_ms=5)
>>> inbox.put_clusters("segs", [("p1", "Big spenders", 3)], at_ms=5)
>>> [(u.kind, u.model, u.profile_id, u.value, u.cluster_id) for u in inbox.drain()]
[('score', 'churn', 'p1', 0.9, None), ('cluster', 'segs', 'p1', 'Big spenders', 3)]
>>> inbox.drain()
[]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class AttributeUpdate:
    """One profile's new score (``kind="score"``, a float) or cluster (its name and stable id)."""

    kind: Literal["score", "cluster"]
    model: str
    profile_id: str
    value: float | str
    at_ms: int
    cluster_id: int | None = None


class AttributeInbox:
    """A thread-safe queue of :class:`AttributeUpdate` (implements ``segflow.ml.jobs.AttributeSink``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[AttributeUpdate] = []

    def put_scores(self, model: str, values: Sequence[tuple[str, float]], at_ms: int) -> None:
        updates = [AttributeUpdate("score", model, pid, float(v), at_ms) for pid, v in values]
        with self._lock:
            self._pending.extend(updates)

    def put_clusters(self, model: str, values: Sequence[tuple[str, str, int]], at_ms: int) -> None:
        updates = [
            AttributeUpdate("cluster", model, pid, str(name), at_ms, int(cid))
            for pid, name, cid in values
        ]
        with self._lock:
            self._pending.extend(updates)

    def drain(self, limit: int | None = None) -> list[AttributeUpdate]:
        """Take up to ``limit`` updates (all when None), oldest first."""
        with self._lock:
            cut = len(self._pending) if limit is None else limit
            taken, self._pending = self._pending[:cut], self._pending[cut:]
        return taken

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)
