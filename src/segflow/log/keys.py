"""The key table of crypto-shredding (:mod:`segflow.log.shredding`): one data key per person.

A Kafka record cannot be deleted by itself, so the Kafka driver encrypts each record with a
data key of the person it belongs to, kept here; deleting the key erases every record of the
person at once. A row is ``(id, name, key)``:

- ``name``: a keyed hash of the person's primary identifier (``user_id:u1``), unique, so the
  collectors of every process find the same key; the hashing secret is stored in the table
  itself (``shred_meta``), so a leaked list of names cannot be matched against guesses
  without it;
- ``id``: random 16 bytes, the only thing a record carries (a record names no person, not
  even by hash: a person who comes back after a deletion gets a new id);
- ``key``: the 256-bit AES-GCM key.

:meth:`SqliteKeyTable.delete` deletes rows by name and bumps a ``generation`` counter that
processes caching keys poll, to drop their caches. The connection runs with
``secure_delete`` (deleted rows are overwritten with zeros) and :meth:`~SqliteKeyTable.compact`
rewrites the file and empties its write-ahead file, so a deleted key leaves no byte in
``keys.sqlite`` (docs/privacy.md, "Kafka"). With ``shared.dsn`` the table is
:class:`~segflow.log.keys_pg.PgKeyTable`.

>>> import os, tempfile
>>> table = SqliteKeyTable(os.path.join(tempfile.mkdtemp(), "keys.sqlite"))
>>> made = table.keys_for([b"n1"])
>>> key_id, key = made[b"n1"]
>>> table.keys_by_id([key_id]) == {key_id: key}, table.keys_for([b"n1"]) == made
(True, True)
>>> table.delete([b"n1"]), table.keys_by_id([key_id]), table.generation()
(1, {}, 1)
>>> table.close()
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from segflow.db.sqlite import connect, vacuum

KEY_BYTES = 32  # AES-256
ID_BYTES = 16
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS shred_keys(id BLOB PRIMARY KEY, name BLOB NOT NULL UNIQUE,"
    " key BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS shred_meta(name TEXT PRIMARY KEY, value BLOB NOT NULL)",
)
_CHUNK = 500  # parameters per IN (...) query


class KeyTable(Protocol):
    """The key table the shredder reads and writes (SQLite or PostgreSQL)."""

    def secret(self) -> bytes:
        """The secret that names keys (made once, on first use)."""
        ...

    def keys_for(self, names: Sequence[bytes]) -> dict[bytes, tuple[bytes, bytes]]:
        """``name -> (id, key)`` for every name, creating the keys that are missing."""
        ...

    def keys_by_id(self, ids: Sequence[bytes]) -> dict[bytes, bytes]:
        """``id -> key`` for the ids whose key still exists (a deleted one is absent)."""
        ...

    def delete(self, names: Sequence[bytes]) -> int:
        """Delete the keys of ``names`` (the shredding); returns how many existed."""
        ...

    def delete_ids(self, ids: Sequence[bytes]) -> int:
        """Delete keys by id; returns how many existed."""
        ...

    def generation(self) -> int:
        """A counter bumped by every :meth:`delete` (caches compare it)."""
        ...

    def compact(self) -> None:
        """Leave no byte of a deleted key in the storage this table controls."""
        ...

    def close(self) -> None: ...


def chunks(items: Sequence[bytes]) -> Iterator[Sequence[bytes]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


class SqliteKeyTable:
    """See the module docstring: ``keys.sqlite`` of the data directory, shared by the
    processes of one host. Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._con = connect(self.path)
        self._con.execute("PRAGMA secure_delete=ON")
        for statement in _SCHEMA:
            self._con.execute(statement)
        self._lock = threading.Lock()
        self._secret: bytes | None = None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    def secret(self) -> bytes:
        if self._secret is None:
            with self._write() as con:
                con.execute(
                    "INSERT OR IGNORE INTO shred_meta VALUES('secret', ?)", (os.urandom(32),)
                )
                row = con.execute("SELECT value FROM shred_meta WHERE name='secret'").fetchone()
            self._secret = bytes(row[0])
        return self._secret

    def keys_for(self, names: Sequence[bytes]) -> dict[bytes, tuple[bytes, bytes]]:
        """Read first, then a write transaction only for the names still missing: a process
        refilling its cache after a deletion elsewhere takes no write lock."""
        wanted = sorted(set(names))
        with self._lock:
            out = _named(self._con, wanted)
        missing = [n for n in wanted if n not in out]
        if not missing:
            return out
        with self._write() as con:  # one writer at a time: no two keys for one name
            out.update(_named(con, missing))  # made meanwhile by another process
            made = [
                (os.urandom(ID_BYTES), n, os.urandom(KEY_BYTES)) for n in missing if n not in out
            ]
            con.executemany("INSERT INTO shred_keys VALUES(?,?,?)", made)
        out.update((n, (i, k)) for i, n, k in made)
        return out

    def keys_by_id(self, ids: Sequence[bytes]) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        with self._lock:
            for part in chunks(sorted(set(ids))):
                marks = ",".join("?" * len(part))
                rows = self._con.execute(
                    f"SELECT id, key FROM shred_keys WHERE id IN ({marks})", part
                ).fetchall()
                out.update((bytes(i), bytes(k)) for i, k in rows)
        return out

    def delete(self, names: Sequence[bytes]) -> int:
        return self._delete("name", names)

    def delete_ids(self, ids: Sequence[bytes]) -> int:
        return self._delete("id", ids)

    def _delete(self, column: str, values: Sequence[bytes]) -> int:
        deleted = 0
        with self._write() as con:
            for part in chunks(sorted(set(values))):
                marks = ",".join("?" * len(part))
                deleted += con.execute(
                    f"DELETE FROM shred_keys WHERE {column} IN ({marks})", part
                ).rowcount
            con.execute(
                "INSERT INTO shred_meta VALUES('generation', 1) ON CONFLICT(name)"
                " DO UPDATE SET value = value + 1"
            )
        return deleted

    def generation(self) -> int:
        with self._lock:
            row = self._con.execute(
                "SELECT value FROM shred_meta WHERE name='generation'"
            ).fetchone()
        return 0 if row is None else int(row[0])

    def compact(self) -> None:
        """``VACUUM`` and an emptied write-ahead file (:func:`segflow.db.sqlite.vacuum`)."""
        with self._lock:
            vacuum(self._con)

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._con.close()


def _named(con: sqlite3.Connection, names: Sequence[bytes]) -> dict[bytes, tuple[bytes, bytes]]:
    out: dict[bytes, tuple[bytes, bytes]] = {}
    for part in chunks(names):
        marks = ",".join("?" * len(part))
        rows = con.execute(
            f"SELECT name, id, key FROM shred_keys WHERE name IN ({marks})", part
        ).fetchall()
        out.update((bytes(n), (bytes(i), bytes(k))) for n, i, k in rows)
    return out


__all__ = ["ID_BYTES", "KEY_BYTES", "KeyTable", "SqliteKeyTable"]
