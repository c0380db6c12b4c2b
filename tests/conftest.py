"""Session-wide engines for the tests that run SQL beyond DuckDB: one PostgreSQL server and one
local Spark session per test run, started on first use (tests/support/); the factories of the
webhook receivers and ``segflow serve`` processes a test starts, each stopped when it ends."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.engines import unavailable
from tests.support.receivers import Receiver
from tests.support.serve import Serve

from segflow.catalog.db import CatalogTarget, SharedCatalog


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The DSN of a throwaway PostgreSQL server (Debian's binaries, a temporary directory)."""
    from tests.support.postgres import PostgresUnavailable, start_postgres

    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        unavailable("PostgreSQL", f"psycopg is not installed ({exc}); pip install -e '.[postgres]'")
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        unavailable("PostgreSQL", str(exc))
    yield server.dsn
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_target(request: pytest.FixtureRequest, tmp_path: Path) -> CatalogTarget:
    """Where a test's catalog lives, once per engine: ``catalog.sqlite`` in the test's
    directory, then a fresh schema of the session's PostgreSQL server (``shared.dsn``)."""
    if request.param == "sqlite":
        return tmp_path / "catalog.sqlite"
    return SharedCatalog(request.getfixturevalue("postgres_dsn"), f"t_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def spark_session() -> Any:
    from tests.support.engines import start_spark

    return start_spark()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    """``receiver_factory(behaviour=None, status=200, delay_s=0.0, host=, port=)`` starts a
    webhook receiver on loopback (tests/support/receivers.py); each one closes after the test."""
    made: list[Receiver] = []

    def make(*args: Any, **kwargs: Any) -> Receiver:
        made.append(Receiver(*args, **kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    """``serve_factory(*args, data=None, env=None, supervised=False, source="web",
    role="admin")`` starts a ``segflow serve`` (tests/support/serve.py) on ``data`` (a fresh
    directory in the test's tmp by default); each one is stopped after the test."""
    made: list[Serve] = []

    def make(*args: str, data: Path | None = None, **kwargs: Any) -> Serve:
        made.append(Serve(data or tmp_path / f"data{len(made)}", *args, **kwargs))
        return made[-1]

    yield make
    for serve in made:
        serve.stop()
