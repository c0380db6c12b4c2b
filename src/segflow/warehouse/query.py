"""Query and export services behind ``segflow sql`` and ``segflow export``.

>>> import duckdb
>>> con = duckdb.connect()
>>> run_query(con, "SELECT 1 AS x").to_pylist()
[{'x': 1}]
>>> to_csv(run_query(con, "SELECT 1 AS x, 'a' AS y"))
'"x","y"\\n1,"a"\\n'
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from segflow.warehouse.exceptions import QueryError


@dataclass(frozen=True)
class ExportInfo:
    path: str
    rows: int
    source_sql: str


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """Run ``sql`` and return its rows as Arrow; DuckDB errors become :class:`QueryError`."""
    try:
        relation = con.sql(sql)
        return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as exc:
        raise QueryError(sql, str(exc)) from exc


def to_csv(table: pa.Table) -> str:
    """Rows as CSV with a header."""
    buf = io.BytesIO()
    pacsv.write_csv(table, buf)
    return buf.getvalue().decode()


def to_json_lines(table: pa.Table) -> str:
    """Rows as JSON lines (one object per row)."""
    return "".join(json.dumps(row, default=str) + "\n" for row in table.to_pylist())


def source_query(table_or_query: str) -> str:
    """A bare table name becomes ``SELECT * FROM name``; anything else must be a query.

    >>> source_query("events")
    'SELECT * FROM events'
    """
    try:
        tree = sqlglot.parse_one(table_or_query, read="duckdb")
    except ParseError as exc:
        raise QueryError(table_or_query, f"not a table name or a query: {exc}") from exc
    if isinstance(tree, exp.Column | exp.Table | exp.Identifier):
        return sqlglot.select("*").from_(exp.to_table(table_or_query)).sql("duckdb")
    if not isinstance(tree, exp.Query):
        raise QueryError(table_or_query, "only a table name or a SELECT can be exported")
    return table_or_query


def export_parquet(
    con: duckdb.DuckDBPyConnection, table_or_query: str, out: str | Path
) -> ExportInfo:
    """Write a table or a query's rows to a Parquet file (``COPY ... (FORMAT parquet)``)."""
    query = source_query(table_or_query)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    target = exp.Literal.string(str(out)).sql("duckdb")
    try:
        row = next(
            iter(con.execute(f"COPY ({query}) TO {target} (FORMAT parquet)").fetchall()), None
        )
    except duckdb.Error as exc:
        raise QueryError(query, str(exc)) from exc
    return ExportInfo(str(out), int(row[0]) if row else 0, query)
