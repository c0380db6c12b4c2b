"""Columnar batches: log records -> one Arrow table per micro-batch (never row-by-row inserts).

>>> from segflow.log.base import Record
>>> from segflow.spec import Event
>>> e = Event(type="track", message_id="m1", source_id="web", timestamp_ms=5, received_at_ms=6,
...           user_id="u1", event="Signed Up", properties={"plan": "pro"})
>>> t = events_table([Record(0, 0, e)], loaded_at_ms=7)
>>> t.num_rows, t.column("properties")[0].as_py()
(1, '{"plan":"pro"}')
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pyarrow as pa

from segflow.log.base import Record

_json = msgspec.json.Encoder()
_EMPTY = b"{}"


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
