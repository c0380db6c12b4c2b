"""Disagreements the differential tests found (tests/integration/rules/), one test each."""

from __future__ import annotations

import duckdb
import pytest

from segflow.rules import RuleSyntaxError, StaticProfile, check, compile_segments, parse
from segflow.rules.sql.compiler import compile_members
from segflow.spec.events import Event

T0 = 1_700_000_000_000
MIN = 60_000


def _event(mid: str, ts: int, type: str = "track", **fields: object) -> Event:
    return Event(
        type=type, message_id=mid, source_id="web", timestamp_ms=ts, received_at_ms=ts, **fields
    )


@pytest.mark.parametrize(
    ("trait", "rule"),
    [
        ('count("A")', 'computed t = "x"'),
        ('count("A")', 'computed t contains "x"'),
        ('most_frequent(c of "A")', "computed t > 2"),
        ('unique_list(c of "A")', "computed t = 3"),
    ],
)
def test_an_ill_typed_computed_trait_comparison_is_refused(trait: str, rule: str) -> None:
    # was: compiled by compile_segments (false for everyone) while DuckDB refused the SQL
    # ("Could not convert string 'x' to INT64"), as the same test written without
    # ``computed`` (count("A") = "x") is refused by both
    with pytest.raises(RuleSyntaxError, match="computed traits inlined"):
        compile_segments({"s": rule}, {"t": trait})
    with pytest.raises(RuleSyntaxError, match="computed traits inlined"):
        compile_members(rule, traits={"t": trait}, at_ms=T0)


def test_a_well_typed_computed_trait_comparison_still_compiles() -> None:
    traits = {"n": 'count("A")', "fav": 'most_frequent(c of "A")', "all": 'unique_list(c of "A")'}
    rule = 'computed n >= 1 and computed fav = "x" and computed all contains "x"'
    prog = compile_segments({"s": rule}, traits)
    res = prog.on_event(
        StaticProfile("p"),
        None,
        _event("m", T0, event="A", anonymous_id="a", properties={"c": "x"}),
        T0,
    )
    assert res.members == {"s"}
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE profile_events (profile_id VARCHAR, message_id VARCHAR, type VARCHAR,"
        " event VARCHAR, name VARCHAR, timestamp_ms BIGINT, user_id VARCHAR,"
        " properties JSON, traits JSON)"
    )
    con.execute(
        "INSERT INTO profile_events VALUES ('p', 'm', 'track', 'A', NULL, ?, NULL, ?, '{}')",
        [T0, '{"c": "x"}'],
    )
    assert con.execute(compile_members(rule, traits=traits, at_ms=T0)).fetchall() == [("p",)]


def test_identify_takes_no_name() -> None:
    # was: accepted; the incremental evaluator matched every identify event, the SQL compiler
    # (type = 'identify' AND name = 'X') none, so `did identify "X"` disagreed
    with pytest.raises(RuleSyntaxError, match="identify events have no name"):
        parse('did identify "X"')
    assert [d.severity for d in check('count(identify "X") >= 1')][:1] == ["error"]
    assert parse('did identify where plan = "pro"').condition is not None
    assert parse('did screen "Home" and did page "Home"').condition is not None


def test_a_sequence_completed_across_two_merged_profiles() -> None:
    # was a strict xfail: merge_states kept one side's folded sequence machine, so a sequence
    # completed across two profiles whose sequence entries were both folded (older than
    # late_ms) was lost. Such states now say they can't merge exactly, and the processor
    # replays the merged timeline (tests/unit/stream/test_merge_replay.py).
    prog = compile_segments({"s": 'did "Viewed" then "Added" within 30 minutes'})
    anon, user = StaticProfile("anon"), StaticProfile("user")
    a = prog.on_event(anon, None, _event("1", T0, event="Viewed", anonymous_id="a"), T0)
    a = prog.on_event(anon, a.state, _event("2", T0 + 120 * MIN, event="Viewed"), T0 + 120 * MIN)
    b = prog.on_event(user, None, _event("3", T0 + 10 * MIN, event="Added"), T0 + 10 * MIN)
    b = prog.on_event(user, b.state, _event("4", T0 + 180 * MIN, event="Added"), T0 + 180 * MIN)
    assert not a.members and not b.members
    assert not prog.can_merge(a.state, b.state)  # both folded: only a replay is exact
    fresh = prog.on_event(user, None, _event("5", T0 + 190 * MIN, event="Added"), T0 + 190 * MIN)
    assert prog.can_merge(a.state, fresh.state)  # later than all a has folded: exact
    merged = prog.merge_states(a.state, fresh.state)
    assert prog.on_time(anon, merged, T0 + 200 * MIN).members == frozenset()
