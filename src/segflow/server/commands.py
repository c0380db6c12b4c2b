"""API actions carried to the process that owns the processor's state.

Under ``segflow serve``'s supervisor the admin API runs in the HTTP workers, which read the
state as RocksDB secondaries, while the ``pipeline`` child owns it. What the API asks of the
processor goes through a durable queue, ``DATA_DIR/commands.sqlite`` (one row a command:
``kind``, ``args`` and, once done, ``result`` or ``error``, all JSON):

==========  ======================================  ========================================
kind        args                                    done by the pipeline's processor
==========  ======================================  ========================================
scores      ``{model, values: [[id, x]], at_ms}``   ``put_scores`` (ML scores of API runs)
clusters    ``{model, values: [[id, name, n]]...}`` ``put_clusters`` (runs, cluster renames)
split       ``{profile_id, identifiers}``           ``split``; the API waits for its result
live_model  a live-scoring export (``segflow.ml``)  ``put_live_model`` (models scored live)
==========  ======================================  ========================================

:class:`QueuedSink` and :class:`QueuedSplitter` stand in for the processor in an API
without the ``process`` role; :class:`CommandRunner` (a service of the process that has it)
polls the queue every ``poll_s`` and runs each command once, in order.

>>> import tempfile
>>> queue = CommandQueue(tempfile.mkdtemp() + "/commands.sqlite")
>>> ident = queue.submit("split", {"profile_id": "p1", "identifiers": ["email:a@b.c"]})
>>> claimed = queue.claim()
>>> (claimed.kind, claimed.args["profile_id"])
('split', 'p1')
>>> queue.finish(claimed.id, {"ok": True})
>>> queue.wait(ident, timeout_s=1)
{'ok': True}
>>> queue.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from segflow.background import BackgroundLoop
from segflow.db.sqlite import connect
from segflow.errors import (
    ConflictError,
    NotFoundError,
    SegflowError,
    TransientError,
    ValidationError,
)
from segflow.stream.processor import Processor

log = logging.getLogger(__name__)

COMMANDS_FILE = "commands.sqlite"
CHUNK = 5000  # scores or clusters per command row

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',  -- queued, running, done, failed, cancelled
    result TEXT,
    error TEXT,
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER
)
"""


class Command(msgspec.Struct, frozen=True):
    id: int
    kind: str
    args: dict[str, Any]


class CommandFailed(Exception):
    """A command failed in the owning process without a segflow error (an internal error)."""


class CommandQueue:
    """The queue in one SQLite file, shared by every process of a data directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._con = connect(self.path)
        self._lock = threading.Lock()
        self._con.execute(_SCHEMA)

    def submit(self, kind: str, args: Mapping[str, Any]) -> int:
        with self._lock:
            cur = self._con.execute(
                "INSERT INTO commands (kind, args, created_ms) VALUES (?, ?, ?)",
                (kind, msgspec.json.encode(args).decode(), _now_ms()),
            )
        return int(cur.lastrowid or 0)

    def claim(self) -> Command | None:
        """The oldest queued command, marked running (one claimant wins it)."""
        with self._lock:
            row = self._con.execute(
                "UPDATE commands SET state = 'running' WHERE id = "
                "(SELECT id FROM commands WHERE state = 'queued' ORDER BY id LIMIT 1) "
                "RETURNING id, kind, args"
            ).fetchone()
        if row is None:
            return None
        return Command(int(row[0]), str(row[1]), msgspec.json.decode(row[2]))

    def finish(self, ident: int, result: Any) -> None:
        self._close_row(ident, "done", "result", msgspec.json.encode(result).decode())

    def fail(self, ident: int, error: Mapping[str, Any]) -> None:
        self._close_row(ident, "failed", "error", msgspec.json.encode(error).decode())

    def wait(self, ident: int, *, timeout_s: float, poll_s: float = 0.05) -> Any:
        """The command's result once done; its error raised again when it failed; a
        :class:`TransientError` (the command cancelled if not started) after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                row = self._con.execute(
                    "SELECT state, result, error FROM commands WHERE id = ?", (ident,)
                ).fetchone()
            state = row[0] if row else "cancelled"
            if state == "done":
                return msgspec.json.decode(row[1])
            if state == "failed":
                raise _rebuilt(msgspec.json.decode(row[2]))
            if time.monotonic() >= deadline:
                with self._lock:
                    self._con.execute(
                        "UPDATE commands SET state = 'cancelled' WHERE id = ? AND state = 'queued'",
                        (ident,),
                    )
                raise TransientError(
                    "the pipeline process did not answer in time (is it running?)",
                    retry_after_s=5,
                    details={"command_id": ident, "state": state},
                )
            time.sleep(poll_s)

    def purge(self, older_than_ms: int) -> None:
        """Forget finished commands older than ``older_than_ms`` (epoch ms)."""
        with self._lock:
            self._con.execute(
                "DELETE FROM commands WHERE state IN ('done', 'failed', 'cancelled') "
                "AND created_ms < ?",
                (older_than_ms,),
            )

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def _close_row(self, ident: int, state: str, column: str, value: str) -> None:
        with self._lock:
            self._con.execute(
                f"UPDATE commands SET state = ?, {column} = ?, finished_ms = ? WHERE id = ?",
                (state, value, _now_ms(), ident),
            )


