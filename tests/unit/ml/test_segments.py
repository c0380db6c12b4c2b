from __future__ import annotations

from segflow.ml.segments import cluster_rule
from segflow.rules.parser import parse


def test_saved_cluster_rule_is_valid_segment_language() -> None:
    rule = parse(cluster_rule("customer_segments", 'High spend · "VIP"'))
    assert rule.condition.left.model == "customer_segments"  # type: ignore[union-attr]
    assert rule.condition.right == 'High spend · "VIP"'  # type: ignore[union-attr]


def test_score_attributes_are_valid_segment_language() -> None:
    for text in ("score churn >= 0.7", "score ltv >= 500 and score p_alive < 0.3"):
        parse(text)
