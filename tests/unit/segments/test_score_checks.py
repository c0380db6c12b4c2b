"""``segments check`` on score thresholds: warnings from the latest scoring run's range."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from segflow.ml.registry import Registry
from segflow.segments.service import SegmentService
from segflow.segments.store import DefinitionStore


@pytest.fixture
def service(tmp_path: Path) -> SegmentService:
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    Registry(con)  # the ML tables, as a warehouse that ran jobs has them
    # the demo's churn model: its highest score is 0.69
    con.executemany(
        "INSERT INTO profile_scores VALUES (?, 'churn', ?, 0)",
        [("p1", 0.02), ("p2", 0.31), ("p3", 0.69)],
    )
    con.close()
    store = DefinitionStore(tmp_path / "catalog.sqlite")
    return SegmentService(store, warehouse=lambda: duckdb.connect(str(path)))


def _warnings(service: SegmentService, rule: str) -> list[str]:
    found = service.check(rule)
    assert all(d.severity == "warning" for d in found)
    return [d.message for d in found]


def test_a_threshold_above_every_score_warns_that_it_selects_nobody(
    service: SegmentService,
) -> None:
    assert _warnings(service, 'score churn >= 0.7 and did "Order Completed"') == [
        "score churn >= 0.7 selects no profile: the latest scoring run of churn scored from"
        " 0.02 to 0.69"
    ]
    assert _warnings(service, "score churn > 0.69") != []
    assert _warnings(service, "score churn < 0.01") != []
    assert "selects every profile with a score" in _warnings(service, "score churn >= 0.01")[0]


def test_thresholds_inside_the_range_and_percentiles_are_fine(service: SegmentService) -> None:
    for rule in ("score churn >= 0.5", "score churn <= 0.69", "score churn in top 10%"):
        assert _warnings(service, rule) == [], rule


def test_a_model_without_scores_is_a_warning_and_errors_stay_errors(
    service: SegmentService,
) -> None:
    assert _warnings(service, "score bundle_72h in top 10%") == [
        "no profile has a score bundle_72h yet (no scoring run of bundle_72h stored scores),"
        " so score bundle_72h selects no profile for now"
    ]
    found = service.check("score churn >= ")
    assert [d.severity for d in found] == ["error"]
    # a warning is no reason to refuse a rule
    assert service.put_segment("churn_risk", "score churn >= 0.7").version == 1


def test_without_a_warehouse_the_check_is_the_rules_own(tmp_path: Path) -> None:
    service = SegmentService(DefinitionStore(tmp_path / "catalog.sqlite"))
    assert service.check("score churn >= 0.7") == []
