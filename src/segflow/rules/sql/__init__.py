"""The SQL back end: rules compiled through SQLGlot to every warehouse engine's dialect.

``compiler`` builds the members and computed-trait queries as SQLGlot expressions;
``dialects`` holds what differs per engine (JSON paths, epoch helpers).
"""

from __future__ import annotations

from segflow.rules.sql.compiler import compile_members, compile_traits, traits_expression

__all__ = ["compile_members", "compile_traits", "traits_expression"]