class QueuedSink:
    """``segflow.ml.jobs.AttributeSink`` for an API without the processor: scores and
    clusters are queued for the owning process (applied as the processor's own inbox is)."""

    def __init__(self, queue: CommandQueue) -> None:
        self.queue = queue

    def put_scores(self, model: str, values: Sequence[tuple[str, float]], at_ms: int) -> None:
        self._put("scores", model, values, at_ms)

    def put_clusters(self, model: str, values: Sequence[tuple[str, str, int]], at_ms: int) -> None:
        self._put("clusters", model, values, at_ms)

    def put_live_model(self, export: Mapping[str, Any]) -> None:
        """A model to score on the fly (``segflow.ml.jobs.push_live_model``)."""
        self.queue.submit("live_model", dict(export))

    def _put(self, kind: str, model: str, values: Sequence[Sequence[Any]], at_ms: int) -> None:
        rows = [list(v) for v in values]
        for start in range(0, max(1, len(rows)), CHUNK):
            chunk = rows[start : start + CHUNK]
            self.queue.submit(kind, {"model": model, "values": chunk, "at_ms": at_ms})


class QueuedSplitter:
    """``segflow.serving.deps.Splitter`` for an API without the processor: the split runs in
    the owning process and this waits for its result (up to ``timeout_s``)."""

    def __init__(self, queue: CommandQueue, timeout_s: float = 60.0) -> None:
        self.queue = queue
        self.timeout_s = timeout_s

    def split(self, profile_id: str, identifiers: Sequence[str]) -> Any:
        args = {"profile_id": profile_id, "identifiers": list(identifiers)}
        return self.queue.wait(self.queue.submit("split", args), timeout_s=self.timeout_s)


def handlers(processor: Processor) -> dict[str, Callable[[dict[str, Any]], Any]]:
    """What each kind does with the owning process's processor."""

    def scores(args: dict[str, Any]) -> None:
        values = [(str(p), float(x)) for p, x in args["values"]]
        processor.put_scores(args["model"], values, int(args["at_ms"]))

    def clusters(args: dict[str, Any]) -> None:
        values = [(str(p), str(n), int(c)) for p, n, c in args["values"]]
        processor.put_clusters(args["model"], values, int(args["at_ms"]))

    def split(args: dict[str, Any]) -> Any:
        found = processor.split(args["profile_id"], args["identifiers"])
        return msgspec.to_builtins(found)

    def live_model(args: dict[str, Any]) -> None:
        processor.put_live_model(args)

    return {"scores": scores, "clusters": clusters, "split": split, "live_model": live_model}


class CommandRunner(BackgroundLoop):
    """A service of the process that owns the state: runs queued commands in order (looking
    every ``poll_s``; finished ones are purged after ``keep_ms``)."""

    name = "commands"
    join_s = 60.0

    def __init__(
        self,
        queue: CommandQueue,
        handle: Mapping[str, Callable[[dict[str, Any]], Any]],
        *,
        poll_s: float = 0.05,
        keep_ms: int = 3_600_000,
    ) -> None:
        super().__init__()
        self.queue = queue
        self.handle = handle
        self.interval_s = self.poll_s = poll_s
        self.keep_ms = keep_ms  # finished commands are forgotten after this (a score row is big)
        self._purged = float("-inf")

    def run_pending(self) -> int:
        """Run every queued command now; returns how many ran."""
        done = 0
        while (command := self.queue.claim()) is not None:
            self._run(command)
            done += 1
        return done

    def tick(self) -> bool:
        """Purge old commands (every tenth of ``keep_ms``), run the queued ones; True when
        some ran (more may have come meanwhile)."""
        if time.monotonic() - self._purged >= self.keep_ms / 10_000:
            self.queue.purge(_now_ms() - self.keep_ms)
            self._purged = time.monotonic()
        return self.run_pending() > 0

    def _run(self, command: Command) -> None:
        handle = self.handle.get(command.kind)
        try:
            if handle is None:
                raise ValidationError("kind", f"unknown command {command.kind!r}")
            result = handle(command.args)
        except SegflowError as exc:
            self.queue.fail(command.id, exc.to_dict())
        except Exception as exc:
            log.exception("command %s (%s) failed", command.id, command.kind)
            self.queue.fail(command.id, {"code": "internal_error", "message": repr(exc)})
        else:
            self.queue.finish(command.id, result)


def _rebuilt(error: dict[str, Any]) -> Exception:
    """The error a command failed with, as the exception the API maps to its status."""
    code, message = error.get("code"), str(error.get("message", ""))
    details = error.get("details") or {}
    if code == ValidationError.code:
        return ValidationError(error.get("field", ""), error.get("reason", message),
                               details=details)  # fmt: skip
    kinds: dict[Any, type[SegflowError]] = {
        NotFoundError.code: NotFoundError,
        ConflictError.code: ConflictError,
        TransientError.code: TransientError,
    }
    kind = kinds.get(code)
    if kind is not None:
        return kind(message, details=details)
    return CommandFailed(message)


def queue_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / COMMANDS_FILE


def _now_ms() -> int:
    return int(time.time() * 1000)


__all__ = [
    "CommandQueue",
    "CommandRunner",
    "QueuedSink",
    "QueuedSplitter",
    "handlers",
    "queue_path",
]
