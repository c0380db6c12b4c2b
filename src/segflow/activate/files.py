"""File destinations: change files per period and audience snapshots (Parquet and CSV).

Layout under the destination's directory::

    changes/<period start, UTC, e.g. 2024-01-01T13>.csv       appended as changes arrive
    snapshots/<segment>/<taken at>.parquet and .csv           one row per current member

Writing goes through :class:`Writer`, so object storage can replace the local directory.

Every destination directory lies inside the **export root** (``activate.export_root``,
default ``DATA_DIR/exports``; :class:`ExportRoot`): an ``editor`` names where the files go,
so without it an API token could have the server write anywhere its process may. A relative
directory is taken under the root; an absolute one outside it, a ``..`` and a symbolic link
that leads out of it are refused when the destination is created or changed (400 on
``directory``) and again before every write (a link made later: a dead letter with the cause).

>>> import tempfile
>>> w = LocalWriter(tempfile.mkdtemp())
>>> w.append("a/b.csv", b"x\\n"); w.append("a/b.csv", b"y\\n"); w.read("a/b.csv")
b'x\\ny\\n'
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import msgspec
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from segflow.activate.exceptions import (
    InvalidDestinationError,
    RejectedDeliveryError,
    RetryableDeliveryError,
)
from segflow.activate.identifiers import PhoneRules, hashed_identifier
from segflow.activate.models import Delivery, Destination
from segflow.activate.payloads import select_traits

CHANGE_COLUMNS = ("webhook_id", "profile_id", "segment", "kind", "at_ms", "sequence", "payload")


class ExportRoot:
    """The directory that every file destination's directory must lie in.

    >>> import os, tempfile
    >>> root = ExportRoot(tempfile.mkdtemp())
    >>> root.place("crm") == os.path.join(root.path, "crm")
    True
    >>> try:
    ...     root.place("../etc")
    ... except InvalidDestinationError as exc:
    ...     print(exc.field, exc.reason.split(";")[0])
    directory '../etc': '..' is not allowed
    """

    def __init__(self, path: str | Path) -> None:
        self.path = os.path.abspath(path)

    def place(self, directory: str) -> str:
        """``directory`` as an absolute path inside the root, or :class:`InvalidDestinationError`
        on ``directory`` (``..``, an absolute path outside it, a link leading out of it)."""
        if "\x00" in directory:
            raise self._refuse(directory, "a path cannot hold a NUL character")
        if ".." in Path(directory).parts:
            raise self._refuse(directory, "'..' is not allowed")
        # an absolute directory replaces the root; normpath only drops '.' and repeated '/'
        full = os.path.normpath(os.path.join(self.path, directory))
        if not _within(full, self.path):
            raise self._refuse(directory, "it is outside the export root")
        if not _within(os.path.realpath(full), os.path.realpath(self.path)):
            raise self._refuse(directory, "a symbolic link leads out of the export root")
        return full

    def check(self, directory: str) -> Path:
        """At write time: :meth:`place` again (a link may have been made since), as a
        terminal delivery error, so the change goes to the dead letters with the cause."""
        try:
            return Path(self.place(directory))
        except InvalidDestinationError as exc:
            raise RejectedDeliveryError(f"not written: {exc.reason}") from exc

    def _refuse(self, directory: str, why: str) -> InvalidDestinationError:
        return InvalidDestinationError(
            "directory",
            f"{directory!r}: {why}; file destinations write inside {self.path}"
            " (activate.export_root): give a directory relative to it",
            details={"directory": directory, "export_root": self.path},
        )


def _within(path: str, root: str) -> bool:
    path, root = os.path.normpath(path), os.path.normpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Writer(Protocol):
    """Where file destinations put bytes (a local directory; object storage later)."""

    def append(self, path: str, data: bytes) -> None: ...

    def put(self, path: str, data: bytes) -> None: ...

    def exists(self, path: str) -> bool: ...


class LocalWriter:
    """A :class:`Writer` on a local directory; ``append`` fsyncs before returning."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, path: str) -> Path:
        full = (self.root / path).resolve()
        if self.root.resolve() not in full.parents:
            raise InvalidDestinationError("path", f"{path!r} escapes the destination directory")
        full.parent.mkdir(parents=True, exist_ok=True)
        return full

    def append(self, path: str, data: bytes) -> None:
        with open(self._path(path), "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def put(self, path: str, data: bytes) -> None:
        full = self._path(path)
        tmp = full.with_suffix(full.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, full)

    def exists(self, path: str) -> bool:
        return (self.root / path).exists()

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()


def period_name(at_ms: int, period_ms: int) -> str:
    """The file name of the period holding ``at_ms``.

    >>> period_name(3_600_000 * 25 + 5, 3_600_000)
    '1970-01-02T01-00-00'
    """
    start = at_ms - at_ms % period_ms
    return datetime.fromtimestamp(start / 1000, tz=UTC).strftime("%Y-%m-%dT%H-%M-%S")


def _csv_lines(rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


class FileSink:
    """Appends changes to the change file of their period (by the time they are written).

    ``writer_for(directory)`` makes the :class:`Writer` of a destination; with ``exports``,
    the directory is checked to be inside the export root before every write.
    """

    def __init__(self, writer_for: Any = LocalWriter, exports: ExportRoot | None = None) -> None:
        self.writer_for = writer_for
        self.exports = exports

    def write(self, dest: Destination, deliveries: Sequence[Delivery], now_ms: int) -> int:
        if not dest.directory:
            raise InvalidDestinationError("directory", "a file destination needs a directory")
        directory = self.exports.check(dest.directory) if self.exports else dest.directory
        writer: Writer = self.writer_for(directory)
        path = f"changes/{period_name(now_ms, dest.file_period_ms)}.csv"
        rows = [
            (
                d.webhook_id,
                d.profile_id,
                d.segment,
                d.kind,
                d.at_ms,
                d.sequence,
                msgspec.json.encode(d.payload).decode(),
            )
            for d in deliveries
        ]
        try:
            header = [] if writer.exists(path) else [CHANGE_COLUMNS]
            writer.append(path, _csv_lines([*header, *rows]))
        except OSError as exc:
            raise RetryableDeliveryError(f"cannot write {path}: {exc}") from exc
        return 200


def write_snapshot(
    writer: Writer, segment: str, rows: Sequence[dict[str, Any]], taken_at_ms: int
) -> list[str]:
    """Write the members of ``segment`` as Parquet and CSV; returns the paths written.

    Each row is a flat mapping (``profile_id``, identifiers, selected traits).
    """
    columns = sorted({k for r in rows for k in r} | {"profile_id"})
    table = pa.table({c: [_cell(r.get(c)) for r in rows] for c in columns})
    stem = f"snapshots/{segment}/{period_name(taken_at_ms, 1000)}"
    parquet = io.BytesIO()
    pq.write_table(table, parquet)
    text = io.BytesIO()
    pa_csv.write_csv(table, text)
    writer.put(f"{stem}.parquet", parquet.getvalue())
    writer.put(f"{stem}.csv", text.getvalue())
    return [f"{stem}.parquet", f"{stem}.csv"]


def _cell(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def snapshot_rows(
    members: Iterable[str],
    identities: Any,
    traits: Any,
    trait_names: Sequence[str],
    *,
    hashed: bool,
    phone: PhoneRules = PhoneRules(),
) -> list[dict[str, Any]]:
    """Flat rows for :func:`write_snapshot` from a profile lookup's answers."""
    out: list[dict[str, Any]] = []
    for pid in members:
        row: dict[str, Any] = {"profile_id": pid}
        for id_type, value in identities(pid):
            t, v = hashed_identifier(id_type, value, phone) if hashed else (id_type, value)
            row.setdefault(t, v)
        row.update(select_traits(traits(pid), trait_names, hashed=hashed, phone=phone))
        out.append(row)
    return out
