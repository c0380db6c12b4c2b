"""The same tables on four SQL engines, for the differential and golden tests.

Each :class:`Backend` holds the canonical tables the segment SQL reads (``profile_events``,
``profile_scores``, ``profile_clusters``) in a fresh namespace of its engine: a DuckDB file, a
PostgreSQL schema, a chDB database, a set of Spark temporary views. Rows go in with
:meth:`Backend.insert`; :meth:`Backend.query` runs SQL compiled for ``Backend.dialect`` and
returns plain Python rows (lists stay lists, numbers stay numbers).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pytest

from segflow.rules.sql.dialects import PG_EPOCH_MS_DDL

COLUMNS = {
    "profile_events": (
        ("profile_id", "text"), ("message_id", "text"), ("source_id", "text"), ("type", "text"),
        ("event", "text"), ("name", "text"), ("timestamp_ms", "bigint"), ("user_id", "text"),
        ("anonymous_id", "text"), ("properties", "json"), ("traits", "json"), ("context", "json"),
    ),
    "profile_scores": (("profile_id", "text"), ("model", "text"), ("score", "double")),
    "profile_clusters": (("profile_id", "text"), ("model", "text"), ("cluster", "text")),
}  # fmt: skip
_TYPES = {
    "duckdb": {"text": "VARCHAR", "bigint": "BIGINT", "json": "JSON", "double": "DOUBLE"},
    "postgres": {"text": "TEXT", "bigint": "BIGINT", "json": "JSON", "double": "DOUBLE PRECISION"},
    "clickhouse": {
        "text": "Nullable(String)",
        "bigint": "Int64",
        "json": "String",
        "double": "Float64",
    },
    "spark": {"text": "STRING", "bigint": "BIGINT", "json": "STRING", "double": "DOUBLE"},
}
_counter = itertools.count()


class Backend(Protocol):
    dialect: str

    def insert(self, table: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    def close(self) -> None: ...


def _ddl(dialect: str, table: str, suffix: str = "") -> str:
    cols = ", ".join(f"{n} {_TYPES[dialect][t]}" for n, t in COLUMNS[table])
    return f"CREATE TABLE {table} ({cols}){suffix}"


class DuckDBBackend:
    dialect = "duckdb"

    def __init__(self, path: Path | None) -> None:
        if path is None:  # wrap(): the caller made the connection and the tables
            return
        self.con = duckdb.connect(str(path))
        self.con.execute("SET TimeZone = 'UTC'")
        for table in COLUMNS:
            self.con.execute(_ddl("duckdb", table))

    @classmethod
    def wrap(cls, con: duckdb.DuckDBPyConnection) -> DuckDBBackend:
        """A backend over an open connection that already has the tables."""
        backend = cls(None)
        backend.con = con
        return backend

    def insert(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            self.con.executemany(f"INSERT INTO {table} VALUES ({marks})", [list(r) for r in rows])

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params or {}).fetchall()

    def close(self) -> None:
        self.con.close()


class PostgresBackend:
    """A fresh schema (``search_path``) of one shared test server per backend."""

    dialect = "postgres"

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.con = psycopg.connect(dsn, autocommit=True)
        schema = f"w{os.getpid()}_{next(_counter)}"
        self.con.execute(f"CREATE SCHEMA {schema}")
        self.con.execute(f"SET search_path = {schema}, public")
        self.con.execute(PG_EPOCH_MS_DDL)
        for table in COLUMNS:
            self.con.execute(_ddl("postgres", table))

    def insert(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            marks = ", ".join(["%s"] * len(rows[0]))
            with self.con.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} VALUES ({marks})", [list(r) for r in rows])

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.con.execute(sql, params).fetchall()]  # type: ignore[arg-type]

    def close(self) -> None:
        self.con.close()


class ClickHouseBackend:
    """A fresh database of the in-process ClickHouse engine (chDB)."""

    dialect = "clickhouse"

    def __init__(self) -> None:
        import chdb

        self.con = chdb.connect(":memory:")
        self.db = f"w{next(_counter)}"
        self.con.query(f"CREATE DATABASE {self.db}")
        self.con.query(f"USE {self.db}")
        self.con.query("SET join_use_nulls = 1")
        for table in COLUMNS:
            self.con.query(_ddl("clickhouse", table, " ENGINE = Memory"))

    def insert(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        from sqlglot import exp

        values = exp.values([tuple(exp.convert(v) for v in row) for row in rows])
        self.con.query(f"INSERT INTO {table} {values.sql('clickhouse')}")

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        table = self.con.query(sql, "ArrowTable", params=params or {})
        return [tuple(row.values()) for row in table.to_pylist()]

    def close(self) -> None:
        self.con.query(f"DROP DATABASE IF EXISTS {self.db}")
        self.con.close()


class SparkBackend:
    """Temporary views of one local Spark session, rebuilt from the rows after each insert."""

    dialect = "spark"

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in COLUMNS}
        self.dirty = set(COLUMNS)

    def insert(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        self.rows[table] += [tuple(r) for r in rows]
        self.dirty.add(table)

    def _refresh(self) -> None:
        for table in sorted(self.dirty):
            schema = ", ".join(f"{n} {_TYPES['spark'][t]}" for n, t in COLUMNS[table])
            frame = self.spark.createDataFrame(self.rows[table], schema)
            frame.createOrReplaceTempView(table)
        self.dirty.clear()

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        self._refresh()
        return [tuple(r) for r in self.spark.sql(sql, args=params or None).collect()]

    def close(self) -> None:
        return None


def unavailable(what: str, reason: str) -> None:
    """Skip (here) or fail (in CI, where every engine must run) for a missing engine."""
    message = f"{what} is not available: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run it: see .ci/run)")
    pytest.skip(message)


def start_spark() -> Any:
    """A local Spark session (one core, UTC, quiet) or a skip/fail when PySpark cannot run."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        unavailable("Spark", f"pyspark is not installed ({exc}); pip install -e '.[spark]'")
    try:
        spark = (
            SparkSession.builder.master("local[1]")
            .appName("segflow-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "1")
            .config("spark.default.parallelism", "1")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .getOrCreate()
        )
    except Exception as exc:  # no Java, no loopback: the reason is in the message
        unavailable("Spark", str(exc).splitlines()[0] if str(exc) else repr(exc))
    spark.sparkContext.setLogLevel("OFF")
    return spark
