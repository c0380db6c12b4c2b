"""Save a discovered cluster as a segment in one step: a rule on the profile's cluster label.

>>> cluster_rule("customer_segments", 'High spend · "VIP"')
'cluster of model customer_segments = "High spend · \\\\"VIP\\\\""'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from segflow.ml.exceptions import ModelNotFound
from segflow.ml.registry import Registry


class _Definition(Protocol):
    @property
    def version(self) -> int: ...

    @property
    def rule(self) -> str | None: ...


def cluster_rule(model: str, cluster_name: str) -> str:
    """The segment-language rule selecting the profiles of one cluster."""
    return f"cluster of model {model} = {json.dumps(cluster_name, ensure_ascii=False)}"


def save_cluster_as_segment(
    registry: Registry, catalog_path: str | Path, model: str, cluster: int, segment: str
) -> _Definition:
    """Create (or version) segment ``segment`` as ``cluster of model MODEL = "NAME"`` in the catalog."""
    from segflow.segments.store import DefinitionStore

    names = registry.cluster_names(model)
    if int(cluster) not in names:
        raise ModelNotFound(f"{model}/cluster {cluster}")
    store = DefinitionStore(catalog_path)
    try:
        description = f"cluster {cluster} of {model}, saved from segment discovery"
        return store.put(
            "segment", segment, cluster_rule(model, names[int(cluster)][0]), description
        )
    finally:
        store.close()
