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


def vacuum(con: sqlite3.Connection, *, attempts: int = 200) -> None:
    """Rewrite the database without free pages and empty its write-ahead file.

    ``VACUUM`` rebuilds the file, so deleted rows leave no bytes in free pages or in the
    unused space of pages; ``wal_checkpoint(TRUNCATE)`` copies the write-ahead file back and
    truncates it to zero bytes (frames of old page versions are gone). The checkpoint waits
    for readers of older snapshots (``busy_timeout`` each try, up to ``attempts`` tries) and
    raises ``sqlite3.OperationalError`` if it never completes.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.sqlite")
    >>> con = connect(path)
    >>> _ = con.execute("CREATE TABLE t(v)"); _ = con.execute("INSERT INTO t VALUES ('secret')")
    >>> _ = con.execute("DELETE FROM t"); vacuum(con)
    >>> from pathlib import Path
    >>> b"secret" in Path(path).read_bytes(), os.path.getsize(path + "-wal")
    (False, 0)
    >>> con.close()
    """
    con.execute("VACUUM")
    for _ in range(attempts):
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return
    raise sqlite3.OperationalError("the write-ahead file could not be truncated (busy readers)")
