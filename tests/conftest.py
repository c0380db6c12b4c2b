"""Session-wide engines for the tests that run SQL beyond DuckDB: one PostgreSQL server and one
local Spark session per test run, started on first use (tests/support/)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.engines import unavailable


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


@pytest.fixture(scope="session")
def spark_session() -> Any:
    from tests.support.engines import start_spark

    return start_spark()
