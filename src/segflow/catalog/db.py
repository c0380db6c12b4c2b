"""Where the catalog lives: ``DATA_DIR/catalog.sqlite``, or shared PostgreSQL tables.

The catalog is segflow's control plane: sources and write keys
(:class:`~segflow.collect.catalog.SourceCatalog`), segment and trait definitions
(:class:`~segflow.segments.store.DefinitionStore`), API tokens
(:class:`~segflow.catalog.tokens.TokenStore`), regulations and suppressions
(:class:`~segflow.privacy.store.PrivacyStore`) and the audit log
(:class:`~segflow.catalog.audit.AuditLog`). On one host it is one SQLite file in the data directory.
With ``shared.dsn`` set, it is tables in the ``shared.schema`` schema of that PostgreSQL
database, so collectors, processors and the API on different hosts see one catalog
(docs/scaling.md, "Beyond one host").

Design: each store keeps its own connection and its own SQL, written once, through
:class:`CatalogDB`, a thin adapter over a ``sqlite3`` or a psycopg connection. The stores'
statements are a handful of plain ``SELECT``/``INSERT``/``UPDATE``/``DELETE``; written in the
subset both engines share (``?`` placeholders, ``INSERT ... ON CONFLICT ... DO UPDATE|NOTHING``
with table-qualified columns, no ``INSERT OR ...``, no rowid), they need no translation beyond
placeholders. What the engines do not share is kept small and explicit:

- DDL, written per engine in each store (``BIGINT`` for milliseconds, ``BYTEA`` for blobs,
  identity columns and trigger functions in PostgreSQL);
- :meth:`CatalogDB.write`, a transaction that serialises the writers of one store: SQLite's
  ``BEGIN IMMEDIATE`` (the file's write lock), PostgreSQL's transaction-scoped advisory lock
  named after the store and the schema, so a read-then-write (the next version of a
  definition, a unique source name) stays atomic across hosts as it was across processes;
- the rare statement whose typing differs (``privacy_meta``'s counter), chosen with
  :attr:`CatalogDB.engine`.

Per-engine subclasses of every store were the other option: they would repeat each query and
each store's locking for a difference that is mostly placeholders. SQLGlot (a dependency, used
for the warehouse's many generated queries) would translate, but hand-written portable SQL is
easier to read and review for about thirty fixed statements. Change detection needs nothing
engine-specific: the definitions watcher compares a fingerprint of the current versions and
the suppression list polls a version counter, both ordinary rows.

>>> import os, tempfile
>>> db = open_catalog_db(
...     os.path.join(tempfile.mkdtemp(), "catalog.sqlite"),
...     sqlite="CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
...     postgres=("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)",),
... )
>>> with db.write("kv"):
...     _ = db.execute("INSERT INTO kv VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = kv.v + 1",
...                    ("a", 1))
>>> db.execute("SELECT k, v FROM kv").fetchall(), db.engine
([('a', 1)], 'sqlite')
>>> SharedCatalog("postgresql://u:secret@db/segflow")
SharedCatalog(schema='segflow')
>>> db.close()
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from segflow.db.postgres import SharedStoreUnavailable, connect_shared
from segflow.db.sqlite import connect

if TYPE_CHECKING:
    from segflow.config import Settings

Engine = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class SharedCatalog:
    """The catalog in PostgreSQL: tables of ``schema`` in the database at ``dsn``
    (the ``[shared]`` settings). The DSN may hold a password: it is left out of ``repr``."""

    dsn: str = field(repr=False)
    schema: str = "segflow"


CatalogTarget = str | Path | SharedCatalog
"""A SQLite file (its path) or a :class:`SharedCatalog`: what every catalog store opens."""


def catalog_target(settings: Settings) -> CatalogTarget:
    """The shared catalog when ``shared.dsn`` is set, else ``DATA_DIR/catalog.sqlite``.

    >>> from segflow.config import Settings, SharedSettings
    >>> catalog_target(Settings(shared=SharedSettings(dsn="postgresql://db/x", schema="acme")))
    SharedCatalog(schema='acme')
    >>> catalog_target(Settings()).name
    'catalog.sqlite'
    """
    if settings.shared.dsn:
        return SharedCatalog(settings.shared.dsn, settings.shared.schema)
    return Path(settings.data_path) / "catalog.sqlite"


class Cursor(Protocol):
    """What the stores read from a statement's result (``sqlite3`` and psycopg both have it)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


