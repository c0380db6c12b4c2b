"""Waiting on an asynchronous outcome in a test: poll a condition until it holds, a liveness
bound and never a timing assertion (a loaded CI machine only makes the wait longer)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


def until(
    predicate: Callable[[], Any], deadline_s: float = 60.0, what: str = "", every_s: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns something truthy and return that; fail with
    ``what`` after ``deadline_s``. A request that finds no server yet (one starting, a worker
    restarting) counts as not yet.

    >>> until(lambda: 42)
    42
    """
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            value = predicate()
        except httpx.TransportError:
            value = None
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"not reached in {deadline_s} s: {what or predicate}")
