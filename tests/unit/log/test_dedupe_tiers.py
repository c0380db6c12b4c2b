"""The embedded log's dedupe index in tiers (segflow.log.dedupe, segflow.log.dedupe_runs): ids in
memory, ids sealed into runs on disk, runs shared by two logs on one file, surviving a reopen,
leaving with the window, Bloom false positives checked against the run, crashes between the
sealing steps. Real SQLite files throughout; ``memory_ids`` is tiny so that runs are sealed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.wait import until

from segflow.clock import HOUR_MS
from segflow.db.sqlite import connect
from segflow.log import bloom
from segflow.log.dedupe_runs import Run, RunFiles, read_registry
from segflow.log.sqlite import SqliteEventLog
from segflow.spec.events import Event

OpenLog = Callable[..., SqliteEventLog]
MEMORY = 10  # ids per range: ids 1-10 are the first run, 11-20 the second...


def make_event(message_id: str, *, received_at_ms: int = 1_000) -> Event:
    return Event(
        type="track",
        message_id=message_id,
        source_id="s1",
        timestamp_ms=received_at_ms,
        received_at_ms=received_at_ms,
        user_id="u1",
        event="E",
    )


def events(prefix: str, count: int, *, received_at_ms: int = 1_000) -> list[Event]:
    return [make_event(f"{prefix}{i}", received_at_ms=received_at_ms) for i in range(count)]


def registry(path: Path) -> tuple[int, list[tuple[int, int, int]]]:
    con = connect(path)
    try:
        upto, runs = read_registry(con)
    finally:
        con.close()
    return upto, [(r.lo, r.hi, r.level) for r in runs]


def read_registry_of(path: Path) -> list[Run]:
    con = connect(path)
    try:
        return read_registry(con)[1]
    finally:
        con.close()


def sealed(log: SqliteEventLog, upto: int) -> None:
    """Wait for the log's sealer thread to seal ids up to ``upto``, then let the log follow
    (the tiers are refreshed at the start of an append)."""
    until(lambda: registry(log.path)[0] >= upto, 30, f"ids sealed up to {upto}")
    log.append([])
    log.append([make_event("refresh")])


@pytest.fixture
def open_log(tmp_path: Path) -> OpenLog:
    opened: list[SqliteEventLog] = []

    def factory(**kwargs: object) -> SqliteEventLog:
        kwargs.setdefault("partitions", 1)
        kwargs.setdefault("dedupe_memory_ids", MEMORY)
        log = SqliteEventLog(tmp_path / "log.sqlite", **kwargs)  # type: ignore[arg-type]
        opened.append(log)
        return log

    yield factory  # type: ignore[misc]
    for log in opened:
        log.close()


def test_a_duplicate_is_found_in_memory_before_any_run_is_sealed(open_log: OpenLog) -> None:
    log = open_log()
    log.append(events("m", 5))
    assert log.append(events("m", 5)) == [None] * 5
    assert registry(log.path) == (0, []) and len(log._dedupe) == 5


def test_sealed_ids_leave_memory_and_are_found_in_their_run(open_log: OpenLog) -> None:
    log = open_log()
    log.append(events("m", 25))
    sealed(log, 20)
    assert registry(log.path) == (20, [(0, 10, 0), (10, 20, 0)])
    assert len(log._dedupe) <= 7  # ids 21-27: the refresh events and the last five of "m"
    assert log.append(events("m", 25)) == [None] * 25
    assert log._dedupe._runs is not None and log._dedupe._runs.probes >= 20
    fresh = log.append(events("new", 3))
    assert all(p is not None for p in fresh)


def test_two_logs_on_one_file_see_each_others_sealed_ids(open_log: OpenLog) -> None:
    first, second = open_log(), open_log()
    first.append(events("a", 22))
    sealed(first, 20)
    assert second.append(events("a", 22)) == [None] * 22
    second.append(events("b", 12))
    sealed(second, 30)
    assert first.append(events("b", 12)) == [None] * 12
    offsets = [r.offset for r in first.read(0, 0, max_records=100)]
    assert offsets == list(range(len(offsets)))
    assert len({r.event.message_id for r in first.read(0, 0, max_records=100)}) == len(offsets)


def test_runs_survive_a_reopen(open_log: OpenLog) -> None:
    log = open_log()
    log.append(events("m", 25))
    sealed(log, 20)
    log.close()
    reopened = open_log()
    assert reopened.append(events("m", 25)) == [None] * 25
    assert len(reopened._dedupe) < 10


def test_a_log_from_before_runs_is_sealed_at_its_first_append(open_log: OpenLog) -> None:
    log = open_log(dedupe_memory_ids=1_000_000)  # everything in memory, as before runs
    log.append(events("m", 45))
    log.close()
    reopened = open_log()
    assert reopened.read(0, 0, 100)  # a reader: no index built, nothing sealed
    assert reopened._index is None and registry(reopened.path)[0] == 0
    assert reopened.stats()["dedupe_memory_ids"] == 0
    assert reopened.append(events("m", 45)) == [None] * 45  # every one a duplicate
    assert registry(reopened.path)[0] == 40 and len(reopened._dedupe) == 5


def test_four_runs_of_a_level_merge_into_one(open_log: OpenLog) -> None:
    log = open_log()
    log.append(events("m", 45))
    until(lambda: registry(log.path)[1] == [(0, 40, 1)], 30, "the four runs merged")
    merged = [f"run-{0:012d}-{40:012d}-1.bloom", f"run-{0:012d}-{40:012d}-1.sqlite"]
    directory = RunFiles(log.path).directory
    # the inputs' files go once the merged run is listed
    until(lambda: sorted(p.name for p in directory.glob("run-*")) == merged, 30, "inputs gone")
    log.append([])
    assert log.append(events("m", 45)) == [None] * 45


def test_seals_go_on_while_a_merge_is_held(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    merging, release = threading.Event(), threading.Event()
    build_from_runs = RunFiles.build_from_runs

    def held(self: RunFiles, runs: list[Run], **kwargs: object) -> Run:
        merging.set()
        assert release.wait(30), "the test never released the merge"
        return build_from_runs(self, runs, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(RunFiles, "build_from_runs", held)
    log = open_log()
    log.append(events("m", 45))
    assert merging.wait(30), "the merge of the first four runs started"
    log.append(events("n", 20))
    sealed(log, 60)  # two more runs sealed behind the held merge
    assert registry(log.path)[1][-2:] == [(40, 50, 0), (50, 60, 0)]
    release.set()
    until(lambda: registry(log.path)[1][0] == (0, 40, 1), 30, "the merge listed")
    log.append([])
    assert log.append(events("m", 45) + events("n", 20)) == [None] * 65


def test_runs_older_than_the_window_are_dropped_whole(open_log: OpenLog) -> None:
    log = open_log(dedupe_window_ms=HOUR_MS)
    log.append(events("old", 22, received_at_ms=1_000))
    sealed(log, 20)
    log.close()
    later = 1_000 + 2 * HOUR_MS
    reopened = open_log(dedupe_window_ms=HOUR_MS)  # its first commit prunes
    reopened.append([make_event("late", received_at_ms=later)])
    assert registry(reopened.path)[1] == []
    assert not list(RunFiles(reopened.path).directory.glob("run-*"))
    con = connect(reopened.path)
    assert con.execute("SELECT min(id) FROM dedupe_log").fetchone()[0] > 20
    con.close()
    again = reopened.append(events("old", 22, received_at_ms=later))
    assert all(p is not None for p in again)  # the window passed: stored again


def test_a_bloom_false_positive_is_checked_against_the_run(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bloom, "BITS_PER_KEY", 1)  # one 64-bit word per run: nearly all "maybe"
    log = open_log()
    log.append(events("m", 22))
    sealed(log, 20)
    tier = log._dedupe._runs
    assert tier is not None
    before = tier.probes
    fresh = log.append(events("new", 30))
    assert all(p is not None for p in fresh)  # no false duplicate
    assert tier.probes > before  # the filters said "maybe" and the runs said no
    assert log.append(events("m", 22)) == [None] * 22


def test_files_of_an_unlisted_seal_are_replaced_and_leftovers_removed(
    open_log: OpenLog,
) -> None:
    """A crash after building a run but before listing it, and one mid-build."""
    log = open_log(dedupe_memory_ids=1_000_000)
    log.append(events("m", 15))
    log.close()
    files = RunFiles(log.path)
    files.build_from_log(0, 10)  # built and published, never listed
    (files.directory / f".seal-run-{10:012d}-{20:012d}-0.sqlite").write_bytes(b"half")
    reopened = open_log()
    reopened.append(events("n", 10))
    sealed(reopened, 20)
    assert registry(reopened.path)[1] == [(0, 10, 0), (10, 20, 0)]
    assert not list(files.directory.glob(".seal-*"))
    assert reopened.append(events("m", 15) + events("n", 10)) == [None] * 25


def test_a_listed_run_whose_files_are_gone_is_rebuilt_off_the_append_path(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore of ``log.sqlite`` alone (backups copy it, not the runs): while the rebuild is
    held, appends go on and the missing runs' ids are still refused (from ``dedupe_log``)."""
    import threading

    log = open_log()
    log.append(events("m", 25))
    sealed(log, 20)
    log.close()
    for path in RunFiles(log.path).directory.glob("run-*"):
        path.unlink()
    started, release = threading.Event(), threading.Event()
    build_from_log = RunFiles.build_from_log

    def held(self: RunFiles, lo: int, hi: int, **kwargs: object) -> object:
        if kwargs.get("tag") == "rebuild":
            started.set()
            assert release.wait(30), "the test never released the rebuild"
        return build_from_log(self, lo, hi, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(RunFiles, "build_from_log", held)
    reopened = open_log()
    tier = reopened._dedupe._runs
    assert tier is not None and [(r.lo, r.hi) for r in tier.missing] == [(0, 10), (10, 20)]
    assert reopened.append(events("m", 25)) == [None] * 25  # refused while the rebuild waits
    assert started.wait(30), "the rebuild started"
    assert all(p is not None for p in reopened.append(events("new", 5)))
    assert tier.log_lookups > 0 and tier.missing
    release.set()
    files = RunFiles(log.path)
    until(lambda: all(files.exist(r) for r in read_registry_of(log.path)), 30, "rebuilt")
    reopened.append([])  # the next append opens the rebuilt runs
    assert tier.missing == []
    lookups = tier.log_lookups
    assert reopened.append(events("m", 25)) == [None] * 25
    assert tier.log_lookups == lookups  # answered by the runs again


def test_a_process_that_only_reads_starts_no_sealing_thread(open_log: OpenLog) -> None:
    import threading

    def sealing_threads() -> set[int | None]:
        return {t.ident for t in threading.enumerate() if t.name.startswith("segflow-dedupe-")}

    writer = open_log()
    writer.append(events("m", 25))
    sealed(writer, 20)
    before = sealing_threads()
    reader = open_log()
    reader.read(0, 0)
    reader.end_offsets()
    assert not reader.sealing and sealing_threads() == before
    assert reader.append(events("m", 3)) == [None] * 3  # its first append starts them
    assert reader.sealing and len(sealing_threads() - before) == 2


def test_a_key_stored_again_keeps_its_newest_time_through_seal_and_merge(tmp_path: Path) -> None:
    """A message id stored twice (the window had passed) is in two ranges: the run of both
    remembers the later time, so the second copy still counts as recent."""
    from segflow.log.dedupe import dedupe_key, ensure_tables

    path = tmp_path / "log.sqlite"
    con = connect(path)
    ensure_tables(con)
    key = dedupe_key("s1", "twice")
    rows = [(key, 5)] + [(dedupe_key("s1", f"x{i}"), 6) for i in range(8)] + [(key, 9_000)]
    con.executemany("INSERT INTO dedupe_log(key, received_at_ms) VALUES(?, ?)", rows * 2)
    con.close()
    files = RunFiles(path)
    halves = [files.build_from_log(0, 10), files.build_from_log(10, 20)]
    merged = files.build_from_runs(halves)
    assert (merged.keys, merged.max_received_ms, merged.level) == (9, 9_000, 1)
    run = connect(files.db(merged))
    assert run.execute("SELECT received_at_ms FROM keys WHERE key=?", (key,)).fetchone() == (9_000,)
    run.close()


CHILD = """
import sys
from segflow.log.sqlite import SqliteEventLog
from segflow.spec.events import Event

log = SqliteEventLog(sys.argv[1], partitions=1, dedupe_memory_ids=50)
for start in range(0, 1_000, 25):
    log.append([
        Event(type="track", message_id=f"m{i}", source_id="s1", timestamp_ms=1_000,
              received_at_ms=1_000, user_id="u1", event="E")
        for i in range(start, start + 25)
    ])
log.close()
"""


def test_two_processes_appending_the_same_ids_while_sealing_store_each_once(
    tmp_path: Path,
) -> None:
    """Two real processes append the same 1,000 ids at once; 20 ranges are sealed and merged
    meanwhile by whichever holds the seal lock."""
    import os
    import subprocess
    import sys

    path = tmp_path / "log.sqlite"
    SqliteEventLog(path, partitions=1, dedupe_memory_ids=50).close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(path)], env=env) for _ in range(2)
    ]
    assert [child.wait(timeout=120) for child in children] == [0, 0]
    log = SqliteEventLog(path, partitions=1, dedupe_memory_ids=50)
    try:
        stored = [r.event.message_id for r in log.read(0, 0, max_records=5_000)]
        assert sorted(stored) == sorted(f"m{i}" for i in range(1_000))
        assert log.append(events("m", 1_000)) == [None] * 1_000
        assert registry(path)[0] >= 900
    finally:
        log.close()


