"""One real ``segflow serve`` process per module for the collection tests, on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.serve import Serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """The module's server, with a source named ``web`` (its key: ``write_key``)."""
    started = Serve(tmp_path_factory.mktemp("collect") / "data", role=None)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def data_dir(server: Serve) -> Path:
    return server.data


@pytest.fixture(scope="module")
def write_key(server: Serve) -> str:
    assert server.write_key is not None
    return server.write_key


@pytest.fixture
def client(server: Serve) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c
