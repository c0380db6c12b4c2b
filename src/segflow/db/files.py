"""Durable file writes: what a rename-into-place needs besides the write itself.

A file written and renamed survives a power loss only when the file's data and the directory
entry both reached the disk: :func:`fsync_path` flushes either (a directory is opened read-only,
as a file is).

>>> import tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp()); _ = (d / "f").write_text("x")
>>> fsync_path(d / "f"); fsync_path(d)
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: str | Path) -> None:
    """``fsync`` the file or directory at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