def test_closing_interrupts_a_build_and_the_next_one_cleans_up(tmp_path: Path) -> None:
    import sqlite3
    import threading

    from segflow.log.dedupe_runs import Sealer

    path = tmp_path / "log.sqlite"
    SqliteEventLog(path, partitions=1, dedupe_memory_ids=1_000_000).close()
    con = connect(path)
    con.execute("BEGIN")
    con.executemany(  # enough rows that the seal is still sorting when it is interrupted
        "INSERT INTO dedupe_log(key, received_at_ms) VALUES(randomblob(16), ?)",
        [(1_000,)] * 200_000,
    )
    con.execute("COMMIT")
    con.close()
    files = RunFiles(path)
    sealer = Sealer(files, memory_ids=200_000)
    errors: list[BaseException] = []

    def build() -> None:
        try:
            sealer.build()
        except BaseException as exc:  # what the thread saw, checked below
            errors.append(exc)

    thread = threading.Thread(target=build)
    thread.start()
    until(lambda: files._building is not None or not thread.is_alive(), 30, "started", 0.001)
    sealer.close()
    thread.join()
    if errors:  # interrupted (else it finished first: both are consistent)
        # interrupted in the INSERT ("interrupted") or in the ATTACH before it ("unable to
        # open database": 1 run in 6 on main under load)
        assert isinstance(errors[0], sqlite3.OperationalError), repr(errors[0])
        assert registry(path) == (0, [])
    assert Sealer(files, memory_ids=200_000).build()
    assert registry(path) == (200_000, [(0, 200_000, 0)])
    assert not list(files.directory.glob(".seal-*"))


