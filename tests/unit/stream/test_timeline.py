"""A backfill step's timelines, read in one range scan, are each profile's own timeline."""

from __future__ import annotations

from segflow.profiles import Profile
from segflow.stream import keys, timeline
from segflow.stream.state import MemoryStateStore


def test_a_run_of_profiles_gets_each_its_own_positions_and_its_absorbed_ones() -> None:
    tx = MemoryStateStore().begin_global()
    run = [Profile(profile_id=f"p_{n:02x}", created_ms=0) for n in range(10, 20)]
    for n, profile in enumerate(run):
        for i in range(n * 15):  # 0 to 135 positions: tails, and one or two chunks
            timeline.append(tx, profile, ts_ms=1_000 - i, partition=n % 3, offset=100 * n + i)
    # absorbed profiles spill their tails under their own ids, inside the run's range and far
    # outside it; a store written before chunks has a row per event
    inside, outside = (
        Profile(profile_id="p_11a", created_ms=0),
        Profile(profile_id="z", created_ms=0),
    )
    for i, absorbed in enumerate((inside, outside)):
        timeline.append(tx, absorbed, ts_ms=5 + i, partition=7, offset=i)
        timeline.spill(tx, absorbed)
    run[2].absorbed = ["p_11a", "z"]
    tx.set(keys.TIMELINE, f"{run[4].profile_id}|{3:016x}|{0:04x}|{9_999:016x}", b"")

    found = timeline.entries_many(tx, run)

    assert found == [timeline.entries(tx, profile) for profile in run]
    assert found[2][:2] == [(5, 7, 0), (6, 7, 1)]
    assert (3, 0, 9_999) in found[4]
    assert [len(f) for f in found] == [
        n * 15 + (2 if n == 2 else 1 if n == 4 else 0) for n in range(10)
    ]
    assert timeline.entries_many(tx, []) == []
