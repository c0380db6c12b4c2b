"""The commit doorbell: a processor in one process hears the commits of a collector in another
(``segflow serve``'s supervisor runs them apart), instead of sleeping its poll interval."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from segflow.log.bell import Bell
from segflow.log.sqlite import SqliteEventLog

WRITER = textwrap.dedent(
    """
    import sys
    from segflow.log.sqlite import SqliteEventLog
    from segflow.spec.events import Event
    log = SqliteEventLog(sys.argv[1], partitions=2)
    print("open", flush=True)
    for line in sys.stdin:
        e = Event(type="track", message_id=line.strip(), source_id="s", timestamp_ms=1,
                  received_at_ms=1, user_id="u", event="E")
        log.append([e])
        print("appended", flush=True)
    log.close()
    """
)


def test_a_commit_in_another_process_wakes_this_ones_listener(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = SqliteEventLog(path, partitions=2)
    heard = threading.Event()
    log.on_commit(heard.set)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "open"
        assert not heard.is_set()  # nothing committed yet, in either process
        writer.stdin.write("m1\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "appended"
        assert heard.wait(10), "the other process's commit did not ring"
        assert log.end_offsets() != {0: 0, 1: 0}  # and what it rang for is there to read
    finally:
        if writer.stdin is not None:
            writer.stdin.close()
        writer.wait(30)
        if writer.stdout is not None:
            writer.stdout.close()
        log.close()


def test_one_listener_per_log_and_a_closed_bell_frees_it(tmp_path: Path) -> None:
    first, second = Bell(tmp_path / "log.sqlite"), Bell(tmp_path / "log.sqlite")
    assert first.listen(lambda: None)
    assert not second.listen(lambda: None)  # held: the second relies on its poll interval
    first.close()
    heard = threading.Event()
    third = Bell(tmp_path / "log.sqlite")
    assert third.listen(heard.set)
    second.ring()
    assert heard.wait(10)
    for bell in (second, third):
        bell.close()


def test_ringing_with_nobody_listening_is_harmless(tmp_path: Path) -> None:
    bell = Bell(tmp_path / "log.sqlite")
    for _ in range(3):
        bell.ring()
    bell.close()
