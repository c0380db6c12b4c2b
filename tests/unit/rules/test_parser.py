"""Parser, diagnostics and passes."""

from __future__ import annotations

import pytest

from segflow.errors import ValidationError
from segflow.rules import (
    RuleCycleError,
    RuleSyntaxError,
    ast,
    check,
    compile_segments,
    parse,
    parse_trait,
)
from segflow.rules.parser import MAX_WINDOW_DAYS


def test_count_window_and_filter() -> None:
    cond = parse(
        'did "Product Viewed" where category = "shoes" at least 3 times in last 2 hours'
    ).condition
    assert cond == ast.Compare(
        ast.Aggregate(
            "count",
            ast.Selector("track", "Product Viewed", ast.FCompare(("category",), "=", "shoes")),
            None,
            ast.Window(2 * 3_600_000, 0),
        ),
        ">=",
        3,
    )


def test_precedence_and_over_or_and_not() -> None:
    cond = parse("is anonymous or not is anonymous and true").condition
    assert cond == ast.Or((ast.Anonymous(), ast.And((ast.Not(ast.Anonymous()), ast.Const(True)))))


def test_between_is_order_insensitive() -> None:
    a = parse('did "A" between 30 and 90 days ago').condition
    b = parse('did "A" between 90 and 30 days ago').condition
    assert a == b


def test_sequence_with_absent_step() -> None:
    cond = parse('did "A" then "B" within 30 minutes then not "C" within 1 hour').condition
    assert cond == ast.Sequence(
        (ast.Step(ast.Selector("track", "A")), ast.Step(ast.Selector("track", "B"), 1_800_000)),
        ast.Step(ast.Selector("track", "C"), 3_600_000),
    )


def test_nested_paths_lists_and_text_ops() -> None:
    cond = parse(
        'did any event where (properties.product.category in ["a", "b"] or q contains "x" '
        'or q starts with "y" or not z exists)'
    ).condition
    assert isinstance(cond, ast.Compare) and isinstance(cond.left, ast.Aggregate)
    flt = cond.left.selector.filter
    assert isinstance(flt, ast.FOr)
    assert flt.items[0] == ast.FCompare(("product", "category"), "in", ("a", "b"))
    assert flt.items[3] == ast.FNot(ast.FExists(("z",)))


def test_ml_engineers_syntax_for_scores_and_clusters() -> None:
    cond = parse(
        'cluster of model customer_segments = "High \\"VIP\\"" and score churn >= 0.7'
    ).condition
    assert cond == ast.And(
        (
            ast.Compare(ast.ClusterRef("customer_segments"), "=", 'High "VIP"'),
            ast.Compare(ast.ScoreRef("churn"), ">=", 0.7),
        )
    )


def test_every_error_is_reported_with_line_and_column() -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse('did Product at least 3 times\nand did "A" in last 3 mins\nand (trait plan = ')
    err = info.value
    assert isinstance(err, ValidationError)
    got = [(d.line, d.column) for d in err.diagnostics]
    assert got == [(1, 5), (2, 23), (3, 19), (3, 5)]
    assert "unknown time unit 'mins'" in err.diagnostics[1].message
    assert err.to_dict()["details"]["errors"][0]["line"] == 1


def test_unclosed_string_and_paren() -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse('(did "A')
    messages = [d.message for d in info.value.diagnostics]
    assert any("closing" in m for m in messages)
    assert any("never closed" in m for m in messages)


