"""Segments and computed traits as code: YAML files in a directory under version control.

One file per definition, ``segments/NAME.yaml`` or ``traits/NAME.yaml``::

    name: abandoned_cart
    description: Added to cart, no order within 1 hour
    rule: did "Product Added" then not "Order Completed" within 1 hour

:func:`plan` compares a directory with the catalogue (new, edited, deleted, unchanged);
:func:`apply` carries a plan out through :class:`SegmentService` (so every definition is
validated against the whole future catalogue first, versioned, and audited); :func:`export`
writes the catalogue out. A plan is all-or-nothing: when any definition does not compile with
the others, nothing is applied.

>>> import tempfile, os
>>> from segflow.segments.store import DefinitionStore
>>> root = tempfile.mkdtemp()
>>> svc = SegmentService(DefinitionStore(os.path.join(root, "catalog.sqlite")))
>>> _ = svc.put_segment("old", "true")
>>> from pathlib import Path
>>> d = Path(root, "defs"); (d / "segments").mkdir(parents=True)
>>> _ = (d / "segments" / "buyers.yaml").write_text('rule: did "Order Completed"\\n')
>>> [(c.action, c.kind, c.name) for c in plan(svc, d, prune=True)]
[('create', 'segment', 'buyers'), ('delete', 'segment', 'old')]
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from segflow.errors import ValidationError
from segflow.rules import RuleSyntaxError, compile_segments
from segflow.rules.exceptions import Diagnostic
from segflow.segments.service import SegmentService
from segflow.segments.store import Kind

FOLDERS: dict[Kind, str] = {"segment": "segments", "trait": "traits"}


@dataclass(frozen=True)
class Change:
    """One definition's fate under a plan: ``create``, ``update``, ``delete`` or ``same``."""

    action: str
    kind: Kind
    name: str
    rule: str = ""
    description: str = ""
    old_rule: str | None = None
    old_description: str | None = None

    def diff(self) -> list[str]:
        """What the change does to the rule, unified-diff style (``-`` old, ``+`` new lines;
        ``@@`` hunk headers for rules of several lines), then a description change if any.

        >>> Change("update", "segment", "pingers", 'did "Ping" at least 4 times',
        ...        old_rule='did "Ping" at least 2 times').diff()
        ['-did "Ping" at least 2 times', '+did "Ping" at least 4 times']
        >>> Change("create", "segment", "buyers", 'did "Order Completed"').diff()
        ['+did "Order Completed"']
        """
        if self.action == "same":
            return []
        old = (self.old_rule or "").splitlines() if self.action != "create" else []
        new = self.rule.splitlines() if self.action != "delete" else []
        several = len(old) > 1 or len(new) > 1
        out = [
            line
            for line in difflib.unified_diff(old, new, lineterm="")
            if not line.startswith(("---", "+++")) and (several or not line.startswith("@@"))
        ]
        if self.action == "update" and self.old_description not in (None, self.description):
            out.append(f"description: {self.old_description!r} -> {self.description!r}")
        return out


def read_directory(root: str | Path) -> dict[tuple[Kind, str], tuple[str, str]]:
    """``(kind, name) -> (rule, description)`` from the YAML files under ``root``."""
    out: dict[tuple[Kind, str], tuple[str, str]] = {}
    for kind, folder in FOLDERS.items():
        for path in sorted((Path(root) / folder).glob("*.y*ml")):
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ValidationError(str(path), f"not valid YAML: {exc}") from exc
            if not isinstance(data, dict) or not isinstance(data.get("rule"), str):
                raise ValidationError(str(path), "needs a 'rule' (text)")
            name = str(data.get("name") or path.stem)
            out[(kind, name)] = (data["rule"], str(data.get("description") or ""))
    return out


def plan(service: SegmentService, root: str | Path, *, prune: bool = False) -> list[Change]:
    """What applying ``root`` would change (``prune``: delete definitions without a file).

    Raises the compiler's :class:`ValidationError` (with every diagnostic) when the resulting
    catalogue would not compile.
    """
    wanted = read_directory(root)
    changes: list[Change] = []
    for kind in FOLDERS:
        current = {d.name: d for d in service.definitions(kind)}
        for (k, name), (rule, description) in sorted(wanted.items()):
            if k != kind:
                continue
            old = current.get(name)
            if old is None:
                changes.append(Change("create", kind, name, rule, description))
            elif (old.rule, old.description) != (rule, description):
                changes.append(
                    Change("update", kind, name, rule, description, old.rule, old.description)
                )
            else:
                changes.append(Change("same", kind, name, rule, description, old.rule))
        if prune:
            for name, old in sorted(current.items()):
                if (kind, name) not in wanted:
                    changes.append(Change("delete", kind, name, old_rule=old.rule))
    try:
        _check(service, changes)
    except RuleSyntaxError as err:
        raise RuleSyntaxError(locate(err.diagnostics, root), field=err.field) from None
    return changes


