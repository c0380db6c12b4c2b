"""Errors of backups and restores.

::

    SegflowError
    ├── ValidationError
    │   └── BackupCorrupt          a file is missing or its checksum differs from the manifest
    ├── ConflictError
    │   └── TargetNotEmpty         restore into a non-empty directory without --force;
    │                              backup into a non-empty directory
    └── TransientError
        └── snapshot.BackupBusy    a store's write lock could not be taken in time: retry
"""

from __future__ import annotations

from segflow.errors import ConflictError, ValidationError


class BackupCorrupt(ValidationError):
    code = "backup_corrupt"


class TargetNotEmpty(ConflictError):
    code = "target_not_empty"
