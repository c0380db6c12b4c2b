"""Fixtures of the serve tests: ``supervised(*args)`` starts a supervised ``segflow serve``
(stopped after the test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.support.serve import Serve


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(*args: str) -> Serve:
        started.append(Serve(tmp_path, *args))
        return started[-1]

    yield start
    for serve in started:
        serve.close()
