"""A segment whose members a backfill is still rebuilding says so, with how far it is."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from tests.unit.api.conftest import Call

from segflow.api.segments import segment_routes
from segflow.segments.service import SegmentService
from segflow.segments.store import DefinitionStore
from segflow.stream.backfill import Progress


def test_a_new_segment_is_filling_until_the_backfill_completes(tmp_path: Path, call: Call) -> None:
    service = SegmentService(DefinitionStore(tmp_path / "catalog.sqlite"))
    service.put_segment("buyers", 'did "Order Completed"')
    service.put_segment("refunders", 'did "Refund"')
    progress = Progress(running=True, done=0.4213, segments=("refunders",))
    app = Starlette(routes=segment_routes(service, None, progress=lambda: progress))

    assert call(app, "GET", "/api/v1/segments/refunders").json()["filling"] == {"progress": 0.4213}
    assert call(app, "GET", "/api/v1/segments/buyers").json()["filling"] is None
    listed = {d["name"]: d["filling"] for d in call(app, "GET", "/api/v1/segments").json()}
    assert listed == {"buyers": None, "refunders": {"progress": 0.4213}}

    progress = Progress(running=False)
    assert call(app, "GET", "/api/v1/segments/refunders").json()["filling"] is None
