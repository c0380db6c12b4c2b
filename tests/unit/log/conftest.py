from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from segflow.log.sqlite import SqliteEventLog


@pytest.fixture
def open_log(tmp_path: Path) -> Iterator[Callable[..., SqliteEventLog]]:
    opened: list[SqliteEventLog] = []

    def factory(**kwargs: object) -> SqliteEventLog:
        log = SqliteEventLog(tmp_path / "log.sqlite", **kwargs)  # type: ignore[arg-type]
        opened.append(log)
        return log

    yield factory
    for log in opened:
        log.close()
