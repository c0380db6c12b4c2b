"""Backups of a data directory while segflow runs, and restores (docs/operations.md)."""

from segflow.backup.archive import Manifest, create_backup, restore_backup, verify_backup

__all__ = ["Manifest", "create_backup", "restore_backup", "verify_backup"]