def test_the_log_reports_its_dedupe_tiers(open_log: OpenLog) -> None:
    from segflow.server.gauges import StoreGauges

    log = open_log()
    log.append(events("m", 25))
    sealed(log, 20)
    assert (log.stats()["dedupe_memory_ids"], log.stats()["dedupe_runs"]) == (len(log._dedupe), 2)
    gauges = {m.name: m.samples[0].value for m in StoreGauges(log.path.parent, log).collect()}
    assert gauges["segflow_log_dedupe_runs"] == 2
    assert gauges["segflow_log_dedupe_memory_ids"] == len(log._dedupe)


def test_a_missing_run_is_answered_from_the_log_chunk_by_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback reads the run's ids a chunk at a time (3 here) and keeps a key's newest
    time across chunks; keys outside the run's ids are not its to answer."""
    from segflow.log import dedupe_runs
    from segflow.log.dedupe import dedupe_key, ensure_tables

    monkeypatch.setattr(dedupe_runs, "_LOG_CHUNK", 3)
    path = tmp_path / "log.sqlite"
    con = connect(path)
    ensure_tables(con)
    key = dedupe_key("s1", "twice")
    rows = [(key, 5)] + [(dedupe_key("s1", f"x{i}"), 6) for i in range(6)] + [(key, 900)]
    rows.append((dedupe_key("s1", "after"), 7))  # id 9: past the run
    con.executemany("INSERT INTO dedupe_log(key, received_at_ms) VALUES(?, ?)", rows)
    con.execute("INSERT INTO dedupe_runs VALUES(0, 8, 0, 7, 900)")
    con.execute("INSERT INTO dedupe_sealed VALUES(0, 8)")
    tier = dedupe_runs.SealedTier(RunFiles(path))
    tier.refresh(con)
    assert [(r.lo, r.hi) for r in tier.missing] == [(0, 8)]
    asked = [key, dedupe_key("s1", "x4"), dedupe_key("s1", "after"), dedupe_key("s1", "no")]
    assert tier.lookup(asked) == [900, 6, None, None]
    assert tier.lookup(asked, floor_ms=1_000) == [None] * 4  # the run is older than the floor
    tier.close()
    con.close()


