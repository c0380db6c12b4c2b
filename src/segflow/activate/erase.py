"""Erasing a person from activation: deletion notices, the delivery store, file outputs.

A deletion regulation (``segflow.privacy``) first lets the ``exited`` changes of the profile
reach the destinations, then:

- :func:`queue_deletion_notices` queues a ``profile.deleted`` notice for every destination
  that has ``deletion_notice`` on and was told about the profile (it has ``sent_state`` for
  it): a destination that never heard of the person hears nothing;
- :func:`pending` says how many of the profile's deliveries are still waiting;
- :func:`erase_deliveries` deletes the profile's queue entries (delivered, pending or dead),
  their attempts, what each destination was told (``sent_state``, ``last_delivered``) and
  the consent the feed told for it (``consents``);
- :func:`scrub_files` rewrites the outputs of file destinations whose directory is inside the
  data directory: change files and snapshots lose the profile's rows. Directories outside it
  belong to the systems that read them, like a webhook receiver's database.

>>> import tempfile, os
>>> from segflow.activate.store import DeliveryStore
>>> store = DeliveryStore(os.path.join(tempfile.mkdtemp(), "delivery.sqlite"))
>>> erase_deliveries(store, ["p1"])
{'deliveries': 0, 'attempts': 0, 'sent_state': 0, 'last_delivered': 0, 'consents': 0}
>>> store.close()
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from segflow.activate.identifiers import hashed_identifier
from segflow.activate.models import Destination
from segflow.activate.payloads import iso, webhook_id
from segflow.activate.store import DeliveryStore, NewDelivery


def _marks(values: Sequence[str]) -> str:
    return ",".join("?" * len(values))


def pending(store: DeliveryStore, profile_ids: Sequence[str]) -> int:
    """Deliveries of these profiles still waiting to be sent (or retried)."""
    if not profile_ids:
        return 0
    with store.transaction() as con:
        row = con.execute(
            "SELECT count(*) FROM deliveries WHERE status='pending'"
            f" AND profile_id IN ({_marks(profile_ids)})",
            list(profile_ids),
        ).fetchone()
    return int(row[0]) if row else 0


def erase_deliveries(store: DeliveryStore, profile_ids: Sequence[str]) -> dict[str, int]:
    """Delete the profiles' deliveries, attempts and sent state; returns counts."""
    counts = {"deliveries": 0, "attempts": 0, "sent_state": 0, "last_delivered": 0, "consents": 0}
    if not profile_ids:
        return counts
    ids = list(profile_ids)
    where = f"profile_id IN ({_marks(ids)})"
    with store.transaction() as con:
        counts["attempts"] = con.execute(
            f"DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE {where})",
            ids,
        ).rowcount
        counts["deliveries"] = con.execute(f"DELETE FROM deliveries WHERE {where}", ids).rowcount
        for table in ("sent_state", "last_delivered", "consents"):
            counts[table] = con.execute(f"DELETE FROM {table} WHERE {where}", ids).rowcount
    return counts


def queue_deletion_notices(
    store: DeliveryStore,
    identities: dict[str, list[tuple[str, str]]],
    regulation_id: str,
    now_ms: int,
) -> int:
    """Queue a ``profile.deleted`` notice per (destination with ``deletion_notice``, profile
    it was told about); idempotent (a notice already queued is not queued again)."""
    dests = [d for d in store.destinations() if d.enabled and d.deletion_notice]
    rows: list[NewDelivery] = []
    with store.transaction() as con:
        for dest in dests:
            for pid, idents in sorted(identities.items()):
                told = con.execute(
                    "SELECT 1 FROM sent_state WHERE destination=? AND profile_id=? LIMIT 1",
                    (dest.name, pid),
                ).fetchone()
                wid = webhook_id(dest.name, pid, "", f"deleted:{regulation_id}", 0)
                queued = con.execute(
                    "SELECT 1 FROM deliveries WHERE destination=? AND webhook_id=?",
                    (dest.name, wid),
                ).fetchone()
                if told and not queued:
                    rows.append(_notice(dest, pid, idents, regulation_id, wid, now_ms))
        for row in rows:  # not ``enqueue``: a notice changes no sent state
            con.execute(
                "INSERT INTO deliveries (destination, profile_id, webhook_id, segment, kind,"
                " sequence, at_ms, payload, created_ms) VALUES (?, ?, ?, '', 'deleted', 0, ?, ?, ?)",
                (
                    row.destination,
                    row.profile_id,
                    row.webhook_id,
                    row.at_ms,
                    msgspec.json.encode(row.payload),
                    now_ms,
                ),
            )
    return len(rows)


