"""The Kafka driver's per-person keys on its append path (issue #20, on a real Tansu broker):
a group of appends makes the keys of all its new people in one commit of the key table, that
commit comes before the produce (a record never names a key that is not durable), and two
collectors making a key for the same new person at once agree on one."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from tests.support.kafka import Broker, kafka_broker
from tests.support.wait import until

from segflow.log.base import DeadLetter
from segflow.log.exceptions import LogWriteFailed
from segflow.log.keys import ID_BYTES, SqliteKeyTable
from segflow.log.shredding import Shredder
from segflow.spec.events import Event, decode_event

__all__ = ["kafka_broker"]

Open = Callable[..., Any]


@pytest.fixture
def open_log(kafka_broker: Broker, tmp_path: Path) -> Iterator[Open]:
    """``open_log(topic=None, table=None)``: a sealed one-partition log on ``keys.sqlite`` and
    ``dedupe.sqlite`` of the test's directory (two logs on one topic: two collectors)."""
    from segflow.log.kafka import KafkaEventLog
    from segflow.log.reservations import ReservationStore

    opened: list[Any] = []

    def make(topic: str | None = None, table: Any = None) -> Any:
        log = KafkaEventLog(
            kafka_broker.bootstrap,
            dedupe=ReservationStore(tmp_path / "dedupe.sqlite", window_ms=3_600_000),
            topic=topic or f"keys-{uuid.uuid4().hex[:8]}",
            partitions=1,
            shredder=Shredder(table or SqliteKeyTable(tmp_path / "keys.sqlite")),
        )
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


def by(user: str) -> Event:
    return Event(type="track", message_id=uuid.uuid4().hex, source_id="s", timestamp_ms=5,
                 received_at_ms=5, user_id=user, event="E")  # fmt: skip


def letter(who: str) -> DeadLetter:
    return DeadLetter(source_id="s", received_at_ms=1, field="event", reason="missing",
                      payload=b'{"userId": "%s"}' % who.encode())  # fmt: skip


def commits_of(table: SqliteKeyTable) -> list[str]:
    """The COMMITs the key table's connection runs from now on (each one fsynced)."""
    seen: list[str] = []
    table.secret()  # made once, on first use: not an append's commit
    table._con.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def raw_values(log: Any) -> list[bytes]:
    """Every value of the log's topic as the broker holds it (sealed)."""
    end = log.end_offsets()[0]
    return [v for _, v in log._reader().fetch(log.topic, 0, 0, end)]


def test_a_group_of_appends_by_new_people_costs_one_key_commit(
    open_log: Open, tmp_path: Path
) -> None:
    log = open_log()
    table = log.shredder.table
    commits = commits_of(table)
    futures: list[Future[Any]] = []
    with log._dedupe._lock:  # the writer waits in its first reserve: the rest queue up
        for i in range(20):
            futures.append(log.submit([by(f"new-{i}-a"), by(f"new-{i}-b")], [letter(f"x{i}")]))
    positions = [f.result(timeout=60) for f in futures]
    assert all(None not in p for p in positions)
    # two groups at most (what the writer took before the lock, and the rest): one commit
    # each, for 40 new people and 20 dead letters (before #20: one per append, and one per
    # dead letter)
    assert 1 <= len(commits) <= 2
    other = SqliteKeyTable(tmp_path / "keys.sqlite")
    assert len(other.keys_by_id([v[2 : 2 + ID_BYTES] for v in raw_values(log)])) == 40
    other.close()
    assert sorted(r.event.user_id for r in log.read(0, 0, 100)) == sorted(
        f"new-{i}-{x}" for i in range(20) for x in "ab"
    )
    assert len(log.dead_letters()) == 20


class CrashingProducer:
    """The log's producer, except that a produce first checks what a restarted process would
    find in the key table, then fails as a crash there would: nothing reaches the broker."""

    def __init__(self, producer: Any, keys_path: Path) -> None:
        self.producer, self.keys_path = producer, keys_path
        self.checked: list[bool] = []

    def produce(self, topic: str, value: bytes, **kwargs: Any) -> None:
        other = SqliteKeyTable(self.keys_path)  # another connection: only what is committed
        try:
            self.checked.append(bool(other.keys_by_id([value[2 : 2 + ID_BYTES]])))
        finally:
            other.close()
        raise RuntimeError("the collector died here")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)

    def __len__(self) -> int:
        return len(self.producer)


