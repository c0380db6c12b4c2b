"""Errors of the segment language.

::

    ValidationError (segflow.errors)
    ├── RuleSyntaxError      the text does not parse or validate; carries every Diagnostic
    └── RuleCycleError       segments refer to each other in a cycle
"""

from __future__ import annotations

from typing import Literal

import msgspec

from segflow.errors import ValidationError

Severity = Literal["error", "warning"]


class Diagnostic(msgspec.Struct, frozen=True, kw_only=True):
    """One problem in a rule, at a 1-based ``line`` and ``column``.

    >>> Diagnostic(line=1, column=5, message="expected a number").render()
    '1:5: error: expected a number'
    """

    line: int
    column: int
    message: str
    severity: Severity = "error"
    definition: str = ""

    def render(self) -> str:
        where = f"{self.definition}:" if self.definition else ""
        return f"{where}{self.line}:{self.column}: {self.severity}: {self.message}"


class RuleSyntaxError(ValidationError):
    """A rule that cannot be compiled; ``diagnostics`` holds every error found."""

    code = "rule_syntax_error"

    def __init__(self, diagnostics: list[Diagnostic], field: str = "rule") -> None:
        self.diagnostics = [d for d in diagnostics if d.severity == "error"]
        text = "; ".join(d.render() for d in self.diagnostics)
        super().__init__(
            field, text, details={"errors": [msgspec.to_builtins(d) for d in self.diagnostics]}
        )


class RuleCycleError(ValidationError):
    """Segments that refer to each other in a cycle (``cycle`` lists the names in order)."""

    code = "rule_cycle"

    def __init__(self, cycle: list[str]) -> None:
        super().__init__(
            "segments",
            "segments refer to each other in a cycle: " + " -> ".join(cycle),
            details={"cycle": cycle},
        )
        self.cycle = cycle
