from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segflow.clock import ManualClock
from segflow.log.sqlite import SqliteEventLog
from segflow.spec import Event
from segflow.warehouse.connection import open_warehouse
from segflow.warehouse.loader import WarehouseLoader

HERE = Path(__file__).parent
SEGFLOW = Path(sys.executable).parent / "segflow"


def _events(n: int, prefix: str = "m") -> list[Event]:
    return [
        Event(type="track", message_id=f"{prefix}{i}", source_id="web", timestamp_ms=1_000 + i,
              received_at_ms=2_000 + i, user_id=f"u{i % 37}", event="Clicked", properties={"i": i})
        for i in range(n)
    ]  # fmt: skip


@pytest.mark.parametrize("mode", ["kept", "held"])
def test_sigkill_mid_batch_loses_and_duplicates_nothing(tmp_path: Path, mode: str) -> None:
    log_path, wh_path = tmp_path / "log.sqlite", tmp_path / "warehouse.duckdb"
    log = SqliteEventLog(log_path, partitions=4)
    log.append(_events(6_000))
    log.close()
    child = subprocess.Popen([sys.executable, str(HERE / "loader_child.py"), str(log_path), str(wh_path), mode],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout is not None
    batches = 0
    for line in child.stdout:  # kill while it is busy loading batches
        batches += int(line.strip()) > 0
        if batches >= 3:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    with open_warehouse(wh_path, read_only=True) as con:
        partial = con.execute("SELECT count(*) FROM events").fetchone()
    assert partial is not None and 0 < partial[0] < 6_000
    log = SqliteEventLog(log_path, partitions=4)
    try:
        WarehouseLoader(log, None, wh_path, ManualClock(0)).run_until_idle()
    finally:
        log.close()
    with open_warehouse(wh_path, read_only=True) as con:
        row = con.execute("SELECT count(*), count(DISTINCT message_id) FROM events").fetchone()
    assert row == (6_000, 6_000)


def _cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SEGFLOW), *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_load_query_export_through_the_cli(tmp_path: Path) -> None:
    assert _cli("sources", "create", "hist", data_dir=tmp_path).returncode == 0
    jsonl = tmp_path / "events.jsonl"
    lines = [
        {"type": "track", "userId": "u1", "event": "Order Completed", "timestamp": "2024-01-02T00:00:00Z",
         "properties": {"revenue": 10}},
        "this is not json",
        {"type": "track", "userId": "u2", "timestamp": "2024-01-03T00:00:00Z"},  # no event name
        {"type": "identify", "userId": "u2", "traits": {"plan": "pro"}, "timestamp": "2024-01-04T00:00:00Z"},
    ]  # fmt: skip
    jsonl.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    first = _cli("import", str(jsonl), "--source", "hist", data_dir=tmp_path)
    assert first.returncode == 1, first.stderr
    counts = json.loads(first.stdout.strip().splitlines()[-1])
    assert counts == {"rows": 4, "accepted": 2, "duplicates": 0, "refused": 2}
    assert "line 2" in first.stderr and "line 3: event" in first.stderr
    again = _cli("import", str(jsonl), "--source", "hist", data_dir=tmp_path)  # re-import: deduped
    assert json.loads(again.stdout.strip().splitlines()[-1])["duplicates"] == 2
    log = SqliteEventLog(tmp_path / "log.sqlite")
    letters = log.dead_letters(limit=10)
    log.close()
    assert any("line 2" in d.reason for d in letters)
    assert _cli("load", data_dir=tmp_path).returncode == 0
    out = _cli("sql", "SELECT user_id, event, properties->>'$.revenue' AS r FROM events ORDER BY 1",
               "--format", "json", data_dir=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert [json.loads(x) for x in out.stdout.splitlines()] == [
        {"user_id": "u1", "event": "Order Completed", "r": "10"},
        {"user_id": "u2", "event": None, "r": None},
    ]
    bad = _cli("sql", "SELECT nope FROM events", data_dir=tmp_path)
    assert bad.returncode == 2 and "query_error" in bad.stderr
    assert _cli("features", "--at", "2024-01-10", data_dir=tmp_path).returncode == 0
    target = tmp_path / "out" / "features.parquet"
    assert _cli("export", "features", str(target), data_dir=tmp_path).returncode == 0
    table = pq.read_table(target)
    assert table.num_rows == 2 and "r_score" in table.column_names


def test_csv_and_parquet_imports_with_mappings(tmp_path: Path) -> None:
    assert _cli("sources", "create", "shop", data_dir=tmp_path).returncode == 0
    csv_file = tmp_path / "orders.csv"
    csv_file.write_text(
        "cust,day,amount\n1,20240101,9.5\n2,2024-13-01,3\n3,20240102,abc\n4,20240103\n"
    )
    mapping = ["--mapping", "type==track", "--mapping", "event==Order Completed", "--mapping", "userId=cust",
               "--mapping", "timestamp=day:yyyymmdd", "--mapping", "properties.revenue=amount:float"]  # fmt: skip
    res = _cli("import", str(csv_file), "--source", "shop", *mapping, data_dir=tmp_path)
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {
        "rows": 4,
        "accepted": 1,
        "duplicates": 0,
        "refused": 3,
    }
    for line in ("line 3: timestamp", "line 4: properties.revenue", "line 5:"):
        assert line in res.stderr
    pq_file = tmp_path / "events.parquet"
    pq.write_table(pa.table({"type": ["track", "page"], "userId": ["a", "b"], "event": ["Signed Up", None],
                             "timestamp": ["2024-01-01T00:00:00Z"] * 2}), pq_file)  # fmt: skip
    res = _cli("import", str(pq_file), "--source", "shop", data_dir=tmp_path)
    assert json.loads(res.stdout.strip().splitlines()[-1])["accepted"] == 2, res.stderr
