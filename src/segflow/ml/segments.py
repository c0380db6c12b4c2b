"""Save a discovered cluster as a segment in one step: a rule on the cluster's stable id.

The saved rule is ``cluster id of model MODEL = ID``, not the cluster's name: a rename, or a
retrain that regenerates the name of a cluster its centroid matching kept, leaves the segment's
members alone. Rules written by hand on the name (``cluster of model MODEL = "NAME"``) follow the
name; :func:`rules_naming_cluster` finds them so a rename can warn about them.

>>> cluster_rule("customer_segments", 3)
'cluster id of model customer_segments = 3'
>>> print(cluster_name_rule("customer_segments", 'High spend · "VIP"'))
cluster of model customer_segments = "High spend · \\"VIP\\""
"""

from __future__ import annotations

import json
from typing import Protocol

from segflow.catalog.db import CatalogTarget
from segflow.ml.exceptions import ModelNotFound
from segflow.ml.registry import Registry


class _Definition(Protocol):
    @property
    def version(self) -> int: ...

    @property
    def rule(self) -> str | None: ...


def cluster_rule(model: str, cluster: int) -> str:
    """The segment-language rule selecting the profiles of one cluster, by its stable id."""
    return f"cluster id of model {model} = {int(cluster)}"


def cluster_name_rule(model: str, cluster_name: str) -> str:
    """The rule selecting a cluster by its current name (follows renames of the name)."""
    return f"cluster of model {model} = {json.dumps(cluster_name, ensure_ascii=False)}"


def save_cluster_as_segment(
    registry: Registry, catalog_path: CatalogTarget, model: str, cluster: int, segment: str
) -> _Definition:
    """Create (or version) segment ``segment`` as ``cluster id of model MODEL = ID`` in the catalog."""
    from segflow.segments.store import DefinitionStore

    names = registry.cluster_names(model)
    if int(cluster) not in names:
        raise ModelNotFound(f"{model}/cluster {cluster}")
    store = DefinitionStore(catalog_path)
    try:
        description = (
            f"cluster {cluster} of {model} ({names[int(cluster)][0]!r} when saved),"
            " saved from segment discovery"
        )
        return store.put("segment", segment, cluster_rule(model, int(cluster)), description)
    finally:
        store.close()


def rules_naming_cluster(catalog_path: CatalogTarget, model: str, name: str) -> list[str]:
    """Segments whose rule compares ``cluster of model MODEL`` (the name) with ``name``."""
    from segflow.segments.store import DefinitionStore

    store = DefinitionStore(catalog_path)
    try:
        return [d.name for d in store.list("segment") if _names_cluster(d.rule or "", model, name)]
    finally:
        store.close()


def _names_cluster(text: str, model: str, name: str) -> bool:
    from segflow.rules import ast
    from segflow.rules.exceptions import RuleSyntaxError
    from segflow.rules.parser import parse
    from segflow.rules.passes import conditions

    try:
        condition = parse(text).condition
    except RuleSyntaxError:
        return False
    for node in conditions(condition) if condition is not None else ():
        if isinstance(node, ast.Compare) and node.left == ast.ClusterRef(model):
            right = node.right if isinstance(node.right, tuple) else (node.right,)
            if name in right:
                return True
    return False
