"""Columnar batches: log records -> one Arrow table per micro-batch (never row-by-row inserts).

Two ways in. :func:`encoded_table` is the loader's: it starts from the log's encoded events
(msgpack, :func:`~segflow.spec.events.encode_event`) and holds the interpreter as little as it
can. A chunk of events at a time (so that what it decodes dies young and the garbage
collector has nothing to walk), msgspec decodes the scalar columns and writes them back as
one JSON line per event, which DuckDB parses in :data:`INSERT_ENCODED_SQL` (with the
interpreter released); only ``properties``, ``traits`` and ``context`` become Python objects,
and msgspec writes their JSON text: the very bytes :func:`events_table` writes (DuckDB's own
JSON writer would not: ``1e20`` would become ``100000000000000000000.0``). numpy finds the
lines' ends, so no Python object is made per event and column.

:func:`events_table` starts from decoded records (the PostgreSQL loader, the benchmarks, the
tests' reference).

>>> from segflow.log.base import Record
>>> from segflow.spec import Event
>>> e = Event(type="track", message_id="m1", source_id="web", timestamp_ms=5, received_at_ms=6,
...           user_id="u1", event="Signed Up", properties={"plan": "pro"})
>>> t = events_table([Record(0, 0, e)], loaded_at_ms=7)
>>> t.num_rows, t.column("properties")[0].as_py()
(1, '{"plan":"pro"}')
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from segflow.log.base import Record
from segflow.spec.events import Event, decode_event
from segflow.warehouse.schema import EVENT_COLUMNS

_json = msgspec.json.Encoder()
_first, _second = itemgetter(0), itemgetter(1)
_EMPTY = b"{}"
_NEWLINE = 10
_CHUNK = 128
"""Events whose JSON columns are decoded at once: small enough that their objects are freed
before the collector's first generation fills (700 objects), large enough to amortise a call."""


def _json_column(values: list[dict[str, object]]) -> pa.Array:
    # bytes -> binary -> string skips one Python-level decode per value.
    enc = _json.encode
    return pa.array([enc(v) if v else _EMPTY for v in values], pa.binary()).cast(pa.string())


