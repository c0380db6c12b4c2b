"""A SQLite-backed change feed and the changes the delivery tests feed it (receivers and
``segflow serve`` processes come from tests/conftest.py's factories)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from segflow.spec import AnyChange, MembershipChange


class SqliteFeed:
    """A ChangeFeed over a SQLite table (the shape of the processor's outbox)."""

    def __init__(self, path: Path) -> None:
        self.con = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY, body BLOB)")
        self.lock = threading.Lock()

    def append(self, change: AnyChange) -> None:
        with self.lock:
            self.con.execute(
                "INSERT INTO changes (body) VALUES (?)", (msgspec.msgpack.encode(change),)
            )

    def read(self, after_seq: int, limit: int = 1000) -> list[tuple[int, AnyChange]]:
        with self.lock:
            rows = self.con.execute(
                "SELECT seq, body FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [(s, msgspec.msgpack.decode(b, type=AnyChange)) for s, b in rows]


def changes(profiles: int, per_profile: int, segment: str = "vip") -> list[MembershipChange]:
    """Alternating entered/exited changes, interleaved across profiles, sequence per profile."""
    out = []
    for i in range(per_profile):
        for p in range(profiles):
            kind = "entered" if i % 2 == 0 else "exited"
            out.append(
                MembershipChange(
                    profile_id=f"p{p}",
                    segment=segment,
                    kind=kind,
                    at_ms=1_700_000_000_000 + i,
                    sequence=i + 1,
                )
            )
    return out


@pytest.fixture
def sqlite_feed(tmp_path: Path) -> SqliteFeed:
    return SqliteFeed(tmp_path / "feed.sqlite")


@pytest.fixture
def make_changes() -> Callable[..., list[MembershipChange]]:
    return changes
