"""One way to open SQLite files: WAL, a busy timeout, and the durability the caller asks for.

>>> import tempfile, os
>>> con = connect(os.path.join(tempfile.mkdtemp(), "x.sqlite"))
>>> con.execute("PRAGMA journal_mode").fetchone()[0]
'wal'
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(
    path: str | Path,
    *,
    synchronous: str = "FULL",
    check_same_thread: bool = False,
    read_only: bool = False,
) -> sqlite3.Connection:
    """Open ``path`` in WAL mode. ``synchronous=FULL`` fsyncs every commit (the default)."""
    if read_only:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=check_same_thread)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(str(path), check_same_thread=check_same_thread, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    con.execute("PRAGMA busy_timeout=10000")
    return con
