from __future__ import annotations

import duckdb

from segflow.ml.segments import cluster_name_rule, cluster_rule
from segflow.rules import StaticProfile, ast, check, compile_segments
from segflow.rules.parser import parse
from segflow.rules.render import render
from segflow.rules.sql.compiler import compile_members


def test_saved_cluster_rule_refers_to_the_stable_id() -> None:
    rule = parse(cluster_rule("customer_segments", 3))
    assert rule.condition == ast.Compare(ast.ClusterRef("customer_segments", by_id=True), "=", 3)
    assert render(rule.condition) == "cluster id of model customer_segments = 3"
    assert check(cluster_rule("customer_segments", 3)) == []


def test_cluster_name_rule_is_valid_segment_language() -> None:
    rule = parse(cluster_name_rule("customer_segments", 'High spend · "VIP"'))
    assert rule.condition == ast.Compare(
        ast.ClusterRef("customer_segments"), "=", 'High spend · "VIP"'
    )


def test_a_model_may_still_be_called_id() -> None:
    rule = parse('cluster id = "x"')
    assert rule.condition == ast.Compare(ast.ClusterRef("id"), "=", "x")


def test_cluster_ids_are_numbers_and_names_are_text() -> None:
    assert "number" in check('cluster id of model segs = "Big spenders"')[0].message
    assert "text" in check("cluster of model segs = 3")[0].message


def test_both_evaluators_read_the_id_not_the_name() -> None:
    rules = {
        "by_id": "cluster id of model segs in [2, 3]",
        "by_name": 'cluster of model segs = "A"',
    }
    program = compile_segments(rules)
    renamed = StaticProfile("p1", clusters={"segs": "B"}, cluster_ids={"segs": 3})
    assert program.on_time(renamed, None, 0).members == {"by_id"}
    assert program.on_time(StaticProfile("p2"), None, 0).members == frozenset()

    con = duckdb.connect()
    con.execute(
        "CREATE TABLE profile_events AS SELECT * FROM (VALUES ('p1', 0::BIGINT), ('p2', 0), ('p3', 0))"
        " t(profile_id, timestamp_ms)"
    )
    con.execute(
        "CREATE TABLE profile_clusters AS SELECT * FROM (VALUES ('p1', 'segs', 'B', 3), ('p2', 'segs', 'A', 1),"
        " ('p3', 'other', 'A', 3)) t(profile_id, model, cluster, cluster_id)"
    )
    members = {
        name: sorted(r[0] for r in con.execute(compile_members(rule, at_ms=0)).fetchall())
        for name, rule in rules.items()
    }
    assert members == {"by_id": ["p1"], "by_name": ["p2"]}


def test_score_attributes_are_valid_segment_language() -> None:
    for text in ("score churn >= 0.7", "score ltv >= 500 and score p_alive < 0.3"):
        parse(text)
