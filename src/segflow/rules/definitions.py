"""A rule set: every segment and computed trait parsed and checked together, each segment's
computed traits inlined. Both back ends (``incremental`` and ``sql``) start from here.
"""

from __future__ import annotations

from collections.abc import Mapping

from segflow.rules import ast
from segflow.rules.exceptions import Diagnostic, RuleSyntaxError
from segflow.rules.parser import parse, parse_trait
from segflow.rules.passes import analyze, computed_refs, segment_refs, substitute_computed


def parse_definitions(
    definitions: Mapping[str, str], traits: Mapping[str, str]
) -> tuple[dict[str, ast.Condition], dict[str, ast.Aggregate]]:
    """Parse and check every definition of a rule set together: all errors of all
    definitions at once (:class:`RuleSyntaxError`), unknown computed traits and segments
    refused, and each segment's computed traits inlined (both back ends read the result).

    >>> conds, aggs = parse_definitions({"a": 'computed n >= 2'}, {"n": 'count("A")'})
    >>> type(conds["a"].left).__name__, list(aggs)
    ('Aggregate', ['n'])
    """
    diags: list[Diagnostic] = []
    conds: dict[str, ast.Condition] = {}
    aggs: dict[str, ast.Aggregate] = {}
    for kind, source in (("trait", traits), ("segment", definitions)):
        for name, text in source.items():
            try:
                rule = parse_trait(text) if kind == "trait" else parse(text)
            except RuleSyntaxError as err:
                diags.extend(_named(err.diagnostics, name))
                continue
            found = [d for d in analyze(rule) if d.severity == "error"]
            diags.extend(_named(found, name))
            if rule.condition is not None:
                conds[name] = rule.condition
            elif isinstance(rule.value, ast.Aggregate):
                aggs[name] = rule.value
    for name, cond in conds.items():
        for ref in sorted(computed_refs(cond) - aggs.keys()):
            diags.append(_diag(name, f'unknown computed trait "{ref}"'))
        for ref in sorted(segment_refs(cond) - conds.keys() - set(definitions)):
            diags.append(_diag(name, f'unknown segment "{ref}"'))
    if diags:
        raise RuleSyntaxError(diags, field="definitions")
    out = {n: substitute_computed(c, aggs) for n, c in conds.items()}
    for name in conds:
        diags.extend(_named(computed_type_errors(conds[name], out[name]), name))
    if diags:
        raise RuleSyntaxError(diags, field="definitions")
    return out, aggs


def computed_type_errors(original: ast.Condition, substituted: ast.Condition) -> list[Diagnostic]:
    """Type errors that appear once ``computed NAME`` is replaced by its aggregate.

    ``computed orders = "x"`` with ``orders = count(...)`` is as wrong as ``count(...) = "x"``
    (which the parser's passes refuse); left through, SQL engines reject the comparison of a
    number with text while the incremental evaluator says false, so the two would disagree.
    """
    if original == substituted:
        return []
    before = {d.message for d in analyze(ast.Rule("", condition=original))}
    return [
        Diagnostic(line=1, column=1, message=f"with its computed traits inlined: {d.message}")
        for d in analyze(ast.Rule("", condition=substituted))
        if d.severity == "error" and d.message not in before
    ]


def _diag(name: str, message: str) -> Diagnostic:
    return Diagnostic(line=1, column=1, message=message, definition=name)


def _named(diags: list[Diagnostic], name: str) -> list[Diagnostic]:
    return [
        Diagnostic(
            line=d.line, column=d.column, message=d.message, severity=d.severity, definition=name
        )
        for d in diags
    ]
