"""The privacy benchmark's baseline: erase a person the way a competent user would by hand.

With segflow stopped, open each store and delete with plain SQL, without the indexes segflow
keeps for the job (the profile's timeline in ``state.sqlite``, the message ids it points to):

- ``log.sqlite``: read every record, decode it, delete those carrying one of the identifiers;
  dead letters whose payload contains one (``LIKE``);
- ``state.sqlite``: the profile id from the identity index, then every key/value pair whose
  key or value contains the profile id or an identifier (``instr`` scans);
- ``warehouse.duckdb``: the profile ids from ``identities``, then ``DELETE`` in every table
  by profile id or identifier column;
- ``delivery.sqlite``: ``DELETE`` by profile id.

It does not tell destinations (no exits, no notice), holds nothing back while it runs and is
not resumable: it is a lower bound of the same deletion work, not an equivalent product.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import duckdb

from segflow.identity import IdentityRules, extract_identifiers
from segflow.spec.events import decode_event


def erase_by_hand(data: Path, identifiers: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Delete the person named by ``identifiers`` from every store of ``data``."""
    counts: dict[str, int] = {}
    wanted = set(identifiers)
    values = [v for _, v in identifiers]
    counts["log"] = _log(data / "log.sqlite", wanted, values)
    state = sqlite3.connect(data / "state.sqlite", isolation_level=None)
    owners = [
        row[0]
        for t, v in identifiers
        for row in state.execute("SELECT value FROM kv WHERE ns='owner' AND key=?", (f"{t}:{v}",))
    ]
    profile_ids = sorted({bytes(o).decode() for o in owners})
    needles = [*values, *profile_ids]
    state.execute("BEGIN")
    counts["state"] = sum(
        state.execute(
            "DELETE FROM kv WHERE instr(key, ?) > 0 OR instr(CAST(value AS TEXT), ?) > 0", (n, n)
        ).rowcount
        for n in needles
    )
    state.execute("COMMIT")
    state.close()
    counts["warehouse"] = _warehouse(data / "warehouse.duckdb", values, profile_ids)
    delivery = sqlite3.connect(data / "delivery.sqlite", isolation_level=None)
    marks = ",".join("?" * len(profile_ids)) or "NULL"
    delivery.execute("BEGIN")
    counts["delivery"] = sum(
        delivery.execute(sql.format(marks=marks), profile_ids).rowcount
        for sql in (
            "DELETE FROM attempts WHERE delivery_id IN"
            " (SELECT id FROM deliveries WHERE profile_id IN ({marks}))",
            "DELETE FROM deliveries WHERE profile_id IN ({marks})",
            "DELETE FROM sent_state WHERE profile_id IN ({marks})",
        )
    )
    delivery.execute("COMMIT")
    delivery.close()
    return counts


def _log(path: Path, wanted: set[tuple[str, str]], values: Sequence[str]) -> int:
    con = sqlite3.connect(path, isolation_level=None)
    rules = IdentityRules()
    doomed = [
        (partition, offset)
        for partition, offset, payload in con.execute(
            "SELECT partition, offset, payload FROM records"
        )
        if wanted.intersection(extract_identifiers(decode_event(payload), rules))
    ]
    con.execute("BEGIN")
    con.executemany("DELETE FROM records WHERE partition=? AND offset=?", doomed)
    for value in values:
        con.execute("DELETE FROM dead_letters WHERE CAST(payload AS TEXT) LIKE ?", (f"%{value}%",))
    con.execute("COMMIT")
    con.close()
    return len(doomed)


def _warehouse(path: Path, values: Sequence[str], profile_ids: Sequence[str]) -> int:
    con = duckdb.connect(str(path))
    found = con.execute(
        "SELECT DISTINCT profile_id FROM identities WHERE id_value IN (SELECT unnest(?))",
        [list(values)],
    ).fetchall()
    ids = sorted({*profile_ids, *(r[0] for r in found)})
    deleted = 0
    con.execute("BEGIN")
    for (table,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name='main'"
    ).fetchall():
        cols = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
        conds = [
            f"{c} IN (SELECT unnest($ids))"
            for c in ("profile_id", "survivor", "absorbed")
            if c in cols
        ]
        conds += [
            f"{c} IN (SELECT unnest($vals))"
            for c in ("user_id", "anonymous_id", "id_value")
            if c in cols
        ]
        if conds:
            where = " OR ".join(conds)
            params = {k: v for k, v in (("ids", ids), ("vals", list(values))) if f"${k}" in where}
            row = con.execute(f"DELETE FROM {table} WHERE {where}", params).fetchone()
            deleted += int(row[0]) if row else 0
    con.execute("COMMIT")
    con.close()
    return deleted