@pytest.mark.parametrize(
    ("rule", "op"),
    [
        ('did "Viewed" where plan = "pro" or plan = "team"', "or"),
        ('did "Viewed" where plan = "pro" and country = "DE"', "and"),
        ('count("Viewed" where plan = "pro" or plan = "team") >= 3', "or"),
    ],
)
def test_a_filter_joined_without_parentheses_says_to_add_them(rule: str, op: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse(rule)
    messages = [d.message for d in info.value.diagnostics]
    hinted = [m for m in messages if "put them in parentheses" in m]
    assert len(hinted) == 1, messages  # once, at the first error of the mistake
    assert f'where (plan = "pro" {op} plan = "team")' in hinted[0]
    assert parse(rule.replace("where ", "where (").replace(' "team"', ' "team")', 1)
                 .replace(' "DE"', ' "DE")', 1))  # fmt: skip


def test_a_condition_after_an_unfiltered_event_gets_no_filter_hint() -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse('did "Viewed" and plan = "pro"')
    assert "parentheses" not in str(info.value)


def test_type_errors_from_validation() -> None:
    diags = check('count("A") = "x" or score churn = "high" or most_frequent(c of "A") > 3')
    assert len(diags) == 3 and all(d.severity == "error" for d in diags)


def test_unknown_events_are_warnings() -> None:
    diags = check('did "Order Complete" or did "Order Completed"', known_events=["Order Completed"])
    assert [(d.severity, d.message) for d in diags] == [
        ("warning", 'no event named "Order Complete" has been seen')
    ]


def test_trait_expressions() -> None:
    assert parse_trait('most frequent(category of "Product Viewed")').value == ast.Aggregate(
        "most_frequent", ast.Selector("track", "Product Viewed"), ("category",)
    )
    with pytest.raises(RuleSyntaxError):
        parse_trait('sum("Order Completed")')


def test_cycles_are_refused() -> None:
    with pytest.raises(RuleCycleError) as info:
        compile_segments(
            {"a": 'in segment "b"', "b": "in segment c", "c": 'in segment "a" or is anonymous'}
        )
    assert info.value.cycle == ["a", "b", "c", "a"]


def test_unknown_segment_and_computed_trait_are_errors() -> None:
    with pytest.raises(RuleSyntaxError) as info:
        compile_segments({"a": 'in segment "nope" and computed spent > 3'})
    assert {d.message for d in info.value.diagnostics} == {
        'unknown segment "nope"',
        'unknown computed trait "spent"',
    }
    assert all(d.definition == "a" for d in info.value.diagnostics)


def test_render_round_trips_every_documented_example() -> None:
    import re
    from pathlib import Path

    from segflow.rules.render import render

    doc = (Path(__file__).resolve().parents[3] / "docs" / "segments.md").read_text()
    for text in re.findall(r"```rule \S+\n(.*?)```", doc, re.S):
        cond = parse(text).condition
        assert cond is not None
        assert parse(render(cond)).condition == cond, text


@pytest.mark.parametrize(
    ("rule", "at", "longest"),
    [
        ('did "x" in last 99999999999999999 days', "9999", "36525"),
        ('did "x" between 10 and 99999999 days ago', "10", "36525"),
        ('did "x" before 5300 weeks ago', "5300", "5200"),
        ('did "x" in at least 2 of last 5300 weeks', "5300", "5200"),
        ('did "a" then "b" within 5300 weeks', "5300", "5200"),
        ('count("x" in last 5300 weeks) > 2', "5300", "5200"),
    ],
)
def test_durations_are_bounded_by_the_longest_history_a_store_holds(
    rule: str, at: str, longest: str
) -> None:
    with pytest.raises(RuleSyntaxError) as raised:
        parse(rule)
    (error,) = raised.value.diagnostics  # one error: parsing goes on past it
    assert error.column == rule.index(at) + 1
    assert f"{MAX_WINDOW_DAYS} days" in error.message
    too_long = max(rule.replace('"', " ").split(), key=lambda w: len(w) if w.isdigit() else 0)
    parse(rule.replace(too_long, longest))


@pytest.mark.parametrize(
    ("text", "side", "share"),
    [
        ("score bundle_72h in top 10%", "top", 0.1),
        ("score of model churn in bottom 25 percent", "bottom", 0.25),
        ("score ltv in top 0.5%", "top", 0.005),
        ("score ltv in top 100%", "top", 1.0),
    ],
)
def test_percentile_conditions_lower_to_the_runs_rank_share(
    text: str, side: str, share: float
) -> None:
    from segflow.rules.render import render

    cond = parse(text).condition
    model = text.split(" in ")[0].split()[-1]
    assert cond == ast.Compare(ast.ScoreRef(model, side), "<=", share)  # type: ignore[arg-type]
    assert isinstance(cond, ast.Compare) and isinstance(cond.left, ast.ScoreRef)
    assert cond.left.key == f"{model}:{side}"
    assert parse(render(cond)).condition == cond
    assert check(text) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("score churn in top 0%", "expected a percentage above 0 and at most 100"),
        ("score churn in top 150%", "expected a percentage above 0 and at most 100"),
        ("score churn in top ten%", "expected a percentage above 0 and at most 100"),
        ("score churn in bottom 10", "expected '%' after 10"),
    ],
)
def test_percentile_conditions_refuse_what_is_not_a_percentage(text: str, message: str) -> None:
    with pytest.raises(RuleSyntaxError) as err:
        parse(text)
    assert message in err.value.diagnostics[0].message
    assert err.value.diagnostics[0].column > 1


def test_percentile_conditions_read_stored_ranks_in_both_evaluators() -> None:
    from segflow.rules import StaticProfile
    from segflow.rules.sql.compiler import compile_members

    program = compile_segments({"top": "score m in top 40%", "low": "score m in bottom 40%"})
    # ranks as a run of 5 stores them: scores .9 .5 .5 .5 .1 (top share, bottom share)
    ranks = {"a": (0.2, 1.0), "b": (0.8, 0.8), "e": (1.0, 0.2)}
    members = {}
    for pid, (top, bottom) in ranks.items():
        view = StaticProfile(pid, scores={"m": 0.5, "m:top": top, "m:bottom": bottom})
        members[pid] = program.on_time(view, None, 0).members
    # the tied middle (60% of the run) is in neither: it does not fit in 40%
    assert members == {"a": {"top"}, "b": set(), "e": {"low"}}
    sql = compile_members("score m in top 40%", at_ms=0)
    assert "model = 'm:top'" in sql and "<= CAST(0.4 AS DOUBLE)" in sql