def deletion_payload(
    dest: Destination, profile_id: str, identities: Sequence[tuple[str, str]], wid: str, at_ms: int
) -> dict[str, Any]:
    """The notice in the destination's format (Segment formats: a ``Profile Deleted`` track).

    >>> d = Destination(name="crm", url="https://crm.example/hook")
    >>> deletion_payload(d, "p1", [("user_id", "u1")], "msg_1", 0)["type"]
    'profile.deleted'
    """
    idents = (
        [hashed_identifier(t, v) for t, v in identities]
        if dest.identifiers == "hashed"
        else list(identities)
    )
    if dest.payload_format == "segflow":
        data = {
            "id": wid,
            "profile_id": profile_id,
            "identifiers": [{"type": t, "value": v} for t, v in idents],
        }
        return {"type": "profile.deleted", "timestamp": iso(at_ms), "data": data}
    first = {t: v for t, v in reversed(idents)}
    return {
        "type": "track",
        "event": "Profile Deleted",
        "messageId": wid,
        "timestamp": iso(at_ms),
        "userId": first.get("user_id"),
        "anonymousId": first.get("anonymous_id") or profile_id,
        "properties": {},
        "context": {"traits": {t: v for t, v in idents if t not in ("user_id", "anonymous_id")}},
    }


def _notice(
    dest: Destination,
    pid: str,
    idents: Sequence[tuple[str, str]],
    regulation_id: str,
    wid: str,
    now_ms: int,
) -> NewDelivery:
    return NewDelivery(
        destination=dest.name,
        profile_id=pid,
        webhook_id=wid,
        segment="",
        kind="deleted",
        sequence=0,
        at_ms=now_ms,
        payload=deletion_payload(dest, pid, idents, wid, now_ms),
    )


# -- file destinations ----------------------------------------------------------------------


def inside(directory: str | Path, root: str | Path) -> bool:
    """Is ``directory`` inside ``root`` (after resolving links)?"""
    d, r = Path(directory).resolve(), Path(root).resolve()
    return d == r or r in d.parents


def scrub_files(
    store: DeliveryStore, data_dir: str | Path, profile_ids: Sequence[str], values: Iterable[str]
) -> int:
    """Remove the profiles' rows from the outputs of file destinations inside ``data_dir``
    (change files and snapshots); returns how many rows were removed."""
    needles = [v for v in {*values, *profile_ids} if v]
    removed = 0
    for dest in store.destinations():
        if dest.kind != "file" or not dest.directory or not inside(dest.directory, data_dir):
            continue
        root = Path(dest.directory)
        for path in sorted(root.glob("changes/*.csv")):
            removed += _scrub_csv(path, needles)
        for path in sorted(root.glob("snapshots/*/*.csv")):
            removed += _scrub_csv(path, needles)
        for path in sorted(root.glob("snapshots/*/*.parquet")):
            removed += _scrub_parquet(path, needles)
    return removed


def _hit(cells: Iterable[Any], needles: Sequence[str]) -> bool:
    return any(n in str(c) for c in cells if c is not None for n in needles)


def _scrub_csv(path: Path, needles: Sequence[str]) -> int:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    if not rows:
        return 0
    header, body = rows[0], rows[1:]
    kept = [r for r in body if not _hit(r, needles)]
    if len(kept) == len(body):
        return 0
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *kept])
    _replace(path, buf.getvalue().encode())
    return len(body) - len(kept)


def _scrub_parquet(path: Path, needles: Sequence[str]) -> int:
    table = pq.read_table(path)
    mask = pa.array([not _hit(row.values(), needles) for row in table.to_pylist()], pa.bool_())
    kept = table.filter(mask)
    if kept.num_rows == table.num_rows:
        return 0
    buf = io.BytesIO()
    pq.write_table(kept, buf)
    _replace(path, buf.getvalue())
    return int(table.num_rows - kept.num_rows)


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".scrub")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


__all__ = [
    "deletion_payload",
    "erase_deliveries",
    "inside",
    "pending",
    "queue_deletion_notices",
    "scrub_files",
]
