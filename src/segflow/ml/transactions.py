"""Transactions -> per-customer calibration statistics (frequency, recency, age, spend) and holdout.

Any transaction file works: CSV/TSV (delimiter sniffed by DuckDB), whitespace-separated text
(e.g. CDNOW), Parquet, JSON lines. Dates may be ISO dates/timestamps, ``YYYYMMDD`` numbers
or epoch milliseconds (detected per column, or given as ``date_format``). Transactions of one customer on one day are merged (summed), as in
Fader, Hardie & Lee (2005): ``x`` counts repeat purchase *days*.

>>> import duckdb
>>> con = duckdb.connect()
>>> _ = con.execute("CREATE TABLE tx AS SELECT * FROM (VALUES ('a', DATE '2024-01-01', 10.0),"
...                 " ('a', DATE '2024-01-08', 20.0), ('b', DATE '2024-01-02', 5.0)) t(c, d, v)")
>>> s = summarise(con, "tx", "c", "d", "v", calibration_end="2024-01-15")
>>> s.customers, s.x.tolist(), s.t_x.tolist()
(['a', 'b'], [1.0, 0.0], [1.0, 0.0])
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from sqlglot import exp

from segflow.ml.exceptions import MLInputError
from segflow.ml.ltv import FloatArray

TIME_UNITS_DAYS = {"days": 1.0, "weeks": 7.0, "months": 365.25 / 12}


@dataclass(frozen=True)
class RfmSummary:
    """Calibration statistics, one entry per customer (customers whose first purchase is in calibration)."""

    customers: list[str]
    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    m_x: FloatArray
    x_holdout: FloatArray
    holdout_length: float
    calibration_end: dt.date
    time_unit: str


def quote(name: str) -> str:
    """A safely quoted DuckDB identifier.

    >>> print(quote("order"))
    "order"
    """
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def _whitespace_table(path: Path) -> pa.Table:
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    if any(len(row) != len(header) for row in rows):
        raise MLInputError(
            "transactions", f"{path}: rows and header have different numbers of fields"
        )
    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(header)})


def load_transactions(
    con: duckdb.DuckDBPyConnection, path: str | Path, table: str = "ml_transactions"
) -> str:
    """Load a transaction file into the (temporary) table ``table``; return its name.

    >>> import duckdb, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "t.txt")
    >>> with open(p, "w") as f:
    ...     _ = f.write(" id  date amount\\n 1 19970101 11.77\\n")
    >>> con = duckdb.connect(); load_transactions(con, p)
    'ml_transactions'
    >>> con.execute("SELECT count(*) FROM ml_transactions").fetchone()[0]
    1
    """
    source = Path(path)
    if not source.is_file():
        raise MLInputError("transactions", f"no such file: {source}")
    target = quote(table)
    suffix = source.suffix.lower()
    if suffix == ".parquet":
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {target} AS SELECT * FROM read_parquet(?)", [str(source)]
        )
    elif suffix in (".json", ".jsonl", ".ndjson"):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {target} AS SELECT * FROM read_json_auto(?)",
            [str(source)],
        )
    else:
        with source.open() as handle:
            first = handle.readline()
        if re.search(r"[,\t;|]", first):
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {target} AS SELECT * FROM read_csv_auto(?)",
                [str(source)],
            )
        else:
            con.register("ml_whitespace_arrow", _whitespace_table(source))
            try:
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE {target} AS SELECT * FROM ml_whitespace_arrow"
                )
            finally:
                con.unregister("ml_whitespace_arrow")
    return table


DATE_FORMATS = ("auto", "yyyymmdd", "epoch_ms", "iso")


def _detect_format(
    con: duckdb.DuckDBPyConnection, table: str, column: str, column_type: str
) -> str:
    """Column-wide choice: ISO dates/timestamps, YYYYMMDD (all values 8 digits), else epoch ms."""
    kind = column_type.upper()
    if kind.startswith(("DATE", "TIMESTAMP")):
        return "iso"
    text = f"CAST({quote(column)} AS VARCHAR)"
    rows = con.execute(
        f"SELECT bool_and(regexp_full_match({text}, '[0-9]{{8}}')), bool_and(regexp_full_match({text}, '-?[0-9]+'))"
        f" FROM {quote(table)} WHERE {quote(column)} IS NOT NULL"
    ).fetchall()
    all_8_digits, all_digits = rows[0] if rows else (False, False)
    if all_8_digits:
        return "yyyymmdd"
    return "epoch_ms" if all_digits else "iso"


def _day_expr(column: str, date_format: str) -> str:
    """SQL turning the date column into a DATE, given its (detected) format."""
    col = quote(column)
    if date_format == "yyyymmdd":
        return f"strptime(CAST({col} AS VARCHAR), '%Y%m%d')::DATE"
    if date_format == "epoch_ms":
        return f"CAST(epoch_ms(CAST({col} AS BIGINT)) AS DATE)"
    return f"CAST(CAST({col} AS VARCHAR) AS TIMESTAMP)::DATE"


def _first(rows: list[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    return rows[0] if rows else None


def _column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {quote(table)})").fetchall()
    return {str(name): str(kind) for name, kind in rows}


def _daily_sql(
    con: duckdb.DuckDBPyConnection,
    table: str,
    customer_col: str,
    date_col: str,
    amount_col: str | None,
    date_format: str = "auto",
) -> str:
    types = _column_types(con, table)
    for field, col in (
        ("customer_col", customer_col),
        ("date_col", date_col),
        ("amount_col", amount_col),
    ):
        if col is not None and col not in types:
            raise MLInputError(
                field, f"column {col!r} not in the transactions (has {sorted(types)})"
            )
    if date_format not in DATE_FORMATS:
        raise MLInputError("date_format", f"one of {DATE_FORMATS}")
    if date_format == "auto":
        date_format = _detect_format(con, table, date_col, types[date_col])
    amount = f"sum(CAST({quote(amount_col)} AS DOUBLE))" if amount_col else "0.0"
    return (
        f"SELECT CAST({quote(customer_col)} AS VARCHAR) AS customer, {_day_expr(date_col, date_format)} AS day, "
        f"{amount} AS amount FROM {quote(table)} GROUP BY ALL"
    )


def summarise(
    con: duckdb.DuckDBPyConnection,
    table: str,
    customer_col: str,
    date_col: str,
    amount_col: str | None,
    *,
    calibration_end: str | dt.date,
    holdout_end: str | dt.date | None = None,
    time_unit: str = "weeks",
    date_format: str = "auto",
) -> RfmSummary:
    """Per-customer calibration statistics, and repeat purchases in the holdout after ``calibration_end``.

    ``T`` runs from the first purchase day to ``calibration_end``; the holdout runs to
    ``holdout_end`` (default: the last day in the data).
    """
    if time_unit not in TIME_UNITS_DAYS:
        raise MLInputError(
            "time_unit", f"unknown time unit {time_unit!r} (one of {sorted(TIME_UNITS_DAYS)})"
        )
    cal_end = dt.date.fromisoformat(str(calibration_end))
    unit = TIME_UNITS_DAYS[time_unit]
    daily = _daily_sql(con, table, customer_col, date_col, amount_col, date_format)
    try:
        last_day = _first(con.execute(f"SELECT max(day) FROM ({daily})").fetchall())
    except duckdb.Error as exc:
        raise MLInputError("date_col", f"cannot read dates: {exc}") from exc
    end = (
        dt.date.fromisoformat(str(holdout_end))
        if holdout_end
        else (last_day[0] if last_day and last_day[0] else cal_end)
    )
    sql = f"""
        WITH daily AS ({daily}), firsts AS (SELECT customer, min(day) AS first_day FROM daily GROUP BY customer)
        SELECT d.customer,
               count(*) FILTER (WHERE d.day <= $cal AND d.day > f.first_day) AS x,
               coalesce(max(d.day) FILTER (WHERE d.day <= $cal) - f.first_day, 0) AS t_x_days,
               $cal - f.first_day AS t_days,
               coalesce(avg(d.amount) FILTER (WHERE d.day <= $cal AND d.day > f.first_day), 0) AS m_x,
               count(*) FILTER (WHERE d.day > $cal AND d.day <= $end) AS x_holdout
        FROM daily d JOIN firsts f USING (customer)
        WHERE f.first_day <= $cal
        GROUP BY d.customer, f.first_day ORDER BY d.customer
    """
    cols = con.execute(sql, {"cal": cal_end, "end": end}).fetchnumpy()
    if len(cols["customer"]) == 0:
        raise MLInputError(
            "calibration_end", f"no customer made a first purchase on or before {cal_end}"
        )
    return RfmSummary(
        customers=[str(c) for c in cols["customer"]],
        x=np.asarray(cols["x"], dtype=np.float64),
        t_x=np.asarray(cols["t_x_days"], dtype=np.float64) / unit,
        T=np.asarray(cols["t_days"], dtype=np.float64) / unit,
        m_x=np.asarray(cols["m_x"], dtype=np.float64),
        x_holdout=np.asarray(cols["x_holdout"], dtype=np.float64),
        holdout_length=max((end - cal_end).days, 0) / unit,
        calibration_end=cal_end,
        time_unit=time_unit,
    )
