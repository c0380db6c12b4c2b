"""What the admin API and the web console are given: the parts of one serve process.

Both faces sit on this one floor, side by side, and neither reads the other's internals;
``segflow.server.compose`` builds one :class:`ApiDeps` and hands it to both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb

from segflow.activate.service import ActivationService
from segflow.catalog.audit import AuditLog
from segflow.catalog.db import CatalogTarget
from segflow.catalog.tokens import TokenStore
from segflow.ml.jobs import AttributeSink
from segflow.privacy.service import PrivacyService
from segflow.segments.service import SegmentService
from segflow.serving.runtime import Runtime
from segflow.serving.snapshots import FigureSource
from segflow.stream.reader import ProfileReader
from segflow.syncs.store import SyncStore
from segflow.warehouse.loader import WarehouseLoader


class Splitter(Protocol):
    """What ``POST .../split`` calls (``segflow.stream.Processor.split``)."""

    def split(self, profile_id: str, identifiers: Sequence[str]) -> Any: ...


@dataclass(frozen=True)
class ApiDeps:
    """What the admin API (``segflow.api.app``) and the console (``segflow.ui.app``) read and
    drive: the parts of one serve process."""

    runtime: Runtime
    reader: ProfileReader
    figures: FigureSource  # the processor's and the loader's figures (segflow.serving.snapshots)
    sink: AttributeSink  # where ML scores and clusters go: the processor, or its queue
    splitter: Splitter  # who splits profiles: the processor, or its queue
    loader: WarehouseLoader  # its lock keeps the warehouse still for a backup
    activation: ActivationService
    segments: SegmentService
    tokens: TokenStore
    warehouse: Callable[[], duckdb.DuckDBPyConnection]
    catalog_path: CatalogTarget  # catalog.sqlite, or the shared catalog (shared.dsn)
    audit: AuditLog | None = None
    privacy: PrivacyService | None = None
    syncs: SyncStore | None = None  # pulled syncs (segflow.syncs)
