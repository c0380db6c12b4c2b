"""The dedupe reservation table's contract, the same tests against both stores: the SQLite file
(:class:`ReservationStore`) and PostgreSQL (:class:`PgReservationStore`, on the session's
throwaway server, one schema per test)."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.wait import until

from segflow.log.reservations import (
    PRUNE_EVERY,
    Reservation,
    ReservationStore,
    ReservationTable,
    dedupe_key,
)

FRESH, DUPLICATE, IN_FLIGHT = Reservation.FRESH, Reservation.DUPLICATE, Reservation.IN_FLIGHT
WINDOW = 1_000
TIMEOUT = 100

OpenStore = Callable[..., ReservationTable]


class Stores:
    """Opens stores of one backend on one table (every store opened shares it)."""

    def __init__(self, backend: str, root: Path, dsn: str | None) -> None:
        self.backend, self.root, self.dsn = backend, root, dsn
        self.schema = f"t_{uuid.uuid4().hex[:8]}"
        self.opened: list[ReservationTable] = []

    def open(self, *, window_ms: int = WINDOW, pending_timeout_ms: int = TIMEOUT) -> Any:
        store: ReservationTable
        if self.backend == "sqlite":
            store = ReservationStore(
                self.root / "dedupe.sqlite",
                window_ms=window_ms,
                pending_timeout_ms=pending_timeout_ms,
            )
        else:
            from segflow.log.reservations_pg import PgReservationStore

            assert self.dsn is not None
            store = PgReservationStore(
                self.dsn,
                schema=self.schema,
                window_ms=window_ms,
                pending_timeout_ms=pending_timeout_ms,
            )
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()
        if self.backend == "postgres":
            import psycopg

            with psycopg.connect(str(self.dsn), autocommit=True) as con:
                con.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    found = Stores(request.param, tmp_path, dsn)
    yield found
    found.close()


@pytest.fixture
def open_store(stores: Stores) -> OpenStore:
    return stores.open


def key(n: int | str) -> bytes:
    return dedupe_key("src", f"m{n}")


def test_reserve_then_confirm_or_release(open_store: OpenStore) -> None:
    store = open_store()
    assert store.reserve([(key(1), 10), (key(2), 10)], now_ms=10) == [FRESH, FRESH]
    assert store.reserve([(key(1), 11), (key(2), 11)], now_ms=11) == [IN_FLIGHT, IN_FLIGHT]
    store.confirm([key(1)])
    store.release([key(2)])
    assert store.reserve([(key(1), 12), (key(2), 12)], now_ms=12) == [DUPLICATE, FRESH]
    assert len(store) == 2


def test_release_keeps_stored_keys(open_store: OpenStore) -> None:
    store = open_store()
    store.reserve([(key(1), 10)], now_ms=10)
    store.confirm([key(1)])
    store.release([key(1)])
    assert store.reserve([(key(1), 11)], now_ms=11) == [DUPLICATE]


def test_empty_calls(open_store: OpenStore) -> None:
    store = open_store()
    assert store.reserve([], now_ms=1) == []
    store.confirm([])
    store.release([])
    assert len(store) == 0


def test_window_is_counted_from_the_stored_copys_receipt(open_store: OpenStore) -> None:
    store = open_store()
    store.reserve([(key(1), 0)], now_ms=0)
    store.confirm([key(1)])
    assert store.reserve([(key(1), WINDOW)], now_ms=5 * WINDOW) == [DUPLICATE]
    assert store.reserve([(key(1), WINDOW + 1)], now_ms=5 * WINDOW) == [FRESH]
    assert store.reserve([(key(1), WINDOW + 2)], now_ms=5 * WINDOW) == [IN_FLIGHT]  # new one


def test_a_pending_key_is_taken_over_after_the_timeout(open_store: OpenStore) -> None:
    store = open_store()
    store.reserve([(key(1), 0)], now_ms=0)  # its collector dies before confirming
    assert store.reserve([(key(1), 1)], now_ms=TIMEOUT - 1) == [IN_FLIGHT]
    assert store.reserve([(key(1), 1)], now_ms=TIMEOUT) == [FRESH]
    assert store.reserve([(key(1), 2)], now_ms=TIMEOUT + 1) == [IN_FLIGHT]  # the new owner's


def test_repeated_keys_in_one_call(open_store: OpenStore) -> None:
    store = open_store()
    store.reserve([(key("stored"), 5), (key("pending"), 5)], now_ms=5)
    store.confirm([key("stored")])
    batch = [(key(n), 10) for n in ("a", "stored", "pending", "a", "stored", "pending", "a")]
    assert store.reserve(batch, now_ms=10) == [
        FRESH, DUPLICATE, IN_FLIGHT, DUPLICATE, DUPLICATE, IN_FLIGHT, DUPLICATE,
    ]  # fmt: skip
    assert len(store) == 3


def test_outcomes_follow_the_order_of_a_full_batch(open_store: OpenStore) -> None:
    store = open_store()
    keys = [key(n) for n in range(2_500)]  # the collector's largest batch
    store.reserve([(k, 10) for k in keys[::2]], now_ms=10)
    store.confirm(keys[::4])
    states = store.reserve([(k, 11) for k in keys], now_ms=11)
    expected = [
        DUPLICATE if n % 4 == 0 else IN_FLIGHT if n % 2 == 0 else FRESH for n in range(2_500)
    ]
    assert states == expected
    assert len(store) == 2_500


def test_stores_on_one_table_share_it_and_it_survives_a_restart(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    assert first.reserve([(key(1), 10)], now_ms=10) == [FRESH]
    assert second.reserve([(key(1), 10)], now_ms=10) == [IN_FLIGHT]
    second.confirm([key(1)])  # any collector may confirm
    first.close()
    assert open_store().reserve([(key(1), 20)], now_ms=20) == [DUPLICATE]


def test_stored_keys_older_than_two_windows_are_pruned(open_store: OpenStore) -> None:
    store = open_store()
    store.reserve([(key("old"), 0), (key("pending"), 0)], now_ms=0)
    store.confirm([key("old")])
    now = 2 * WINDOW + 1
    store.reserve([(key("recent"), now)], now_ms=now)
    store.confirm([key("recent")])
    for _ in range(PRUNE_EVERY - 3):
        store.reserve([(key("recent"), now)], now_ms=now)
    assert len(store) == 3
    store.reserve([(key("recent"), now)], now_ms=now)  # the PRUNE_EVERY-th call prunes
    assert len(store) == 2  # the stored old key went; a pending one waits for its timeout


def test_concurrent_collectors_get_one_fresh_per_key(stores: Stores) -> None:
    """Threads, each with its own store (its own connection: a collector process on its own
    host), reserve overlapping keys in shuffled orders: new keys, then keys whose reservations
    timed out (taken over concurrently). Every key is FRESH for exactly one of them."""
    collectors = [stores.open() for _ in range(6)]
    rounds = 6
    results: list[list[tuple[bytes, Reservation]]] = [[] for _ in collectors]
    barrier = threading.Barrier(len(collectors))
    failures: list[BaseException] = []

    def collect(i: int) -> None:
        rng = random.Random(i)
        try:
            for r in range(rounds):
                now = 10 if r < rounds // 2 else 10 + TIMEOUT  # later rounds: take over
                keys = [key(f"{r % (rounds // 2)}-{n}") for n in range(300)]
                chosen = rng.sample(keys, 200)
                barrier.wait()
                states = collectors[i].reserve([(k, now) for k in chosen], now_ms=now)
                results[i].extend(zip(chosen, states, strict=True))
                barrier.wait()
        except BaseException as exc:
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=collect, args=(i,)) for i in range(len(collectors))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    for phase in (slice(0, rounds // 2 * 200), slice(rounds // 2 * 200, None)):
        fresh = Counter(k for result in results for k, state in result[phase] if state is FRESH)
        seen = {k for result in results for k, _ in result[phase]}
        assert fresh == dict.fromkeys(seen, 1)
        others = {state for result in results for _, state in result[phase]} - {FRESH}
        assert others <= {IN_FLIGHT}


def test_threads_share_one_store(open_store: OpenStore) -> None:
    store = open_store()
    keys = [key(n) for n in range(200)]
    out: list[Reservation] = []
    lock = threading.Lock()

    def collect(seed: int) -> None:
        chosen = random.Random(seed).sample(keys, 100)
        states = store.reserve([(k, 10) for k in chosen], now_ms=10)
        with lock:
            out.extend(states)

    threads = [threading.Thread(target=collect, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out.count(FRESH) == len(store) and set(out) <= {FRESH, IN_FLIGHT}


@pytest.fixture
def pg_stores(postgres_dsn: str, tmp_path: Path) -> Iterator[Stores]:
    found = Stores("postgres", tmp_path, postgres_dsn)
    yield found
    found.close()


def test_postgres_unreachable_is_a_transient_error() -> None:
    pytest.importorskip("psycopg")
    from segflow.log.reservations_pg import PgReservationStore
    from segflow.postgres import SharedStoreUnavailable

    dead = "host=127.0.0.1 port=1 user=segflow dbname=postgres connect_timeout=1"
    with pytest.raises(SharedStoreUnavailable, match="cannot reach the shared database"):
        PgReservationStore(dead, schema="unused", window_ms=WINDOW)


def test_postgres_store_reconnects_after_losing_its_connection(pg_stores: Stores) -> None:
    import psycopg

    from segflow.postgres import SharedStoreUnavailable

    store = pg_stores.open()
    assert store.reserve([(key(1), 10)], now_ms=10) == [FRESH]
    with psycopg.connect(str(pg_stores.dsn), autocommit=True) as admin:  # the server restarts
        admin.execute("SELECT pg_terminate_backend(%s)", [store._con.info.backend_pid])
    with pytest.raises(SharedStoreUnavailable):
        store.confirm([key(1)])
    store.confirm([key(1)])  # on a new connection
    assert store.reserve([(key(1), 11)], now_ms=11) == [DUPLICATE]


@pytest.mark.parametrize("stored", [False, True])
def test_postgres_reserve_rechecks_a_row_committed_while_it_waits(
    pg_stores: Stores, stored: bool
) -> None:
    """Another collector's insert of the key is uncommitted when the reserve starts: the
    reserve waits for it, then sees the committed row and does not take the key. Its snapshot
    predates the row, so it answers IN_FLIGHT even when the row is stored (the client's retry
    gets DUPLICATE)."""
    import psycopg

    store = pg_stores.open()
    other = psycopg.connect(str(pg_stores.dsn))  # a transaction, like a collector mid-insert
    try:
        other.execute(
            f'INSERT INTO "{pg_stores.schema}".dedupe_reservations VALUES (%s, 10, 10, %s)',
            [key(1), stored],
        )
        out: list[list[Reservation]] = []
        waiter = threading.Thread(
            target=lambda: out.append(store.reserve([(key(1), 10), (key(2), 10)], now_ms=11))
        )
        waiter.start()
        pid = store._con.info.backend_pid  # type: ignore[attr-defined]
        with psycopg.connect(str(pg_stores.dsn), autocommit=True) as admin:
            blocked = (
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'"
            )
            until(lambda: admin.execute(blocked, [pid]).fetchone() == (1,))
        other.commit()
        waiter.join()
    finally:
        other.close()
    assert out == [[IN_FLIGHT, FRESH]]
    store.confirm([key(2)])
    assert store.reserve([(key(1), 12)], now_ms=12) == [DUPLICATE if stored else IN_FLIGHT]
