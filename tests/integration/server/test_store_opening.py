"""Processes that open the same new data directory at once, as ``segflow serve``'s children do
on a first start: every store they share opens in each of them (a failed open ends a child,
which the supervisor restarts, and a first start logs a crash nobody caused)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from segflow.activate.secretbox import SecretBox
from segflow.activate.store import DeliveryStore
from segflow.syncs.store import SyncStore

OPENERS = 5  # processes opening at once
ROUNDS = 4  # new directories


def _open(kind: str, data: str, barrier: Any) -> None:
    box = SecretBox.open(data)
    barrier.wait(30)
    if kind == "syncs":
        SyncStore(Path(data) / "syncs.sqlite", box=box).close()
    else:
        DeliveryStore(Path(data) / "delivery.sqlite", box=box).close()


@pytest.mark.parametrize("kind", ["syncs", "delivery"])
def test_processes_opening_a_new_store_at_once_all_open_it(kind: str, tmp_path: Path) -> None:
    spawn = multiprocessing.get_context("spawn")
    for n in range(ROUNDS):
        data = tmp_path / f"data{n}"
        data.mkdir()
        SecretBox.open(data)  # the key exists before they race (serve makes it first too)
        barrier = spawn.Barrier(OPENERS)
        procs = [
            spawn.Process(target=_open, args=(kind, str(data), barrier)) for _ in range(OPENERS)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert [p.exitcode for p in procs] == [0] * OPENERS, f"round {n}: an open failed"


def test_an_older_syncs_store_gains_its_column_once(tmp_path: Path) -> None:
    path = tmp_path / "syncs.sqlite"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE syncs(name TEXT PRIMARY KEY, definition BLOB NOT NULL,"
        " credential TEXT NOT NULL, fingerprint TEXT NOT NULL, created_at_ms INTEGER NOT NULL)"
    )
    con.commit()
    con.close()
    box = SecretBox.open(tmp_path)
    for _ in range(2):
        SyncStore(path, box=box).close()
    with sqlite3.connect(path) as con:
        columns = [r[1] for r in con.execute("PRAGMA table_info(syncs)")]
    assert columns.count("secrets") == 1
