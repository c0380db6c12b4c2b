"""The SQL back end: rules compiled through SQLGlot to every warehouse engine's dialect.

``compiler`` builds the members (at one instant, or on a time grid of many) and
computed-trait queries as SQLGlot expressions;
``dialects`` holds what differs per engine (JSON paths, epoch helpers).
"""

from __future__ import annotations

from segflow.rules.sql.compiler import (
    compile_members,
    compile_members_grid,
    compile_traits,
    traits_expression,
)

__all__ = ["compile_members", "compile_members_grid", "compile_traits", "traits_expression"]