@dataclass(frozen=True)
class RuleSpan:
    """Where a definition's rule text sits in its YAML file (1-based line and column of the
    rule's first character; ``block``: a ``|``/``>`` scalar, whose lines keep their own)."""

    path: Path
    line: int
    column: int
    block: bool

    def place(self, line: int, column: int) -> tuple[int, int]:
        """A position in the rule -> the same position in the file.

        >>> RuleSpan(Path("s.yaml"), 3, 7, block=False).place(1, 5)
        (3, 11)
        >>> RuleSpan(Path("s.yaml"), 4, 3, block=True).place(2, 5)
        (5, 7)
        """
        if line == 1 or self.block:
            return self.line + line - 1, self.column - 1 + column
        return self.line + line - 1, column  # a multi-line plain scalar: the line, roughly


def rule_spans(root: str | Path) -> dict[str, RuleSpan]:
    """``name -> RuleSpan`` of every definition file under ``root`` that has a ``rule``."""
    out: dict[str, RuleSpan] = {}
    for folder in FOLDERS.values():
        for path in sorted((Path(root) / folder).glob("*.y*ml")):
            text = path.read_text()
            try:
                node = yaml.compose(text)
            except yaml.YAMLError:
                continue
            if not isinstance(node, yaml.MappingNode):
                continue
            fields = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
            rule = fields.get("rule")
            if not isinstance(rule, yaml.ScalarNode):
                continue
            name = str(getattr(fields.get("name"), "value", "") or path.stem)
            out[name] = _span(path, text, rule)
    return out


def _span(path: Path, text: str, rule: yaml.ScalarNode) -> RuleSpan:
    start = rule.start_mark
    if rule.style in ("|", ">"):
        lines = text.splitlines()
        body = lines[start.line + 1] if start.line + 1 < len(lines) else ""
        indent = len(body) - len(body.lstrip(" "))
        return RuleSpan(path, start.line + 2, indent + 1, block=True)
    quoted = 1 if rule.style in ('"', "'") else 0
    return RuleSpan(path, start.line + 1, start.column + 1 + quoted, block=False)


def locate(diagnostics: list[Diagnostic], root: str | Path) -> list[Diagnostic]:
    """Diagnostics of definitions read from ``root`` placed in their files: ``definition`` the
    file's path, ``line``/``column`` in the file (others are kept as they are)."""
    spans = rule_spans(root)
    out = []
    for d in diagnostics:
        span = spans.get(d.definition)
        if span is None:
            out.append(d)
            continue
        line, column = span.place(d.line, d.column)
        out.append(
            Diagnostic(
                line=line,
                column=column,
                message=d.message,
                severity=d.severity,
                definition=str(span.path),
            )
        )
    return out


def future(service: SegmentService, changes: list[Change]) -> tuple[dict[str, str], dict[str, str]]:
    """The segments and traits the catalogue would hold after ``changes``."""
    segments, traits = service.segments(), service.traits()
    for c in changes:
        target = segments if c.kind == "segment" else traits
        if c.action == "delete":
            target.pop(c.name, None)
        else:
            target[c.name] = c.rule
    return segments, traits


def _check(service: SegmentService, changes: list[Change]) -> None:
    compile_segments(*future(service, changes))


def apply(service: SegmentService, changes: list[Change], *, actor: str) -> int:
    """Carry out a plan; returns how many definitions changed.

    Each write is checked against the catalogue as it is at that moment, so writes are retried
    in rounds until every one went through (a new segment may use another new one); the plan
    itself was checked as a whole, so the rounds converge.
    """
    writes = [c for c in changes if c.action in ("create", "update")]
    deletes = [c for c in changes if c.action == "delete"]
    writes.sort(key=lambda c: c.kind != "trait")  # traits first: segments may use them
    deletes.sort(key=lambda c: c.kind == "trait")  # segments first: they may use traits

    def write(c: Change) -> None:
        put = service.put_segment if c.kind == "segment" else service.put_trait
        put(c.name, c.rule, c.description, actor=actor)

    def delete(c: Change) -> None:
        service.delete(c.kind, c.name, actor=actor)

    return _in_rounds(writes, write) + _in_rounds(deletes, delete)


def _in_rounds(pending: list[Change], act: Callable[[Change], None]) -> int:
    done = 0
    while pending:
        failed: list[Change] = []
        error: ValidationError | None = None
        for c in pending:
            try:
                act(c)
                done += 1
            except ValidationError as exc:
                failed.append(c)
                error = exc
        if len(failed) == len(pending) and error is not None:
            raise error
        pending = failed
    return done


def export(service: SegmentService, root: str | Path) -> list[Path]:
    """Write every current definition as YAML under ``root``; returns the files written."""
    written = []
    for kind, folder in FOLDERS.items():
        directory = Path(root) / folder
        directory.mkdir(parents=True, exist_ok=True)
        for d in service.definitions(kind):
            body = {"name": d.name, "description": d.description, "rule": d.rule}
            path = directory / f"{d.name}.yaml"
            path.write_text(yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100))
            written.append(path)
    return written
