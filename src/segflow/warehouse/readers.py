"""Reading historical event files for bulk import: JSON lines, CSV (with a column mapping),
Parquet, and the CDNOW preset. Each reader yields ``(line, message | RowError)``; messages are
Segment wire dicts (camelCase), so import goes through the same validation as live traffic.

A mapping entry is ``FIELD=COLUMN[:CONVERTER]`` or ``FIELD==LITERAL``; ``FIELD`` is a dotted
wire path (``userId``, ``properties.revenue``); converters: ``str``, ``int``, ``float``,
``bool``, ``yyyymmdd``, ``epoch_ms``, ``epoch_s``.

>>> m = parse_mapping(["type==track", "userId=cust", "properties.revenue=amount:float"])
>>> apply_mapping(m, {"cust": "7", "amount": "1.5"})
{'type': 'track', 'userId': '7', 'properties': {'revenue': 1.5}}
"""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq

from segflow.warehouse.exceptions import ImportFormatError

FORMATS = ("jsonl", "csv", "parquet")
CDNOW_MAPPING: tuple[str, ...] = (
    "type==track",
    "event==Order Completed",
    "userId=customer_id",
    "timestamp=date:yyyymmdd",
    "properties.quantity=number_of_cds:int",
    "properties.revenue=dollar_value:float",
)
"""CDNOW_master.txt (whitespace-separated, no header): customer id, yyyymmdd, CDs, dollars."""
CDNOW_COLUMNS = ("customer_id", "date", "number_of_cds", "dollar_value")
PRESETS = {"cdnow": CDNOW_MAPPING}


@dataclass(frozen=True)
class RowError:
    """A row that cannot become a message: where and why."""

    line: int
    field: str
    reason: str
    raw: bytes = b""


def _yyyymmdd(value: str) -> str:
    return (
        datetime.strptime(value.strip(), "%Y%m%d")
        .replace(tzinfo=UTC)
        .isoformat()
        .replace("+00:00", "Z")
    )


def _epoch(scale: int) -> Callable[[str], str]:
    def conv(value: str) -> str:
        dt = datetime.fromtimestamp(float(value) / scale, tz=UTC)
        return dt.isoformat().replace("+00:00", "Z")

    return conv


def _bool(value: str) -> bool:
    low = str(value).strip().lower()
    if low in {"true", "1", "yes"}:
        return True
    if low in {"false", "0", "no"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "str": str, "int": int, "float": float, "bool": _bool,
    "yyyymmdd": _yyyymmdd, "epoch_ms": _epoch(1000), "epoch_s": _epoch(1),
}  # fmt: skip


@dataclass(frozen=True)
class FieldMap:
    path: tuple[str, ...]
    column: str | None
    literal: str | None
    convert: Callable[[Any], Any]


def parse_mapping(specs: Sequence[str]) -> list[FieldMap]:
    """Parse mapping entries (or one preset name, e.g. ``["cdnow"]``)."""
    if len(specs) == 1 and specs[0] in PRESETS:
        specs = PRESETS[specs[0]]
    out: list[FieldMap] = []
    for spec in specs:
        field, sep, rest = spec.partition("=")
        if not sep or not field:
            raise ImportFormatError(
                "--mapping", f"bad entry {spec!r}: expected FIELD=COLUMN or FIELD==LITERAL"
            )
        if rest.startswith("="):
            out.append(FieldMap(tuple(field.split(".")), None, rest[1:], str))
            continue
        column, _, conv = rest.partition(":")
        if conv and conv not in CONVERTERS:
            raise ImportFormatError(
                "--mapping", f"unknown converter {conv!r} (one of {sorted(CONVERTERS)})"
            )
        out.append(FieldMap(tuple(field.split(".")), column, None, CONVERTERS[conv or "str"]))
    return out


def apply_mapping(mapping: Sequence[FieldMap], row: dict[str, Any]) -> dict[str, Any]:
    """Build a wire message from a row; raises ``KeyError``/``ValueError`` naming the field."""
    msg: dict[str, Any] = {}
    for fm in mapping:
        if fm.literal is not None:
            value: Any = fm.literal
        else:
            raw = row[fm.column] if fm.column is not None else None
            if raw is None or raw == "":
                continue
            try:
                value = fm.convert(raw)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{'.'.join(fm.path)}: {exc}") from exc
        target = msg
        for key in fm.path[:-1]:
            target = target.setdefault(key, {})
        target[fm.path[-1]] = value
    return msg


