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

    def pointer(self, text: str) -> str:
        """The diagnostic's line of ``text`` and a caret under its column (as compilers and
        the console show it); ``""`` when the line is not in ``text``.

        >>> d = Diagnostic(line=2, column=5, message="expected a number")
        >>> print(d.pointer('did "A"\\nand x'))
          and x
              ^
        """
        lines = text.splitlines()
        if not 1 <= self.line <= len(lines):
            return ""
        source = lines[self.line - 1].expandtabs(1)
        return f"  {source}\n  {' ' * (max(self.column, 1) - 1)}^"

    def explain(self, text: str | None) -> str:
        """:meth:`render` followed by :meth:`pointer` when ``text`` has the line.

        >>> print(Diagnostic(line=1, column=4, message="unexpected 'x'").explain("did x"))
        1:4: error: unexpected 'x'
          did x
             ^
        """
        shown = self.pointer(text) if text is not None else ""
        return self.render() + (f"\n{shown}" if shown else "")


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
