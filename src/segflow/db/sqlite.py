"""One way to open SQLite files: WAL, a busy timeout, and the durability the caller asks for.

>>> import tempfile, os
>>> con = connect(os.path.join(tempfile.mkdtemp(), "x.sqlite"))
>>> con.execute("PRAGMA journal_mode").fetchone()[0]
'wal'
"""

from __future__ import annotations

import sqlite3
import time
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
    con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    if not read_only:
        _wal(con)
    con.execute(f"PRAGMA synchronous={synchronous}")
    return con


BUSY_TIMEOUT_MS = 10_000


def _wal(con: sqlite3.Connection) -> None:
    """Switch ``con``'s file to WAL. The switch of a new file needs its exclusive lock and
    SQLite answers "database is locked" at once, without the busy handler, while another
    process holds any lock on it (the children of ``segflow serve`` open the same new files
    at the same moment): try again until the busy timeout has passed."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.005)


def columns(con: sqlite3.Connection, table: str) -> set[str]:
    """The names of ``table``'s columns."""
    return {str(r[1]) for r in con.execute(f"PRAGMA table_info({table})")}


def create_schema(
    con: sqlite3.Connection,
    tables: str,
    *,
    added: tuple[tuple[str, str, str], ...] = (),
    after: str = "",
) -> None:
    """Create ``tables`` (a script of ``CREATE ... IF NOT EXISTS``) and add the ``added``
    columns (``(table, column, declaration)``) a file made by an older release lacks, in one
    write transaction; then run ``after`` (indexes, which may name the added columns).

    The children of ``segflow serve`` open the same new files at the same moment: checked and
    altered outside one transaction, two of them saw a column missing and the second's
    ``ALTER TABLE`` failed ("duplicate column name"), which ended that child at startup.
    ``BEGIN IMMEDIATE`` takes the write lock first (waiting out the busy timeout), so the
    check and the change are one step for every process.

    >>> import tempfile, os
    >>> con = connect(os.path.join(tempfile.mkdtemp(), "x.sqlite"))
    >>> _ = con.execute("CREATE TABLE t(a)")  # a file from before column b
    >>> for _ in range(2):  # idempotent
    ...     create_schema(con, "CREATE TABLE IF NOT EXISTS t(a);", added=(("t", "b", "TEXT"),))
    >>> sorted(columns(con, "t"))
    ['a', 'b']
    """
    con.executescript("BEGIN IMMEDIATE;\n" + tables)
    try:
        for table, column, declaration in added:
            if column not in columns(con, table):
                con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    if after:
        con.executescript(after)


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