def with_message_id(msg: dict[str, Any], file_key: str, line: int) -> dict[str, Any]:
    """Give a message without ``messageId`` a deterministic one (re-imports dedupe).

    >>> with_message_id({}, "f", 1) == with_message_id({}, "f", 1)
    True
    """
    if not msg.get("messageId"):
        msg["messageId"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"segflow-import:{file_key}:{line}"))
    return msg


def file_key(path: Path) -> str:
    """A stable key of a file's identity for deterministic message ids (name + size + head hash)."""
    with path.open("rb") as fh:
        head = fh.read(65536)
    return f"{path.name}:{path.stat().st_size}:{hashlib.sha1(head).hexdigest()[:16]}"


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if suffix in {".parquet", ".pq"}:
        return "parquet"
    return "csv"


_decoder = msgspec.json.Decoder()


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = _decoder.decode(line)
            except msgspec.DecodeError as exc:
                yield line_no, RowError(line_no, "line", f"invalid JSON: {exc}", line)
                continue
            if not isinstance(obj, dict):
                yield line_no, RowError(line_no, "line", "a line must be a JSON object", line)
                continue
            yield line_no, obj


def _csv_rows(
    path: Path, delimiter: str, columns: Sequence[str] | None
) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    with path.open(newline="", encoding="utf-8") as fh:
        if delimiter == "whitespace":
            header = list(columns) if columns else fh.readline().split()
            start = 1 if columns else 2
            for line_no, line in enumerate(fh, start=start):
                parts = line.split()
                if not parts or parts == header:  # blank, or a header line before known columns
                    continue
                if len(parts) != len(header):
                    yield (
                        line_no,
                        RowError(
                            line_no,
                            "line",
                            f"expected {len(header)} fields, got {len(parts)}",
                            line.encode(),
                        ),
                    )
                    continue
                yield line_no, dict(zip(header, parts, strict=True))
            return
        reader = csv.DictReader(
            fh,
            fieldnames=list(columns) if columns else None,
            delimiter="\t" if delimiter == "tab" else delimiter,
        )
        for row in reader:
            line_no = reader.line_num
            if None in row or any(v is None for v in row.values()):
                yield line_no, RowError(line_no, "line", "wrong number of fields", _csv_line(row))
                continue
            yield line_no, row


def _csv_line(row: dict[Any, Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow([v for v in row.values() if not isinstance(v, list)])
    return buf.getvalue().encode()


def read_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """Rows of a Parquet file; ``line`` is the 1-based row number."""
    try:
        pfile = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise ImportFormatError(str(path), f"not a Parquet file: {exc}") from exc
    row_no = 0
    for batch in pfile.iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            row_no += 1
            yield row_no, {k: v for k, v in row.items() if v is not None}


def read_rows(
    path: Path,
    fmt: str,
    mapping: Sequence[FieldMap] | None,
    *,
    delimiter: str = ",",
    columns: Sequence[str] | None = None,
) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """Messages of a file: rows mapped when a mapping is given, else taken as wire messages."""
    if fmt == "jsonl":
        rows = read_jsonl(path)
    elif fmt == "parquet":
        rows = read_parquet(path)
    elif fmt == "csv":
        if not mapping:
            raise ImportFormatError(str(path), "CSV needs a --mapping (FIELD=COLUMN ...)")
        rows = _csv_rows(path, delimiter, columns)
    else:
        raise ImportFormatError(str(path), f"unknown format {fmt!r} (one of {FORMATS})")
    for line, row in rows:
        if isinstance(row, RowError) or not mapping:
            yield line, row
            continue
        try:
            yield line, apply_mapping(mapping, row)
        except KeyError as exc:
            yield line, RowError(line, "mapping", f"missing column {exc}", _raw(row))
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            yield line, RowError(line, field, reason or str(exc), _raw(row))


def _raw(row: dict[str, Any]) -> bytes:
    return msgspec.json.encode(row)