EVENTS_ARROW_SCHEMA = pa.schema(
    [
        ("message_id", pa.string()),
        ("source_id", pa.string()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("name", pa.string()),
        ("category", pa.string()),
        ("timestamp_ms", pa.int64()),
        ("timestamp", pa.timestamp("ms")),
        ("received_at_ms", pa.int64()),
        ("user_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("group_id", pa.string()),
        ("previous_id", pa.string()),
        ("properties", pa.string()),
        ("traits", pa.string()),
        ("context", pa.string()),
        ("log_partition", pa.int32()),
        ("log_offset", pa.int64()),
        ("loaded_at_ms", pa.int64()),
    ]
)


def events_table(records: Sequence[Record], *, loaded_at_ms: int) -> pa.Table:
    """The ``events`` rows of ``records`` as an Arrow table in the warehouse's column order."""
    evs = [r.event for r in records]
    ts = pa.array([e.timestamp_ms for e in evs], pa.int64())
    columns = [
        pa.array([e.message_id for e in evs], pa.string()),
        pa.array([e.source_id for e in evs], pa.string()),
        pa.array([e.type for e in evs], pa.string()),
        pa.array([e.event for e in evs], pa.string()),
        pa.array([e.name for e in evs], pa.string()),
        pa.array([e.category for e in evs], pa.string()),
        ts,
        ts.cast(pa.timestamp("ms")),
        pa.array([e.received_at_ms for e in evs], pa.int64()),
        pa.array([e.user_id for e in evs], pa.string()),
        pa.array([e.anonymous_id for e in evs], pa.string()),
        pa.array([e.group_id for e in evs], pa.string()),
        pa.array([e.previous_id for e in evs], pa.string()),
        _json_column([e.properties for e in evs]),
        _json_column([e.traits for e in evs]),
        _json_column([e.context for e in evs]),
        pa.array([r.partition for r in records], pa.int32()),
        pa.array([r.offset for r in records], pa.int64()),
        pa.array([loaded_at_ms] * len(evs), pa.int64()),
    ]
    return pa.Table.from_arrays(columns, schema=EVENTS_ARROW_SCHEMA)


# -- from the log's encoded events -----------------------------------------------------------


@dataclass(frozen=True)
class LogBatch:
    """One micro-batch of the log, undecoded: per partition, its ``(offset, encoded event)``
    pairs in offset order (what ``read_encoded`` returns).

    >>> from segflow.spec.events import encode_event
    >>> e = Event(type="track", message_id="m1", source_id="web", timestamp_ms=5,
    ...           received_at_ms=6, user_id="u1")
    >>> batch = LogBatch([(3, [(10, encode_event(e))])])
    >>> len(batch), batch.records()[0].offset
    (1, 10)
    """

    parts: list[tuple[int, list[tuple[int, bytes]]]]

    def __len__(self) -> int:
        return sum(len(rows) for _, rows in self.parts)

    def payloads(self) -> list[bytes]:
        """The encoded events, in the batch's order."""
        return list(map(_second, chain.from_iterable(rows for _, rows in self.parts)))

    def records(self) -> list[Record]:
        """The batch decoded (for a writer that takes :class:`Record` s)."""
        return [
            Record(p, o, decode_event(payload)) for p, rows in self.parts for o, payload in rows
        ]


class _Head(msgspec.Struct, gc=False):
    """The scalar columns of an event (the rest of the encoded event is skipped)."""

    type: str
    message_id: str
    source_id: str
    timestamp_ms: int
    received_at_ms: int
    user_id: str | None = None
    anonymous_id: str | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    group_id: str | None = None
    previous_id: str | None = None


class _Body(msgspec.Struct, gc=False):
    """The JSON columns of an event."""

    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    context: dict[str, Any] = {}


_heads = msgspec.msgpack.Decoder(list[_Head])
_bodies = msgspec.msgpack.Decoder(list[_Body])


class _Event(Event, frozen=True, gc=False):
    """An :class:`Event` the garbage collector does not track (it holds no cycle): decoded
    for ``skip`` a chunk at a time, so that a loader in a process with a large heap does not
    make the collector walk it."""


_events = msgspec.msgpack.Decoder(list[_Event])
_JSON_COLUMNS = ("properties", "traits", "context")
_SQL_TYPES = {"VARCHAR NOT NULL": "VARCHAR", "BIGINT NOT NULL": "BIGINT"}
_HEAD_FIELDS = _Head.__struct_fields__
_HEAD_TYPE = msgspec.json.encode(
    {name: _SQL_TYPES.get(kind, kind) for name, kind in EVENT_COLUMNS if name in _HEAD_FIELDS}
).decode()


def _select(name: str) -> str:
    if name in _HEAD_FIELDS:
        return f"h.{name}"
    if name == "timestamp":
        return "epoch_ms(h.timestamp_ms)"
    if name == "loaded_at_ms":
        return "$loaded_at_ms"
    if name in _JSON_COLUMNS:
        return f"rtrim({name}, chr({_NEWLINE}))"
    return name


_COLUMNS = [name for name, _ in EVENT_COLUMNS]
INSERT_ENCODED_SQL = (
    f"INSERT OR IGNORE INTO events ({', '.join(_COLUMNS)})"
    f" SELECT {', '.join(_select(c) for c in _COLUMNS)}"
    f" FROM (SELECT from_json(head, '{_HEAD_TYPE}') AS h, * EXCLUDE (head) FROM _wh_batch)"
)
"""Inserts a registered :func:`encoded_table` ``_wh_batch`` (parameter ``loaded_at_ms``)."""


def encoded_table(batch: LogBatch, skip: Callable[[Event], bool] | None = None) -> pa.Table:
    """``batch`` as the Arrow table :data:`INSERT_ENCODED_SQL` inserts, without the events
    ``skip`` is true for: a JSON line of the scalar columns (``head``), the JSON columns (each
    value ends with the newline that ended its line), ``log_partition``, ``log_offset``.

    >>> from segflow.spec.events import encode_event
    >>> e = Event(type="track", message_id="m1", source_id="web", timestamp_ms=5,
    ...           received_at_ms=6, user_id="u1", properties={"plan": "pro"})
    >>> t = encoded_table(LogBatch([(0, [(0, encode_event(e))])]))
    >>> t.column("properties")[0].as_py().rstrip(), t.column("head")[0].as_py()[:37]
    ('{"plan":"pro"}', '{"type":"track","message_id":"m1","so')
    """
    payloads = batch.payloads()
    n = len(payloads)
    blobs: dict[str, list[bytes]] = {c: [] for c in ("head", *_JSON_COLUMNS)}
    blocked: list[bool] = []
    for i in range(0, n, _CHUNK):
        chunk = _msgpack_array(payloads[i : i + _CHUNK])
        blobs["head"].append(_json.encode_lines(_heads.decode(chunk)))
        bodies: Sequence[_Body | Event]
        if skip is None:
            bodies = _bodies.decode(chunk)
        else:
            events: list[_Event] = _events.decode(chunk)
            blocked.extend(map(skip, events))
            bodies = events
        for column in _JSON_COLUMNS:
            blobs[column].append(_json.encode_lines(list(map(attrgetter(column), bodies))))
    table = pa.Table.from_arrays(
        [*(lines_array(b"".join(blob), n) for blob in blobs.values()), *_positions(batch)],
        names=["head", *_JSON_COLUMNS, "log_partition", "log_offset"],
    )
    return _without(table, blocked)


def _without(table: pa.Table, blocked: list[bool]) -> pa.Table:
    if not any(blocked):
        return table
    return table.filter(pc.invert(pa.array(blocked, pa.bool_())))


def _msgpack_array(payloads: list[bytes]) -> bytes:
    """Encoded events -> one msgpack array of them (decoded in one call)."""
    return b"".join([b"\xdd", struct.pack(">I", len(payloads)), *payloads])


def lines_array(blob: bytes, n: int) -> pa.Array:
    """``n`` newline-terminated lines (msgspec's ``encode_lines``; JSON escapes every newline
    inside a value) -> an Arrow string array of them, each with its newline (the insert trims
    it, with the interpreter released): no Python object per line.

    >>> a = lines_array(_json.encode_lines([{"a": 1}, {}]), 2)
    >>> [line.rstrip() for line in a.to_pylist()], a[1].as_py().endswith(chr(10))
    (['{"a":1}', '{}'], True)
    """
    raw = np.frombuffer(blob, np.uint8)
    ends = np.flatnonzero(raw == _NEWLINE)
    if len(ends) != n:
        raise ValueError(f"expected {n} JSON lines, found {len(ends)}")
    offsets = np.empty(n + 1, np.int64)
    offsets[0] = 0
    offsets[1:] = ends + 1
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(blob))


def _positions(batch: LogBatch) -> tuple[pa.Array, pa.Array]:
    """``log_partition`` and ``log_offset`` of the batch's events."""
    sizes = [len(rows) for _, rows in batch.parts]
    partitions = np.repeat(np.array([p for p, _ in batch.parts], np.int32), sizes)
    offsets = list(map(_first, chain.from_iterable(rows for _, rows in batch.parts)))
    return pa.array(partitions, pa.int32()), pa.array(offsets, pa.int64())
