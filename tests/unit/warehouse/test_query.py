from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from segflow.warehouse.connection import connect
from segflow.warehouse.exceptions import QueryError, WarehouseBusy
from segflow.warehouse.query import export_parquet, run_query, source_query, to_json_lines


def test_export_a_table_or_a_query(tmp_path: Path) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT range AS x FROM range(5)")
    assert export_parquet(con, "t", tmp_path / "a" / "t.parquet").rows == 5
    assert export_parquet(con, "SELECT x FROM t WHERE x > 2", tmp_path / "q.parquet").rows == 2
    assert pq.read_table(tmp_path / "q.parquet").column("x").to_pylist() == [3, 4]


@pytest.mark.parametrize("bad", ["DROP TABLE t", "SELECT FROM WHERE ("])
def test_export_refuses_anything_but_a_table_or_select(bad: str) -> None:
    with pytest.raises(QueryError):
        source_query(bad)


def test_query_errors_are_typed() -> None:
    with pytest.raises(QueryError) as info:
        run_query(duckdb.connect(), "SELECT nope")
    assert info.value.to_dict()["code"] == "query_error"


def test_json_lines() -> None:
    assert (
        to_json_lines(run_query(duckdb.connect(), "SELECT 1 AS a, NULL AS b"))
        == '{"a": 1, "b": null}\n'
    )


def test_a_locked_file_raises_warehouse_busy(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    connect(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(WarehouseBusy):
            connect(path, read_only=True, timeout_s=0.2)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    connect(path, read_only=True).close()  # released: readers get in
