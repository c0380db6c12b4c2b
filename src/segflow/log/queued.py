"""The appending half the log drivers share: callers queue appends, one writer thread takes
them in groups and settles each caller's future.

:class:`QueuedAppends` holds what :class:`~segflow.log.sqlite.SqliteEventLog` and
:class:`~segflow.log.kafka.KafkaEventLog` did alike: the bounded queue (``submit`` refuses with
:class:`~segflow.log.exceptions.LogBackpressure` when too many events wait), ``append`` as
``submit(...).result()``, partitioning by identity key, the writer loop that drains the queue
into groups, and the stop marker that lets ``close`` finish what was queued. A driver supplies
how a group is written (``_write_group``) and what its pending appends carry
(``_new_pending``, a :class:`PendingAppend`).

>>> class Echo(QueuedAppends):
...     def __init__(self) -> None:
...         self._init_appends(partitions=4, max_pending=10, waiting_for="the echo")
...         self._start_writer("echo-writer", max_events=100, max_appends=8)
...     def _write_group(self, group):
...         for pending in group:
...             self._settle(pending, [(0, i) for i in range(len(pending.events))], None)
>>> log = Echo()
>>> log.submit(["e1", "e2"], payloads=[b"e1", b"e2"]).result()
[(0, 0), (0, 1)]
>>> log._stop_writer()
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from segflow.log.base import DeadLetter, Position, partition_for
from segflow.log.exceptions import LogBackpressure, LogClosed
from segflow.spec.events import Event, encode_event

_STOP = object()


class PendingAppend:
    """One caller's append waiting for the writer: the events, their encoded payloads, the
    dead letters that go with them, and the caller's future."""

    def __init__(
        self, events: Sequence[Event], payloads: list[bytes], dead_letters: Sequence[DeadLetter]
    ) -> None:
        self.events = events
        self.payloads = payloads
        self.dead_letters = dead_letters
        self.future: Future[list[Position | None]] = Future()


class QueuedAppends:
    """Base of the log drivers whose appends go through one writer thread (module docstring)."""

    _partitions: int

    def _init_appends(self, *, partitions: int, max_pending: int, waiting_for: str) -> None:
        self._partitions = partitions
        self._max_pending = max_pending
        self._waiting_for = waiting_for  # "too many events waiting for <the disk>"
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending_events = 0
        self._pending_lock = threading.Lock()
        self._closed = False

    def _start_writer(self, name: str, *, max_events: int, max_appends: int) -> None:
        self._writer = threading.Thread(
            target=self._run_writer, args=(max_events, max_appends), name=name, daemon=True
        )
        self._writer.start()

    # -- what callers see ----------------------------------------------------------------------

    @property
    def partitions(self) -> int:
        return self._partitions

    @property
    def pending_events(self) -> int:
        """Events waiting for the writer (the collector's backpressure signal)."""
        return self._pending_events

    def partition_of(self, event: Event) -> int:
        """The partition an event goes to (by its identity key)."""
        return partition_for(event.identity_key, self._partitions)

    def append(self, events: Sequence[Event]) -> list[Position | None]:
        """Durably append; ``None`` in the result marks a duplicate (see ``EventLog.append``)."""
        return self.submit(events).result()

    def submit(
        self,
        events: Sequence[Event],
        dead_letters: Sequence[DeadLetter] = (),
        payloads: Sequence[bytes] | None = None,
    ) -> Future[list[Position | None]]:
        """Queue an append (and dead letters) for the writer's next group; the future resolves
        once the group is durable, or fails with a ``TransientError``.

        ``payloads`` are the events already encoded with ``encode_event`` (callers that encode
        early to refuse what cannot be stored). Raises :class:`LogBackpressure` at once when
        too many events are already waiting.
        """
        if self._closed:
            raise LogClosed("the event log is closed", retry_after_s=1.0)
        with self._pending_lock:
            if self._pending_events + len(events) > self._max_pending and self._pending_events:
                raise LogBackpressure(
                    f"too many events waiting for {self._waiting_for}",
                    retry_after_s=1.0,
                    details={"pending": self._pending_events},
                )
            self._pending_events += len(events)
        encoded = list(payloads) if payloads is not None else [encode_event(e) for e in events]
        pending = self._new_pending(events, encoded, dead_letters)
        self._queue.put(pending)
        return pending.future

    # -- the writer ----------------------------------------------------------------------------

    def _new_pending(
        self, events: Sequence[Event], payloads: list[bytes], dead_letters: Sequence[DeadLetter]
    ) -> PendingAppend:
        return PendingAppend(events, payloads, dead_letters)

    def _write_group(self, group: list[Any]) -> None:
        """Write a group of pending appends; every one of them must be settled (now or later,
        by :meth:`_settle`), whatever fails."""
        raise NotImplementedError

    def _run_writer(self, max_events: int, max_appends: int) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            group, count, stop = [first], len(first.events), False
            while count < max_events and len(group) < max_appends:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                group.append(item)
                count += len(item.events)
            self._write_group(group)
            if stop:
                return

    def _settle(
        self,
        pending: PendingAppend,
        result: list[Position | None] | None,
        error: BaseException | None,
    ) -> None:
        """Release the append's place in the queue and answer its caller."""
        with self._pending_lock:
            self._pending_events -= len(pending.events)
        if error is not None:
            pending.future.set_exception(error)
        else:
            assert result is not None
            pending.future.set_result(result)

    def _stop_writer(self) -> None:
        """Refuse new appends, let the writer finish every queued one, and wait for it."""
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join()


__all__ = ["PendingAppend", "QueuedAppends"]
