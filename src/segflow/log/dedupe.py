"""The dedupe index of the embedded log: which ``(source_id, message_id)`` were appended
within the window.

On disk it is an **append-only** table, ``dedupe_log(id, key, received_at_ms)``: appending
costs the same however large the window is (a B-tree keyed by message id would rewrite pages
all over the tree on every commit — measured in BENCHMARKS.md). It is the truth, written in the
same transaction as the events. Lookups go through two tiers:

- **memory**: the rows not sealed yet, in one dict per range of ``memory_ids`` ids, caught up
  at the start of every write transaction with the rows other processes appended (``segflow
  import``, the other HTTP workers). About 250 bytes per id, at most ~2 x ``memory_ids`` ids;
- **sealed runs** (:mod:`segflow.log.dedupe_runs`): each full range of ``memory_ids`` ids is
  copied into an immutable sorted file with a Bloom filter, by a background thread, outside the
  append transaction; the range's dict is then dropped. A new id (the common case) is answered
  by the filters (one numpy pass per run and append group), and only a "maybe" reads a run.

Without ``runs`` (the doctest below) every id of the window stays in memory. Old rows are
pruned by id ranges; whole runs leave when their newest key is older than the window.

``key`` is a 128-bit BLAKE2b of ``(source_id, message_id)``: a false duplicate would need a
128-bit collision (a Bloom filter's "maybe" is always checked against the run itself).

>>> import sqlite3
>>> con = sqlite3.connect(":memory:", isolation_level=None)
>>> index = DedupeIndex(con, window_ms=1_000)
>>> k = dedupe_key("src", "m1")
>>> index.duplicates([k], [10])
[False]
>>> index.stage([(k, 10)]); index.applied()
>>> index.duplicates([k, k], [900, 1_011])
[True, False]
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from segflow.log.dedupe_runs import Run, SealedTier, ensure_registry, expire_runs

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS dedupe_log(id INTEGER PRIMARY KEY, key BLOB NOT NULL,"
    " received_at_ms INTEGER NOT NULL)"
)
_MARK_EVERY = 10_000
DEFAULT_MEMORY_IDS = 200_000


def ensure_tables(con: sqlite3.Connection) -> None:
    """Create ``dedupe_log`` and the list of sealed runs if they do not exist."""
    con.execute(_SCHEMA)
    ensure_registry(con)


def dedupe_key(source_id: str, message_id: str) -> bytes:
    """The 128-bit dedupe key of a message.

    >>> len(dedupe_key("src", "m1")), dedupe_key("src", "m1") == dedupe_key("src", "m1")
    (16, True)
    """
    return hashlib.blake2b(f"{source_id}\0{message_id}".encode(), digest_size=16).digest()


def dedupe_keys(pairs: Iterable[tuple[str, str]]) -> list[bytes]:
    """:func:`dedupe_key` of each ``(source_id, message_id)``, hashing each source's prefix
    once (a copy of its hasher per key: ~0.3 us a key instead of ~0.45).

    >>> dedupe_keys([("src", "m1"), ("src", "m2")]) == [dedupe_key("src", "m1"), dedupe_key("src", "m2")]
    True
    """
    prefixes: dict[str, Any] = {}
    out: list[bytes] = []
    append = out.append
    for source_id, message_id in pairs:
        base = prefixes.get(source_id)
        if base is None:
            base = prefixes[source_id] = hashlib.blake2b(f"{source_id}\0".encode(), digest_size=16)
        hasher = base.copy()
        hasher.update(message_id.encode())
        append(hasher.digest())
    return out


class DedupeIndex:
    """See the module docstring. Used only by the log's writer (under its write lock).

    ``on_full`` is called when a whole range of ``memory_ids`` ids waits to be sealed.
    """

    def __init__(
        self,
        con: sqlite3.Connection,
        *,
        window_ms: int,
        memory_ids: int = DEFAULT_MEMORY_IDS,
        runs: SealedTier | None = None,
        on_full: Callable[[], None] | None = None,
    ) -> None:
        self._con = con
        self._window_ms = window_ms
        self._memory_ids = memory_ids
        self._runs = runs
        self._on_full = on_full
        self._ranges: dict[int, dict[bytes, int]] = {}  # id range -> key -> newest received
        self._last_id = 0
        self._pruned_to = 0
        self._marks: deque[tuple[int, int]] = deque()  # (last id, newest received_at) so far
        self._newest = 0
        self._staged: list[tuple[bytes, int]] = []
        self._staged_last_id = 0
        self._expired: list[Run] = []
        ensure_tables(con)
        self.catch_up()

    def __len__(self) -> int:
        """Ids held in memory (safe to call from another thread: a metrics scrape)."""
        return sum(len(seen) for seen in list(self._ranges.values()))

    @property
    def runs(self) -> int:
        """Sealed runs this process has open."""
        return len(self._runs.runs) if self._runs is not None else 0

    @property
    def sealed_upto(self) -> int:
        return self._runs.sealed_upto if self._runs is not None else 0

    def catch_up(self) -> None:
        """Follow the sealed runs and read rows appended since we last looked (by this or
        another process)."""
        if self._runs is not None:
            self._runs.refresh(self._con)
            self._forget_sealed()
            for run in self._runs.runs:
                self._newest = max(self._newest, run.max_received_ms)
        rows = self._con.execute(
            "SELECT id, key, received_at_ms FROM dedupe_log WHERE id > ? ORDER BY id",
            (max(self._last_id, self.sealed_upto),),
        )
        count = 0
        for row_id, key, received in rows:
            self._remember(row_id, key, received)
            self._last_id = row_id
            count += 1
            if count % _MARK_EVERY == 0:
                self._marks.append((row_id, self._newest))
        if count % _MARK_EVERY:
            self._marks.append((self._last_id, self._newest))
        self._check_full()

    def _forget_sealed(self) -> None:
        sealed = self.sealed_upto
        for number in [n for n in self._ranges if (n + 1) * self._memory_ids <= sealed]:
            del self._ranges[number]

    def _check_full(self) -> None:
        if self._on_full is not None and self._last_id - self.sealed_upto >= self._memory_ids:
            self._on_full()

    def _remember(self, row_id: int, key: bytes, received: int) -> None:
        number = (row_id - 1) // self._memory_ids
        seen = self._ranges.get(number)
        if seen is None:
            seen = self._ranges[number] = {}
        if received >= seen.get(key, received):
            seen[key] = received
        self._newest = max(self._newest, received)

    def duplicates(self, keys: list[bytes], received_at_ms: list[int]) -> list[bool]:
        """Per key: was it appended within the window before its ``received_at_ms``?"""
        window = self._window_ms
        found = [False] * len(keys)
        undecided: list[int] = []
        for i, (key, received) in enumerate(zip(keys, received_at_ms, strict=True)):
            for seen in self._ranges.values():
                stored = seen.get(key)
                if stored is not None and received - stored <= window:
                    found[i] = True
                    break
            else:
                undecided.append(i)
        if undecided and self._runs is not None and self._runs.runs:
            floor = min(received_at_ms[i] for i in undecided) - window
            stored_in_runs = self._runs.lookup([keys[i] for i in undecided], floor_ms=floor)
            for i, stored in zip(undecided, stored_in_runs, strict=True):
                found[i] = stored is not None and received_at_ms[i] - stored <= window
        return found

    def stage(self, rows: list[tuple[bytes, int]]) -> None:
        """Write ``(key, received_at_ms)`` rows in the caller's transaction."""
        if rows:
            self._con.executemany("INSERT INTO dedupe_log(key, received_at_ms) VALUES(?,?)", rows)
            self._staged.extend(rows)
            # in the transaction: after COMMIT another process may have appended already
            self._staged_last_id = int(
                self._con.execute("SELECT max(id) FROM dedupe_log").fetchone()[0]
            )

    def applied(self) -> None:
        """The transaction committed: remember the staged rows, delete expired runs' files."""
        if self._expired and self._runs is not None:
            self._runs.remove_files(self._expired)
        self._expired = []
        if not self._staged:
            return
        # a staged key is new or older than the window where it is held (else it was a
        # duplicate), so it replaces what a range holds: one dict update per range
        staged, size = self._staged, self._memory_ids
        row_id = self._staged_last_id - len(staged) + 1
        start = 0
        while start < len(staged):
            number = (row_id + start - 1) // size
            end = min(len(staged), (number + 1) * size - row_id + 1)
            self._ranges.setdefault(number, {}).update(staged[start:end])
            start = end
        self._newest = max(self._newest, max(received for _, received in staged))
        self._staged = []
        self._last_id = self._staged_last_id
        self._marks.append((self._last_id, self._newest))
        self._check_full()

    def discarded(self) -> None:
        """The transaction rolled back: forget the staged rows and the runs it unlisted."""
        self._staged = []
        self._expired = []

    def close(self) -> None:
        """Close the sealed runs' files."""
        if self._runs is not None:
            self._runs.close()

    def prune(self) -> int:
        """Delete rows and unlist runs older than the window (in the caller's transaction);
        returns how many rows were deleted."""
        newest = max(self._newest, max((r for _, r in self._staged), default=0))
        horizon = newest - self._window_ms
        upto = self._pruned_to
        while len(self._marks) > 1 and self._marks[0][1] < horizon:
            upto = self._marks.popleft()[0]
        if self._runs is not None:
            self._expired = expire_runs(self._con, horizon)
            expired = {run.lo for run in self._expired}
            live = [run.lo for run in self._runs.runs if run.lo not in expired]
            upto = max(upto, min(live) if live else self._runs.sealed_upto)
        upto = min(upto, self._last_id - 1)  # the newest row stays: ids are never reused
        if upto <= self._pruned_to:
            return 0
        rows = self._con.execute(
            "SELECT id, key, received_at_ms FROM dedupe_log WHERE id > ? AND id <= ?",
            (max(self._pruned_to, self.sealed_upto), upto),
        )
        for row_id, key, received in rows:
            seen = self._ranges.get((row_id - 1) // self._memory_ids)
            if seen is not None and seen.get(key) == received:
                del seen[key]
        deleted = self._con.execute("DELETE FROM dedupe_log WHERE id <= ?", (upto,)).rowcount
        self._pruned_to = upto
        return int(deleted)