def test_a_commit_across_a_range_boundary_remembers_every_id_in_its_range() -> None:
    import sqlite3

    from segflow.log.dedupe import DedupeIndex, dedupe_key

    con = sqlite3.connect(":memory:", isolation_level=None)
    index = DedupeIndex(con, window_ms=HOUR_MS, memory_ids=MEMORY)
    first = [(dedupe_key("s1", f"a{i}"), 1_000) for i in range(7)]
    index.stage(first)
    index.applied()
    second = [(dedupe_key("s1", f"b{i}"), 2_000 + i) for i in range(16)]  # ids 8-23: 3 ranges
    index.stage(second)
    index.applied()
    keys = [k for k, _ in first + second]
    assert index.duplicates(keys, [3_000] * len(keys)) == [True] * len(keys)
    assert len(index) == 23
    assert sorted(len(seen) for seen in index._ranges.values()) == [3, 10, 10]
    again = (first[0][0], 1_000 + HOUR_MS + 1)  # out of the window: stored again, newer
    index.stage([again])
    index.applied()
    assert index.duplicates([first[0][0]], [1_000 + 2 * HOUR_MS]) == [True]


def test_dedupe_keys_of_many_messages_are_each_messages_dedupe_key() -> None:
    from segflow.log.dedupe import dedupe_key, dedupe_keys

    pairs = [("s1", "m1"), ("s2", "m1"), ("s1", "ü-☃"), ("", ""), ("s1", "m1")]
    assert dedupe_keys(pairs) == [dedupe_key(s, m) for s, m in pairs]
    assert len(set(dedupe_keys(pairs))) == 4
