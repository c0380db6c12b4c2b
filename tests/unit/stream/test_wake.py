"""An idle processor wakes on a log commit instead of sleeping out its poll interval (the
freshness of activation depends on it)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from segflow.log.sqlite import SqliteEventLog
from segflow.spec import Event
from segflow.stream import MemoryStateStore, ProfileReader
from segflow.stream.processor import Processor, ProcessorSettings


def signed_up_now() -> Event:
    now = int(time.time() * 1000)
    return Event(type="track", event="Signed Up", message_id="m1", source_id="s",
                 user_id="u1", timestamp_ms=now, received_at_ms=now)  # fmt: skip


def test_a_log_commit_wakes_the_idle_processor(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=2)
    store = MemoryStateStore()
    hour = ProcessorSettings(poll_interval_ms=3_600_000)  # it would sleep an hour when idle
    processor = Processor(log, store, settings=hour)
    waiting = threading.Event()

    class Wake(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waiting.set()
            return super().wait(timeout)

    processor._wake = Wake()
    log.on_commit(processor.wake)
    processor.start()
    try:
        assert waiting.wait(30)  # the thread found nothing to do and sleeps
        log.append([signed_up_now()])
        reader = ProfileReader(store.reader(), log)
        seen = threading.Event()
        deadline = time.monotonic() + 20  # a liveness bound, far below the hour
        while time.monotonic() < deadline and not seen.is_set():
            if reader.lookup("user_id", "u1") is not None:
                seen.set()
            time.sleep(0.01)
        assert seen.is_set()
    finally:
        processor.stop()
        log.close()


def test_an_idle_processor_wakes_when_its_next_timer_comes_due(tmp_path: Path) -> None:
    """A window's exit is due while nothing arrives: the idle wait ends at the timer, not at
    the poll (an hour here), so the membership leaves on time."""
    from segflow.rules import compile_segments

    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=1)
    store = MemoryStateStore()
    program = compile_segments({"fresh": 'did "Signed Up" in last 2 seconds'})
    hour = ProcessorSettings(poll_interval_ms=3_600_000)
    processor = Processor(log, store, program, settings=hour)
    log.on_commit(processor.wake)
    processor.start()
    try:
        log.append([signed_up_now()])
        reader = ProfileReader(store.reader(), log)

        def members() -> list[str] | None:
            profile = reader.lookup("user_id", "u1")
            return None if profile is None else sorted(profile.members)

        history = []
        deadline = time.monotonic() + 30  # a liveness bound, far below the hour
        while time.monotonic() < deadline and (not history or history[-1] != []):
            seen = members()
            if seen is not None and (not history or history[-1] != seen):
                history.append(seen)
            time.sleep(0.01)
        assert history == [["fresh"], []]  # entered with the event, left on its timer alone
    finally:
        processor.stop()
        log.close()
