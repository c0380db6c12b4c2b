"""Bulk import: a file of historical events -> the same ``Ingestor`` live traffic goes through.

Validation, name rules, tracking plans, dedupe and dead letters are the collector's
(``segflow.collect.ingest.Ingestor``); identity resolution happens downstream in the
processor, exactly as for live events. Rows that cannot even become a message (bad JSON, a
missing mapped column, a bad number) are dead-lettered here, with their line number.
Every message gets ``context.import = {"file", "line"}`` so a refusal names its line too.

>>> from segflow.warehouse.readers import RowError
>>> ImportInfo(rows=2, accepted=1, errors=[ImportError_(3, "line", "invalid JSON")]).refused
1
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from segflow.clock import Clock
from segflow.log.base import DeadLetter
from segflow.warehouse.readers import FieldMap, RowError, file_key, read_rows, with_message_id

BATCH_ROWS = 5_000


@dataclass(frozen=True)
class ImportError_:
    """One refused row: its line (row number for Parquet), the field and the reason."""

    line: int
    field: str
    reason: str


@dataclass
class ImportInfo:
    """The counts an import reports at the end."""

    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    errors: list[ImportError_] = field(default_factory=list)

    @property
    def refused(self) -> int:
        return len(self.errors)


class _Refusal(Protocol):
    index: int
    field: str
    reason: str


class _Result(Protocol):
    accepted: int
    duplicates: int

    @property
    def refused(self) -> Sequence[_Refusal]: ...


class IngestService(Protocol):
    """What import needs from ``segflow.collect.ingest.Ingestor``."""

    def ingest(
        self,
        source: Any,
        messages: list[dict[str, Any]],
        *,
        received_at_ms: int,
        ip: str | None = None,
    ) -> Any: ...


Progress = Callable[[int], None]


def _batches(
    rows: Iterator[tuple[int, dict[str, Any] | RowError]], size: int
) -> Iterator[list[tuple[int, dict[str, Any] | RowError]]]:
    batch: list[tuple[int, dict[str, Any] | RowError]] = []
    for item in rows:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def import_file(
    path: str | Path,
    ingestor: IngestService,
    source: Any,
    dead_letter: Callable[[Sequence[DeadLetter]], None],
    clock: Clock,
    *,
    fmt: str,
    mapping: Sequence[FieldMap] | None = None,
    delimiter: str = ",",
    columns: Sequence[str] | None = None,
    progress: Progress | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ImportInfo:
    """Import every row of ``path`` through ``ingestor`` in batches; returns the counts."""
    path = Path(path)
    key = file_key(path)
    info = ImportInfo()
    source_id = str(getattr(source, "id", getattr(source, "name", "")))
    for batch in _batches(
        read_rows(path, fmt, mapping, delimiter=delimiter, columns=columns), batch_rows
    ):
        now = clock.now_ms()
        messages: list[dict[str, Any]] = []
        lines: list[int] = []
        letters: list[DeadLetter] = []
        for line, row in batch:
            if isinstance(row, RowError):
                info.errors.append(ImportError_(line, row.field, row.reason))
                letters.append(DeadLetter(source_id=source_id, received_at_ms=now, field=row.field,
                                          reason=f"{path.name} line {line}: {row.reason}", payload=row.raw))  # fmt: skip
                continue
            row.setdefault("context", {})
            if isinstance(row["context"], dict):
                row["context"]["import"] = {"file": path.name, "line": line}
            messages.append(with_message_id(row, key, line))
            lines.append(line)
        if letters:
            dead_letter(letters)
        if messages:
            result = ingestor.ingest(source, messages, received_at_ms=now)
            info.accepted += result.accepted - result.duplicates
            info.duplicates += result.duplicates
            info.errors.extend(
                ImportError_(lines[r.index], r.field, r.reason) for r in result.refused
            )
        info.rows += len(batch)
        if progress:
            progress(len(batch))
    info.errors.sort(key=lambda e: e.line)
    return info
