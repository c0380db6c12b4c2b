"""segflow as a dlt destination: a dlt pipeline loads rows into the log, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from segflow.syncs.destination import segflow_destination

from .conftest import World

dlt = pytest.importorskip("dlt")


def test_a_dlt_pipeline_loads_rows_as_events_and_a_reload_stores_nothing_twice(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    destination = segflow_destination(world.ingestor, "crm", identify=["people"])
    rows = [{"user_id": f"u{n}", "total": n * 10} for n in range(5)]
    people = [{"user_id": "u1", "email": "u1@example.com", "plan": "pro"}]
    for _ in range(2):  # the second load finds every row stored
        pipeline = dlt.pipeline(
            "crm_to_segflow", destination=destination, pipelines_dir=str(tmp_path / "p")
        )
        pipeline.run(rows, table_name="orders")
        pipeline.run(people, table_name="people")
    stored = world.events()
    assert sorted(t for t, _ in stored) == ["identify"] + ["track"] * 5
    event = next(
        r.event for p in range(2) for r in world.log.read(p, 0) if r.event.type == "identify"
    )
    assert event.user_id == "u1" and event.traits["plan"] == "pro"
