"""Golden SQL for every documented example (DuckDB, PostgreSQL, ClickHouse); transpiles to Spark.

tests/integration/rules/test_engines.py runs this SQL on each engine.

Regenerate after a deliberate change with ``SEGFLOW_UPDATE_GOLDEN=1 pytest tests/unit/rules``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import sqlglot

from segflow.rules.sql.compiler import compile_members, compile_members_grid, compile_traits

DOC = Path(__file__).resolve().parents[3] / "docs" / "segments.md"
GOLDEN = Path(__file__).parent / "golden"
UPDATE = bool(os.environ.get("SEGFLOW_UPDATE_GOLDEN"))


def _blocks(kind: str) -> dict[str, str]:
    return {
        m[1]: m[2].strip()
        for m in re.finditer(rf"```{kind} (\S+)\n(.*?)```", DOC.read_text(), re.S)
    }


RULES, TRAITS = _blocks("rule"), _blocks("trait")


def _check(path: Path, sql: str) -> None:
    if UPDATE:
        path.write_text(sql + "\n")
    assert path.read_text() == sql + "\n", (
        f"{path.name} changed; regenerate with SEGFLOW_UPDATE_GOLDEN=1"
    )


@pytest.mark.parametrize("dialect", ["duckdb", "postgres", "clickhouse"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_members_sql_is_golden(name: str, dialect: str) -> None:
    sql = compile_members(RULES[name], segments=RULES, traits=TRAITS, dialect=dialect, pretty=True)
    _check(GOLDEN / f"{name}.{dialect}.sql", sql)


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_grid_sql_is_golden(name: str, dialect: str) -> None:
    sql = compile_members_grid(
        RULES[name], [0, 86_400_000], segments=RULES, traits=TRAITS, dialect=dialect,
        pretty=True, seen=True,
    )  # fmt: skip
    _check(GOLDEN / "grid" / f"{name}.{dialect}.sql", sql)


@pytest.mark.parametrize("dialect", ["duckdb", "postgres", "clickhouse"])
def test_traits_sql_is_golden(dialect: str) -> None:
    _check(
        GOLDEN / f"computed_traits.{dialect}.sql",
        compile_traits(TRAITS, dialect=dialect, pretty=True),
    )


@pytest.mark.parametrize("dialect", ["spark", "clickhouse", "postgres"])
def test_every_example_transpiles(dialect: str) -> None:
    for text in RULES.values():
        sql = compile_members(text, segments=RULES, traits=TRAITS, at_ms=0, dialect=dialect)
        assert sqlglot.parse_one(sql, read=dialect) is not None
