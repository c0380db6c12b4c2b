from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.support.cdnow import MISSING, cdnow

from segflow.warehouse.exceptions import ImportFormatError
from segflow.warehouse.readers import (
    CDNOW_COLUMNS,
    RowError,
    detect_format,
    parse_mapping,
    read_rows,
    with_message_id,
)

CDNOW = cdnow()


def test_jsonl_reports_bad_lines_with_their_numbers(tmp_path: Path) -> None:
    f = tmp_path / "e.jsonl"
    f.write_text('{"type": "track"}\n\n{not json}\n[1, 2]\n{"type": "page"}\n')
    rows = list(read_rows(f, "jsonl", None))
    assert [(line, isinstance(r, RowError)) for line, r in rows] == [
        (1, False),
        (3, True),
        (4, True),
        (5, False),
    ]
    bad = rows[1][1]
    assert isinstance(bad, RowError) and "invalid JSON" in bad.reason and bad.raw == b"{not json}\n"


def test_csv_mapping_with_converters_and_literals(tmp_path: Path) -> None:
    f = tmp_path / "o.csv"
    f.write_text("id,ts,amt,ok\n1,1700000000000,2.5,yes\n2,,x,no\n")
    mapping = parse_mapping(
        [
            "type==track",
            "userId=id",
            "timestamp=ts:epoch_ms",
            "properties.amount=amt:float",
            "properties.ok=ok:bool",
        ]
    )
    rows = list(read_rows(f, "csv", mapping))
    assert rows[0] == (
        2,
        {
            "type": "track",
            "userId": "1",
            "timestamp": "2023-11-14T22:13:20Z",
            "properties": {"amount": 2.5, "ok": True},
        },
    )
    line, err = rows[1]
    assert line == 3 and isinstance(err, RowError) and err.field == "properties.amount"


def test_csv_without_mapping_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "o.csv"
    f.write_text("a\n1\n")
    with pytest.raises(ImportFormatError):
        list(read_rows(f, "csv", None))


@pytest.mark.parametrize("spec", ["nofield", "=col", "x=col:nope"])
def test_bad_mapping_entries(spec: str) -> None:
    with pytest.raises(ImportFormatError):
        parse_mapping([spec])


def test_parquet_rows_are_wire_messages(tmp_path: Path) -> None:
    f = tmp_path / "e.parquet"
    pq.write_table(
        pa.table({"type": ["track"], "userId": ["u"], "event": ["X"], "anonymousId": [None]}), f
    )
    assert list(read_rows(f, "parquet", None)) == [
        (1, {"type": "track", "userId": "u", "event": "X"})
    ]


def test_a_broken_parquet_file_is_a_format_error(tmp_path: Path) -> None:
    f = tmp_path / "e.parquet"
    f.write_bytes(b"not parquet")
    with pytest.raises(ImportFormatError):
        list(read_rows(f, "parquet", None))


def test_message_ids_are_deterministic_and_kept_when_given() -> None:
    assert with_message_id({"messageId": "mine"}, "k", 1)["messageId"] == "mine"
    assert with_message_id({}, "k", 1) != with_message_id({}, "k", 2)


def test_detect_format() -> None:
    assert [detect_format(Path(p)) for p in ("a.jsonl", "b.parquet", "c.csv", "d.txt")] == [
        "jsonl",
        "parquet",
        "csv",
        "csv",
    ]


@pytest.mark.skipif(CDNOW is None, reason=MISSING)
def test_cdnow_preset_maps_the_real_file() -> None:
    assert CDNOW is not None
    rows = read_rows(
        CDNOW, "csv", parse_mapping(["cdnow"]), delimiter="whitespace", columns=CDNOW_COLUMNS
    )
    _line, first = next(iter(rows))
    assert first == {
        "type": "track", "event": "Order Completed", "userId": "00001", "timestamp": "1997-01-01T00:00:00Z",
        "properties": {"quantity": 1, "revenue": 11.77},
    }  # fmt: skip
