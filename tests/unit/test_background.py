"""BackgroundLoop: the one loop the serve process's background services share."""

from __future__ import annotations

import threading
import time

from segflow.background import BackgroundLoop


class Recorder(BackgroundLoop):
    """Ticks into a list; ``script`` says what each tick does (a value to return, or raise)."""

    name = "recorder"

    def __init__(self, script: list[object], interval_s: float = 3600.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.script = script
        self.ticks: list[float] = []
        self.done = threading.Event()

    def tick(self) -> object:
        self.ticks.append(time.monotonic())
        step = self.script.pop(0) if self.script else None
        if not self.script:
            self.done.set()
        if isinstance(step, Exception):
            raise step
        return step


def test_a_tick_returning_true_is_followed_at_once_and_wake_cuts_the_interval_short() -> None:
    loop = Recorder([True, True, None])  # an hour's interval: only True and wake() move it
    loop.start()
    try:
        assert loop.done.wait(10) and len(loop.ticks) == 3
        loop.script.append(None)
        loop.done.clear()
        loop.wake()
        assert loop.done.wait(10) and len(loop.ticks) == 4
    finally:
        loop.stop()
    assert loop._thread is None


def test_a_failing_tick_is_retried_after_the_interval() -> None:
    loop = Recorder([RuntimeError("boom"), None], interval_s=0.05)
    loop.start()
    try:
        assert loop.done.wait(10)
    finally:
        loop.stop()
    first, second = loop.ticks[:2]
    assert second - first >= 0.04  # waited the interval, did not spin


def test_wait_first_ticks_after_one_interval_and_stop_ends_the_wait() -> None:
    loop = Recorder([None])
    loop.wait_first = True
    loop.start()
    time.sleep(0.1)
    started = time.monotonic()
    loop.stop()  # ends the hour's first wait at once
    assert loop.ticks == [] and time.monotonic() - started < 5