@functools.lru_cache(maxsize=256)
def to_pyformat(sql: str) -> str:
    """``sql`` with psycopg's placeholders: ``?`` -> ``%s``, a literal ``%`` doubled.

    The catalog's statements are constants with no ``?`` inside string literals.

    >>> to_pyformat("SELECT 1 FROM t WHERE a = ? AND b LIKE 'x%'")
    "SELECT 1 FROM t WHERE a = %s AND b LIKE 'x%%'"
    """
    return sql.replace("%", "%%").replace("?", "%s")


class CatalogDB:
    """One connection to the catalog, on either engine, with ``?`` placeholders.

    Not locked: each store serialises its own calls (one lock per store, as before). On
    PostgreSQL, a failure of the server or the network raises
    :class:`~segflow.db.postgres.SharedStoreUnavailable` (a ``TransientError``: HTTP 503 in the
    APIs), and the next call connects again (``reopen``); a failed call is never retried
    silently, since a write may have committed before the connection dropped.
    """

    def __init__(
        self,
        con: Any,
        engine: Engine,
        *,
        namespace: str = "",
        reopen: Callable[[], Any] | None = None,
    ) -> None:
        self.con = con
        self.engine: Engine = engine
        self._namespace = namespace
        self._reopen = reopen

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement; the cursor holds its rows and ``rowcount``."""
        if self.engine == "sqlite":
            return self.con.execute(sql, tuple(params))  # type: ignore[no-any-return]
        with self._shared() as con:
            return con.execute(to_pyformat(sql), tuple(params))  # type: ignore[no-any-return]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Run one statement per row; returns how many rows they changed in all."""
        rows = [tuple(r) for r in rows]
        if not rows:
            return 0
        if self.engine == "sqlite":
            return int(self.con.executemany(sql, rows).rowcount)
        with self._shared() as con, con.cursor() as cur:
            cur.executemany(to_pyformat(sql), rows)
            return int(cur.rowcount)

    @contextlib.contextmanager
    def _shared(self) -> Iterator[Any]:
        """The PostgreSQL connection (opened again if it was lost); its failures raise
        :class:`~segflow.db.postgres.SharedStoreUnavailable`."""
        import psycopg

        try:
            if self._reopen is not None and self.con.closed:
                self.con = self._reopen()
            yield self.con
        except psycopg.OperationalError as exc:
            raise SharedStoreUnavailable(f"the shared catalog failed: {exc}") from exc

    @contextlib.contextmanager
    def write(self, name: str) -> Iterator[None]:
        """A transaction that no other writer of ``name`` (a store) runs beside, on any host.

        Committed when the block ends, rolled back when it raises.
        """
        if self.engine == "sqlite":
            self.con.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")
            return
        with self._shared() as con, con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key(name),))
            yield

    def _lock_key(self, name: str) -> int:
        digest = hashlib.sha256(f"segflow.catalog:{self._namespace}:{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def close(self) -> None:
        self.con.close()


def open_catalog_db(target: CatalogTarget, *, sqlite: str, postgres: tuple[str, ...]) -> CatalogDB:
    """Open the catalog at ``target`` and create a store's tables: ``sqlite`` (a script) on a
    file, ``postgres`` (``CREATE ... IF NOT EXISTS`` statements) in the shared schema.

    Raises :class:`~segflow.errors.ConfigError` when psycopg is missing and
    :class:`~segflow.db.postgres.SharedStoreUnavailable` when the shared database cannot be
    reached.
    """
    if isinstance(target, SharedCatalog):

        def reopen() -> Any:
            return connect_shared(target.dsn, target.schema, ddl=postgres)

        return CatalogDB(reopen(), "postgres", namespace=target.schema, reopen=reopen)
    con = connect(target)
    con.executescript(sqlite)
    return CatalogDB(con, "sqlite")
