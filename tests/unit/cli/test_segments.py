"""What ``segflow apply``, ``segments create|check`` say about rules (issue #17): a rule error
names the file, line and column with a caret under it (JSON only with ``--json``); a plan
shows each rule's diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from segflow.cli.main import _register_all, app
from segflow.rules import RuleSyntaxError, parse

BAD = 'did "Ping" at least x times'


def run(tmp_path: Path, *args: str) -> Result:
    if not app.registered_groups:
        _register_all()
    return CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path / "data")])


def column_of_error(rule: str) -> int:
    with pytest.raises(RuleSyntaxError) as raised:
        parse(rule)
    return raised.value.diagnostics[0].column


@pytest.mark.parametrize(
    ("body", "line", "offset"),
    [
        (f"name: badrule\ndescription: pings\nrule: {BAD}\n", 3, len("rule: ")),
        (f"description: pings\nrule: '{BAD}'\n", 2, len("rule: '")),
        (f'rule: |\n  did "Pong"\n  and {BAD}\n', 3, len("  and ")),
    ],
)
def test_apply_names_the_file_line_and_column_of_a_rule_that_does_not_compile(
    tmp_path: Path, body: str, line: int, offset: int
) -> None:
    path = tmp_path / "defs" / "segments" / "badrule.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(body)
    # was: "definitions: badrule:2:37: ..." as JSON, the line counted within the rule
    result = run(tmp_path, "apply", str(tmp_path / "defs"), "--no-sizes")
    assert result.exit_code == 2
    column = offset + column_of_error(BAD)
    first, source, caret = result.stderr.splitlines()[:3]
    assert first.startswith(f"{path}:{line}:{column}: error: ")
    assert source == "  " + body.splitlines()[line - 1]
    assert caret == "  " + " " * (column - 1) + "^"

    as_json = run(tmp_path, "apply", str(tmp_path / "defs"), "--no-sizes", "--json")
    (error,) = json.loads(as_json.stderr)["details"]["errors"]
    assert (error["definition"], error["line"], error["column"]) == (str(path), line, column)


def test_apply_dry_run_shows_each_rules_diff(tmp_path: Path) -> None:
    assert (
        run(tmp_path, "segments", "create", "pingers", 'did "Ping" at least 2 times').exit_code == 0
    )
    defs = tmp_path / "defs" / "segments"
    defs.mkdir(parents=True)
    (defs / "pingers.yaml").write_text('rule: did "Ping" at least 4 times\n')
    (defs / "buyers.yaml").write_text('rule: did "Order Completed"\n')
    result = run(tmp_path, "apply", str(tmp_path / "defs"), "--dry-run", "--no-sizes")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "create  segment buyers",
        '    +did "Order Completed"',
        "update  segment pingers",
        '    -did "Ping" at least 2 times',
        '    +did "Ping" at least 4 times',
        "2 to change (dry run: nothing applied)",
    ]


def test_a_bad_rule_on_the_cli_is_its_line_a_caret_and_the_message(tmp_path: Path) -> None:
    column = column_of_error(BAD)
    created = run(tmp_path, "segments", "create", "pingers", BAD)
    assert created.exit_code == 2
    first, *pointer = created.stderr.splitlines()[:3]
    assert f"1:{column}: error: expected a whole number" in first
    assert pointer == [f"  {BAD}", "  " + " " * (column - 1) + "^"]
    as_json = run(tmp_path, "segments", "create", "pingers", BAD, "--json")
    assert json.loads(as_json.stderr)["code"] == "rule_syntax_error"
    checked = run(tmp_path, "segments", "check", BAD)
    assert checked.exit_code == 2
    assert checked.stdout.splitlines()[1:3] == [f"  {BAD}", "  " + " " * (column - 1) + "^"]


def test_a_window_beyond_any_stored_history_is_refused_with_a_caret_and_the_limit(
    tmp_path: Path,
) -> None:
    rule = 'did "x" in last 99999999999999999 days'
    column = rule.index("9999") + 1
    created = run(tmp_path, "segments", "create", "forever", rule)
    assert created.exit_code == 2  # was: created, with a window 10^14 years long
    first, *pointer = created.stderr.splitlines()[:3]
    assert f"1:{column}: error: 99999999999999999 days is longer than the longest" in first
    assert "36525 days" in first
    assert pointer == [f"  {rule}", "  " + " " * (column - 1) + "^"]
    assert run(tmp_path, "segments", "create", "century", rule.replace("99999999999999999", "36525")).exit_code == 0  # fmt: skip
