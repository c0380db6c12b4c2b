"""Crypto-shredding: the key table (SQLite file and PostgreSQL) and the sealed envelope."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from segflow.log.keys import KeyTable, SqliteKeyTable
from segflow.log.shredding import (
    _NONCES,
    MARKER,
    NonceSource,
    Shredder,
    is_sealed,
    primary_identifier,
)
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


# -- the cost per event (issue #20): what the faster paths must keep --------------------------

# Sealed by the first version of the Kafka driver (25abe72: a random nonce per record) under the
# key below: records already in a topic must open with every later version.
GOLDEN_KEY_ID, GOLDEN_KEY = bytes(range(16)), bytes(range(32, 64))
GOLDEN = bytes.fromhex(
    "c101000102030405060708090a0b0c0d0e0f16b8027eefa26a52a6fcf339ef26d3e3d9c58f38e249cf0bd3de02"
    "4b70b7c73e4ad5a908287e0a81372ffe73933a024e5d2b1c0f8a22bf7f2e02bc100922a8f4a5b6d34342c809dd"
    "b86d50060fc45431afe9add344a2f8eafb0583ae06657ea6c3df79f21923b782cf07e3f8bb2a11469c70bc0240"
    "62296b3ba4b5213900a013a1e453e6072e2bacd543628ef4de87b864c1cf279b4daafb2987381367c8b05f11e4"
    "b66d23"
)


def test_a_record_sealed_by_the_first_format_still_opens(tmp_path: Path) -> None:
    table = SqliteKeyTable(tmp_path / "keys.sqlite")
    with sqlite3.connect(tmp_path / "keys.sqlite") as con:
        con.execute("INSERT INTO shred_keys VALUES(?, ?, ?)", (GOLDEN_KEY_ID, b"n", GOLDEN_KEY))
    shredder = Shredder(table)
    [opened] = shredder.open_many([GOLDEN])
    assert opened is not None
    e = decode_event(opened)
    assert (e.message_id, e.user_id, e.event, e.properties) == ("m-golden", "ann", "Paid", {"amount": 12})  # fmt: skip
    assert shredder.sealed_id(GOLDEN) == GOLDEN_KEY_ID and shredder.erased == 0
    shredder.table.close()


def test_nonces_never_repeat_within_a_process_even_across_shredders(tmp_path: Path) -> None:
    first = Shredder(SqliteKeyTable(tmp_path / "keys.sqlite"))
    second = Shredder(SqliteKeyTable(tmp_path / "keys.sqlite"))  # the same keys
    e = event("ann")
    values = [v for _ in range(3) for s in (first, second) for v in s.seal_events([e] * 50, [encode_event(e)] * 50)]  # fmt: skip
    values += [first.seal_alone(b"\x80") for _ in range(5)]
    assert len({v[18:30] for v in values}) == len(values)
    assert len({v[2:18] for v in values[:300]}) == 1  # one key: the nonces alone differ
    assert None not in first.open_many(values) and None not in second.open_many(values)
    first.table.close()
    second.table.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_forked_child_draws_a_nonce_prefix_of_its_own() -> None:
    before = _NONCES.take(1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next nonce and leave at once
        os.write(write, _NONCES.take(1).to_bytes(12, "big"))
        os._exit(0)
    os.close(write)
    child = int.from_bytes(os.read(read, 12), "big")
    os.close(read)
    os.waitpid(pid, 0)
    after = _NONCES.take(1)
    assert after == before + 1  # the parent goes on with its own counter
    assert child >> 32 != before >> 32  # not the parent's prefix: never its nonces


def test_the_nonce_source_draws_a_new_prefix_when_its_counter_runs_out() -> None:
    source = NonceSource()
    first = source.take(2**32 - 5)
    assert first & 0xFFFFFFFF == 0
    again = source.take(10)  # 10 more do not fit under the prefix
    assert again >> 32 != first >> 32 and again & 0xFFFFFFFF == 0


def test_identifiers_that_normalise_alike_share_a_key_however_they_are_spelt(
    tmp_path: Path,
) -> None:
    shredder = Shredder(SqliteKeyTable(tmp_path / "keys.sqlite"))
    spelt = [event("ann"), event(" ann "), event("ann", anon="a9"), event("ann")]
    assert len({shredder.sealed_id(sealed(shredder, e)) for e in spelt}) == 1
    by_anon = [event(None, anon="a1"), event("  ", anon="a1"), event(None, anon=" a1")]
    ids = [shredder.sealed_id(sealed(shredder, e)) for e in by_anon]
    assert len(set(ids)) == 1 and ids[0] != shredder.sealed_id(sealed(shredder, event("a1")))
    assert shredder.forget([("anonymous_id", "a1")]) == 1
    assert shredder.open_many([sealed(shredder, by_anon[0])]) != [None]  # a new key, readable
    shredder.table.close()


class Deleting(list[bytes]):
    """Records whose every reading runs a deletion after the first record (another thread's
    regulation, made deterministic)."""

    def __init__(self, values: list[bytes], hook: Callable[[], object]) -> None:
        super().__init__(values)
        self.hook = hook

    def __iter__(self) -> Iterator[bytes]:
        for i, value in enumerate(super().__iter__()):
            yield value
            if i == 0:
                self.hook()


def test_a_deletion_during_a_read_leaves_other_peoples_records_readable(tmp_path: Path) -> None:
    shredder = Shredder(SqliteKeyTable(tmp_path / "keys.sqlite"))
    bobs = [sealed(shredder, event("bob", note=str(i))) for i in range(4)]
    carl = sealed(shredder, event("carl"))
    assert None not in shredder.open_many(bobs)  # bob's key is cached
    opened = shredder.open_many(Deleting(bobs, lambda: shredder.forget([("user_id", "carl")])))
    assert None not in opened and shredder.erased == 0
    assert shredder.open_many([carl]) == [None]  # the deletion itself took effect
    shredder.table.close()


def test_existing_keys_are_read_while_another_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    table = SqliteKeyTable(tmp_path / "keys.sqlite")
    made = table.keys_for([b"ann", b"bob"])
    other = sqlite3.connect(tmp_path / "keys.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a collector elsewhere, making a key
    try:
        assert table.keys_for([b"bob", b"ann"]) == made  # no wait for the write lock
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert table.keys_for([b"ann", b"carl"])[b"ann"] == made[b"ann"]
    table.close()
