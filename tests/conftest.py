"""Session-wide engines for the tests that run SQL beyond DuckDB: one PostgreSQL server and one
local Spark session per test run, started on first use (tests/support/)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.engines import unavailable

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
