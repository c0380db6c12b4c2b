"""The crypto-shredding key table on the shared PostgreSQL database (``shared.dsn``).

The same rows and calls as :class:`~segflow.log.keys.SqliteKeyTable` (read that docstring
first), in ``shred_keys`` and ``shred_meta`` of ``shared.schema``, so the collectors of every
host seal a person's records under one key and one regulation deletes it for all of them.
Creating keys is one ``INSERT ... ON CONFLICT (name) DO NOTHING`` followed by a read: two
collectors racing on a new person both read the row that won. Deleted rows leave the table's
live pages at once; :meth:`PgKeyTable.compact` runs ``VACUUM FULL`` on the table (a rewritten
file), but the server's write-ahead log and its backups keep old row versions until its own
retention recycles them (docs/privacy.md, "Kafka").
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from segflow.db.postgres import SharedStoreUnavailable, connect_shared
from segflow.log.keys import ID_BYTES, KEY_BYTES

_DDL = (
    "CREATE TABLE IF NOT EXISTS shred_keys(id BYTEA PRIMARY KEY, name BYTEA NOT NULL UNIQUE,"
    " key BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS shred_meta(name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
)


class PgKeyTable:
    """See the module docstring. Thread-safe; shared by the processes of every host."""

    def __init__(self, dsn: str, *, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self._lock = threading.Lock()
        self._con: Any = connect_shared(dsn, schema, ddl=_DDL)
        self._secret: bytes | None = None

    def _run(self, sql: str, params: Any = ()) -> list[Any]:
        """One statement (autocommit); a lost connection raises
        :class:`~segflow.db.postgres.SharedStoreUnavailable` and is reopened by the next call."""
        import psycopg

        with self._lock:
            if self._con.closed:
                self._con = connect_shared(self.dsn, self.schema, ddl=_DDL)
            try:
                cur = self._con.execute(sql, params)
            except psycopg.OperationalError as exc:
                if self._con.broken or self._con.closed:
                    self._con.close()
                    raise SharedStoreUnavailable(f"lost the shared database: {exc}") from exc
                raise
            return cur.fetchall() if cur.description is not None else []

    def secret(self) -> bytes:
        if self._secret is None:
            self._run(
                "INSERT INTO shred_meta VALUES('secret', %s) ON CONFLICT DO NOTHING",
                [os.urandom(32)],
            )
            self._secret = bytes(
                self._run("SELECT value FROM shred_meta WHERE name='secret'")[0][0]
            )
        return self._secret

    def keys_for(self, names: Sequence[bytes]) -> dict[bytes, tuple[bytes, bytes]]:
        """One read when every key exists (a warm cache refilling); else an insert of the
        missing ones that returns those it made (two round trips), and a read of the rest only
        when another collector made some of them first (its rows are not in the insert's
        snapshot: ``ON CONFLICT DO NOTHING`` skips them without returning them)."""
        wanted = sorted(set(names))
        out = self._named(wanted) if wanted else {}
        missing = [n for n in wanted if n not in out]
        if not missing:
            return out
        made = [(os.urandom(ID_BYTES), n, os.urandom(KEY_BYTES)) for n in missing]
        rows = self._run(
            "INSERT INTO shred_keys SELECT * FROM unnest(%s::bytea[], %s::bytea[], %s::bytea[])"
            " ORDER BY 2 ON CONFLICT (name) DO NOTHING RETURNING name, id, key",
            [[m[0] for m in made], [m[1] for m in made], [m[2] for m in made]],
        )
        out.update((bytes(n), (bytes(i), bytes(k))) for n, i, k in rows)
        lost = [n for n in missing if n not in out]
        if lost:  # another collector's, made since our read
            out.update(self._named(lost))
        return out

    def _named(self, names: Sequence[bytes]) -> dict[bytes, tuple[bytes, bytes]]:
        rows = self._run(
            "SELECT name, id, key FROM shred_keys WHERE name = ANY(%s::bytea[])", [list(names)]
        )
        return {bytes(n): (bytes(i), bytes(k)) for n, i, k in rows}

    def keys_by_id(self, ids: Sequence[bytes]) -> dict[bytes, bytes]:
        if not ids:
            return {}
        rows = self._run("SELECT id, key FROM shred_keys WHERE id = ANY(%s::bytea[])", [list(ids)])
        return {bytes(i): bytes(k) for i, k in rows}

    def delete(self, names: Sequence[bytes]) -> int:
        return self._delete("name", names)

    def delete_ids(self, ids: Sequence[bytes]) -> int:
        return self._delete("id", ids)

    def _delete(self, column: str, values: Sequence[bytes]) -> int:
        rows = self._run(
            f"WITH gone AS (DELETE FROM shred_keys WHERE {column} = ANY(%s::bytea[]) RETURNING 1),"
            " bumped AS (INSERT INTO shred_meta VALUES('generation', int8send(1))"
            " ON CONFLICT (name) DO UPDATE SET value ="
            " int8send(('x' || encode(shred_meta.value, 'hex'))::bit(64)::bigint + 1))"
            " SELECT count(*) FROM gone",
            [sorted(set(values))],
        )
        return int(rows[0][0])

    def generation(self) -> int:
        rows = self._run("SELECT value FROM shred_meta WHERE name='generation'")
        return 0 if not rows else int.from_bytes(bytes(rows[0][0]), "big", signed=True)

    def compact(self) -> None:
        self._run("VACUUM FULL shred_keys")

    def close(self) -> None:
        with self._lock:
            self._con.close()


__all__ = ["PgKeyTable"]
