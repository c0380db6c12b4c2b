"""Identity resolution (pure, no I/O): identifiers, merge rules, the resolver.

>>> from segflow.identity import IdentityRules, Identifier, MemoryGraph, resolve
>>> g = MemoryGraph()
>>> p = g.apply(resolve([Identifier("anonymous_id", "a")], g, IdentityRules(), 1), 1, "m")
>>> p is not None
True
"""

from segflow.identity.exceptions import IdentityConfigError
from segflow.identity.identifiers import Identifier, extract_identifiers, normalise
from segflow.identity.resolver import (
    Conflict,
    GraphView,
    MemoryGraph,
    Merge,
    Resolution,
    resolve,
    violation,
)
from segflow.identity.rules import ExternalId, IdentityRules, TypeLimit

__all__ = [
    "Conflict",
    "ExternalId",
    "GraphView",
    "Identifier",
    "IdentityConfigError",
    "IdentityRules",
    "MemoryGraph",
    "Merge",
    "Resolution",
    "TypeLimit",
    "extract_identifiers",
    "normalise",
    "resolve",
    "violation",
]