def test_a_crash_between_the_key_commit_and_the_produce_leaves_no_unreadable_record(
    open_log: Open, tmp_path: Path
) -> None:
    log = open_log()
    real = log._producer
    log._producer = crashing = CrashingProducer(real, tmp_path / "keys.sqlite")
    try:
        with pytest.raises(LogWriteFailed):
            log.append([by("ann"), by("bob")])
    finally:
        log._producer = real
    assert crashing.checked and all(crashing.checked)  # each key durable before its produce
    assert log.end_offsets() == {0: 0} and len(log._dedupe) == 0  # nothing stored, released
    again = [by("ann"), by("bob")]
    assert None not in log.append(again)  # the retry reuses the keys made before the crash
    fresh = Shredder(SqliteKeyTable(tmp_path / "keys.sqlite"))  # a restarted reader
    opened = fresh.open_many(raw_values(log))
    assert [decode_event(v).message_id for v in opened if v is not None] == [
        e.message_id for e in again
    ]
    fresh.table.close()


class FailingKeys(SqliteKeyTable):
    """A key table whose next write fails (a full disk, a lost shared database)."""

    fail = True

    def keys_for(self, names: Sequence[bytes]) -> dict[bytes, tuple[bytes, bytes]]:
        if self.fail:
            self.fail = False
            raise OSError("disk full")
        return super().keys_for(names)


def test_a_failed_key_commit_produces_nothing_and_the_retry_is_stored(
    open_log: Open, tmp_path: Path
) -> None:
    log = open_log(table=FailingKeys(tmp_path / "keys.sqlite"))
    events = [by("carl"), by("dora")]
    with pytest.raises(LogWriteFailed, match="key table"):
        log.append(events)
    assert log.end_offsets() == {0: 0} and len(log._dedupe) == 0
    assert None not in log.append(events)
    assert [r.event.message_id for r in log.read(0, 0)] == [e.message_id for e in events]


@pytest.fixture(params=["sqlite", "postgres"])
def open_table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """``open_table()``: one more key table on one store (``keys.sqlite``, or a schema of the
    session's PostgreSQL server): one per collector process."""
    schema = f"k_{uuid.uuid4().hex[:8]}"
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None

    def make() -> Any:
        if dsn is None:
            return SqliteKeyTable(tmp_path / "keys.sqlite")
        from segflow.log.keys_pg import PgKeyTable

        return PgKeyTable(dsn, schema=schema)

    yield make
    if dsn is not None:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_two_collectors_making_keys_for_the_same_new_people_agree(
    open_log: Open, open_table: Callable[[], Any]
) -> None:
    first = open_log(table=open_table())
    second = open_log(topic=first.topic, table=open_table())  # another process
    people = [f"both-{i}" for i in range(30)]
    start = threading.Barrier(2)

    def collect(log: Any) -> None:
        start.wait()
        for i in range(0, len(people), 5):
            log.append([by(p) for p in people[i : i + 5]])

    threads = [threading.Thread(target=collect, args=(log,)) for log in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    values = raw_values(first)
    users = [r.event.user_id for r in first.read(0, 0, 100)]
    assert sorted(users) == sorted(people * 2)  # every record opens
    key_ids: dict[str | None, set[bytes]] = {}
    for user, value in zip(users, values, strict=True):
        key_ids.setdefault(user, set()).add(value[2 : 2 + ID_BYTES])
    assert all(len(ids) == 1 for ids in key_ids.values())  # one key per person
    assert second.shred([("user_id", "both-3")]) == 1  # and a deletion removes it for both
    until(lambda: "both-3" not in [r.event.user_id for r in first.read(0, 0, 100)])


def test_postgres_keys_cost_two_round_trips_and_agree_with_a_collector_that_won_the_race(
    postgres_dsn: str,
) -> None:
    from segflow.log.keys_pg import PgKeyTable

    schema = f"k_{uuid.uuid4().hex[:8]}"
    mine, other = PgKeyTable(postgres_dsn, schema=schema), PgKeyTable(postgres_dsn, schema=schema)
    try:
        calls: list[str] = []
        run = mine._run

        def counted(sql: str, params: Any = ()) -> list[Any]:
            calls.append(sql.split()[0])
            return run(sql, params)

        mine._run = counted  # type: ignore[method-assign]
        assert len(mine.keys_for([b"new-1", b"new-2"])) == 2
        assert calls == ["SELECT", "INSERT"]  # the read, and an insert that returns its rows

        read = mine._named

        def raced(names: Any) -> dict[bytes, tuple[bytes, bytes]]:
            found = read(names)
            if not calls[2:]:  # right after the first read: the other collector makes one
                other.keys_for([b"raced"])
            return found

        mine._named = raced  # type: ignore[method-assign]
        calls.clear()
        got = mine.keys_for([b"raced", b"new-3"])
        assert got[b"raced"] == other.keys_for([b"raced"])[b"raced"]  # one key for the person
        assert calls == ["SELECT", "INSERT", "SELECT"]  # the race costs a third
    finally:
        mine.close()
        other.close()
        import psycopg

        with psycopg.connect(postgres_dsn, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
