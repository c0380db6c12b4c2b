"""Wake-ups between the parts of ``segflow serve``: who hears whose commits.

Two hand-offs decide how fresh a membership is, and each is a wake-up, with a poll behind it
only as the bound when a wake-up is lost:

==========================  ===============================  ==================================
hand-off                    one process (``--single-process``)  supervised (separate children)
==========================  ===============================  ==================================
log commit -> processor     the log's commit listener         the log's bell, listened to by the
                                                              process that runs the processor
processor commit -> delivery  the processor's change listener   the state's bell, rung by the
                                                              processor, listened to by delivery
==========================  ===============================  ==================================

A bell (:class:`segflow.log.bell.Bell`) is a Unix datagram socket named after a file of the
data directory, bound by one listening process; anyone who commits sends it an empty
datagram. Only the process that runs the processor listens to the log's bell: any process
that opened the log used to ask, and the first to bind it (the HTTP worker, started first by
the supervisor) held it, so the processor in the ``pipeline`` child was never woken and
waited out its poll interval (``stream.poll_interval_ms``, 200 ms) — the bulk of the
supervised server's ack -> membership latency (docs/engine.md, "Wake-ups").

>>> from segflow.server.wakeups import listens_to_log
>>> listens_to_log(frozenset({"collect", "api"})), listens_to_log(frozenset({"process"}))
(False, True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segflow.log.bell import Bell

__all__ = ["WOKEN_FEED_INTERVAL_MS", "Wakeups", "listens_to_log", "wire"]

WOKEN_FEED_INTERVAL_MS = 200
"""Delivery's poll of the change feed when the processor's commits wake it (the same bound as
the processor's own idle poll, ``stream.poll_interval_ms``)."""


def listens_to_log(roles: frozenset[str]) -> bool:
    """Whether a process with ``roles`` listens to the log's commits (it runs the processor)."""
    return "process" in roles


class Wakeups:
    """The bells one serve process holds (a service: :meth:`stop` closes them)."""

    name = "wakeups"

    def __init__(self, bells: list[Bell]) -> None:
        self.bells = bells

    def start(self) -> None:
        return None

    def stop(self) -> None:
        for bell in self.bells:
            bell.close()


def wire(
    roles: frozenset[str],
    log: Any,
    processor: Any,
    delivery: Any,
    state_path: Path,
) -> Wakeups:
    """Wire this process's wake-ups for ``roles`` (module docstring): the log's commits wake
    ``processor`` where it runs; its commits that emit changes wake ``delivery`` (its
    ``notify()``) here, or through the bell of ``state_path`` in another process. Delivery
    that is woken so polls its change feed only every :data:`WOKEN_FEED_INTERVAL_MS` (at least
    ``activate.feed_interval_ms``), the bound should a wake-up be lost, instead of every 5 ms
    (12% of a core in an idle ``activate`` child: each poll is a catch-up of its RocksDB
    secondary)."""
    on_commit = getattr(log, "on_commit", None)  # the embedded log tells its commits
    if on_commit is not None and listens_to_log(roles):
        on_commit(processor.wake)
    bells: list[Bell] = []
    woken = False
    if "process" in roles and "activate" in roles:
        processor.on_changes(delivery.notify)
        woken = True
    elif "process" in roles:
        bell = Bell(state_path)
        processor.on_changes(bell.ring)
        bells.append(bell)
    elif "activate" in roles:
        bell = Bell(state_path)
        woken = bell.listen(delivery.notify)  # False: another process holds it, keep polling
        bells.append(bell)
    if woken:
        delivery.feed_interval_ms = max(delivery.feed_interval_ms, WOKEN_FEED_INTERVAL_MS)
    return Wakeups(bells)
