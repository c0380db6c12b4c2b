"""Rate limits shared by the server's processes: two HTTP workers spend from one bucket."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from segflow.collect.exceptions import RateLimited
from segflow.collect.limits import SharedBucketTable, TokenBuckets


def _accepted(buckets: list[TokenBuckets], key: str, requests: int) -> int:
    ok = 0
    for i in range(requests):
        try:
            buckets[i % len(buckets)].take(key)
            ok += 1
        except RateLimited:
            pass
    return ok


def test_two_workers_share_one_limit(tmp_path: Path) -> None:
    now = [100.0]
    path = tmp_path / "run" / "buckets.bin"
    workers = [TokenBuckets(rate=1, burst=5, now=lambda: now[0], shared=path) for _ in range(2)]
    assert _accepted(workers, "src", 20) == 5  # one burst for the server, not one per worker
    now[0] += 3.0
    assert _accepted(workers, "src", 20) == 3  # refilled at the server's rate
    assert _accepted(workers, "other", 20) == 5  # each key its own bucket
    # in-memory buckets (one process) give the same answers
    alone = [TokenBuckets(rate=1, burst=5, now=lambda: now[0])]
    assert _accepted(alone, "src", 20) == 5


def test_another_process_spends_from_the_same_bucket(tmp_path: Path) -> None:
    path = tmp_path / "buckets.bin"
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from segflow.collect.limits import TokenBuckets\n"
        "from segflow.collect.exceptions import RateLimited\n"
        "b = TokenBuckets(rate=0.001, burst=10, shared=Path(sys.argv[1]))\n"
        "ok = 0\n"
        "for _ in range(7):\n"
        "    try:\n"
        "        b.take('src'); ok += 1\n"
        "    except RateLimited:\n"
        "        pass\n"
        "print(ok)\n"
    )
    first = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert first.stdout.strip() == "7", first.stderr
    here = TokenBuckets(rate=0.001, burst=10, shared=path)
    assert _accepted([here], "src", 10) == 3  # the other process spent 7 of the 10


def test_a_full_table_reuses_the_least_recently_used_slot(tmp_path: Path) -> None:
    table = SharedBucketTable(tmp_path / "b.bin", slots=8)
    with table:
        for i in range(8):
            table.put(f"k{i}", 1.0, float(i))
        table.put("new", 2.0, 100.0)  # every probe taken: k0 (at 0.0) makes room
        assert table.get("new") == (2.0, 100.0)
        assert table.get("k0") is None
        assert table.get("k7") == (1.0, 7.0)
    table.close()


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_no_limit_creates_no_file(tmp_path: Path, rate: float) -> None:
    buckets = TokenBuckets(rate=rate, burst=0, shared=tmp_path / "b.bin")
    buckets.take("src", 1e9)
    assert not (tmp_path / "b.bin").exists()
