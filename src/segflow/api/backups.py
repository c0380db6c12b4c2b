"""``POST /api/v1/backups`` (admin): the serve process writes a backup of its own data
directory to ``path`` (a new or empty directory on the server's file system).

Inside the server the warehouse is held through the loader's lock
(:func:`segflow.backup.warehouse.hold_in_process`), so this works whatever
``warehouse.release_between_batches`` is; ``segflow backup --url`` calls it. The answer is the
backup's manifest (201). The backup is audit-logged (``backup.create``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from segflow.api.auth import Authorize
from segflow.api.common import actor, endpoint
from segflow.backup import create_backup
from segflow.backup.warehouse import hold_in_process
from segflow.catalog.audit import AuditLog
from segflow.errors import ValidationError


def backup_routes(
    data_dir: Path,
    loader_lock: AbstractContextManager[Any],
    authorize: Authorize,
    *,
    lock_timeout_s: float = 30.0,
    audit: AuditLog | None = None,
) -> list[Route]:
    """The backup route, bound to one data directory and its loader's lock."""

    def create(request: Request, body: dict[str, Any]) -> Any:
        path = body.get("path")
        if not isinstance(path, str) or not path:
            raise ValidationError("path", "required: a directory on the server for the backup")
        if not Path(path).is_absolute():
            raise ValidationError("path", "must be an absolute path")
        manifest = create_backup(
            data_dir,
            path,
            hold=lambda: hold_in_process(
                data_dir / "warehouse.duckdb", loader_lock, timeout_s=lock_timeout_s
            ),
            lock_timeout_s=lock_timeout_s,
        )
        if audit is not None:
            summary = {"path": path, "files": len(manifest.files), "point": manifest.point}
            audit.record(actor(request), "backup.create", path, None, summary)
        return msgspec.to_builtins(manifest)

    return [
        Route("/api/v1/backups", endpoint(authorize, "admin", create, status=201), methods=["POST"])
    ]
