"""Crypto-shredding: the key table (SQLite file and PostgreSQL) and the sealed envelope."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segflow.log.keys import KeyTable, SqliteKeyTable
from segflow.log.shredding import MARKER, Shredder, is_sealed, primary_identifier
from segflow.spec.events import Event, decode_event, encode_event


class Tables:
    """Opens key tables that share one store (two tables: two processes)."""

    def __init__(self, backend: str, root: Path, dsn: str | None) -> None:
        self.backend, self.root, self.dsn = backend, root, dsn
        self.schema = f"k_{uuid.uuid4().hex[:8]}"
        self.opened: list[KeyTable] = []

    def open(self) -> KeyTable:
        table: KeyTable
        if self.backend == "sqlite":
            table = SqliteKeyTable(self.root / "keys.sqlite")
        else:
            from segflow.log.keys_pg import PgKeyTable

            assert self.dsn is not None
            table = PgKeyTable(self.dsn, schema=self.schema)
        self.opened.append(table)
        return table

    def close(self) -> None:
        for table in self.opened:
            table.close()
        if self.dsn is not None:
            import psycopg

            with psycopg.connect(self.dsn, autocommit=True) as con:
                con.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def tables(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tables]:
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    found = Tables(request.param, tmp_path, dsn)
    yield found
    found.close()


def event(user: str | None = "ann", anon: str | None = None, note: str = "hello") -> Event:
    return Event(type="track", message_id=uuid.uuid4().hex, source_id="s", timestamp_ms=1,
                 received_at_ms=1, user_id=user, anonymous_id=anon, event="Paid",
                 properties={"note": note})  # fmt: skip


def sealed(shredder: Shredder, e: Event) -> bytes:
    return shredder.seal_events([e], [encode_event(e)])[0]


# -- the key table -------------------------------------------------------------------------------


def test_two_processes_get_one_key_per_name_and_a_new_one_after_deletion(tables: Tables) -> None:
    first, second = tables.open(), tables.open()
    assert first.secret() == second.secret() and len(first.secret()) == 32
    made = first.keys_for([b"ann", b"bob"])
    assert second.keys_for([b"bob", b"ann"]) == made
    key_id, key = made[b"ann"]
    assert second.keys_by_id([key_id, b"no such id....."]) == {key_id: key}
    before = second.generation()
    assert first.delete([b"ann", b"nobody"]) == 1
    assert second.generation() == before + 1  # caches elsewhere learn of it
    assert second.keys_by_id([key_id]) == {}
    again = second.keys_for([b"ann"])[b"ann"]
    assert again[0] != key_id and again[1] != key  # a person who comes back: a new key
    assert first.delete_ids([made[b"bob"][0]]) == 1 and first.keys_by_id([made[b"bob"][0]]) == {}


def test_a_deleted_key_leaves_no_byte_in_the_sqlite_file_after_compaction(tmp_path: Path) -> None:
    table = SqliteKeyTable(tmp_path / "keys.sqlite")
    keys = table.keys_for([f"person-{i}".encode() for i in range(200)])
    gone = keys[b"person-7"][1]
    kept = keys[b"person-8"][1]
    table.delete([b"person-7"])
    table.compact()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert gone not in stored and kept in stored  # the search sees what is there
    table.close()


# -- the envelope ----------------------------------------------------------------------------------


def test_a_sealed_record_names_nobody_and_opens_to_the_event(tmp_path: Path) -> None:
    shredder = Shredder(SqliteKeyTable(tmp_path / "keys.sqlite"))
    e = event(user="ann-4711", anon="anon-4711", note="canary-4711")
    value = sealed(shredder, e)
    assert value[0] == MARKER and is_sealed(value)
    assert b"4711" not in value and b"Paid" not in value
    assert [decode_event(v) for v in shredder.open_many([value]) if v] == [e]
    shredder.table.close()


def test_a_plain_record_from_before_sealing_is_read_as_it_is(tmp_path: Path) -> None:
    shredder = Shredder(SqliteKeyTable(tmp_path / "keys.sqlite"))
    plain = encode_event(event())
    assert not is_sealed(plain)
    assert shredder.open_many([plain]) == [plain] and shredder.erased == 0
    shredder.table.close()


def test_a_record_under_a_missing_or_wrong_key_is_erased_not_an_error(tmp_path: Path) -> None:
    shredder = Shredder(SqliteKeyTable(tmp_path / "keys.sqlite"))
    elsewhere = Shredder(SqliteKeyTable(tmp_path / "other.sqlite"))  # another installation
    ann, bob = sealed(shredder, event("ann")), sealed(shredder, event("bob"))
    foreign = sealed(elsewhere, event("ann"))
    tampered = bytearray(bob)
    tampered[-1] ^= 1
    assert shredder.forget([("user_id", " ann "), ("email", "x@y.z")]) == 1
    opened = shredder.open_many([ann, bob, foreign, bytes(tampered)])
    assert opened[0] is None and opened[2] is None and opened[3] is None
    assert opened[1] is not None and decode_event(opened[1]).user_id == "bob"
    assert shredder.erased == 3
    shredder.table.close()
    elsewhere.table.close()


def test_another_process_sees_a_deletion_at_its_next_check(tmp_path: Path) -> None:
    reader = Shredder(SqliteKeyTable(tmp_path / "keys.sqlite"), recheck_s=0.0)
    regulator = Shredder(SqliteKeyTable(tmp_path / "keys.sqlite"))
    value = sealed(reader, event("ann"))
    assert reader.open_many([value]) != [None]  # its key is now cached by the reader
    regulator.forget([("user_id", "ann")])
    assert reader.open_many([value]) == [None]
    reader.table.close()
    regulator.table.close()


def test_the_primary_identifier_is_the_user_id_else_the_anonymous_id() -> None:
    assert primary_identifier(event(user=" u1 ", anon="a1")) == ("user_id", "u1")
    assert primary_identifier(event(user=None, anon="a1")) == ("anonymous_id", "a1")
    assert primary_identifier(event(user=None, anon=None)) is None


def test_an_event_without_identifiers_is_sealed_under_a_key_of_its_own(tmp_path: Path) -> None:
    shredder = Shredder(SqliteKeyTable(tmp_path / "keys.sqlite"))
    values: list[Any] = [sealed(shredder, event(user=None)) for _ in range(2)]
    assert shredder.sealed_id(values[0]) != shredder.sealed_id(values[1])
    assert None not in shredder.open_many(values)
    shredder.table.close()
