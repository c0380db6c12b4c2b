"""Sources and their write keys, in the catalog (tables ``sources``, ``plan_violations``).

The catalog is ``catalog.sqlite`` or, with ``shared.dsn`` set, shared PostgreSQL tables
(:mod:`segflow.catalogdb`), so collectors on every host authenticate the same write keys.

A write key is shown once, at creation; only its SHA-256 is stored. Keys are 192 random bits,
so a fast hash is safe (no dictionary to attack) and keeps authentication per request cheap;
the stored hash is compared with :func:`hmac.compare_digest`. Keys never appear in logs.

>>> import os, tempfile
>>> cat = SourceCatalog(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"))
>>> source, key = cat.create("web")
>>> cat.authenticate(key) == source, cat.authenticate("nope")
(True, None)
>>> cat.get("web").name
'web'
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path

import msgspec

from segflow.catalogdb import CatalogTarget, open_catalog_db
from segflow.clock import Clock, WallClock
from segflow.collect.exceptions import SourceExists, UnknownSource
from segflow.collect.plans import TrackingPlan
from segflow.collect.webhooks.config import WebhookConfig
from segflow.spec.normalize import NameRules

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS sources(id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " key_hash TEXT NOT NULL UNIQUE, created_at_ms INTEGER NOT NULL, config BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS plan_violations(source_id TEXT NOT NULL, event TEXT NOT NULL,"
    " violation TEXT NOT NULL, count INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,"
    " PRIMARY KEY(source_id, event, violation))",
)
_SCHEMA_POSTGRES = (
    "CREATE TABLE IF NOT EXISTS sources(id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " key_hash TEXT NOT NULL UNIQUE, created_at_ms BIGINT NOT NULL, config BYTEA NOT NULL)",
    "CREATE TABLE IF NOT EXISTS plan_violations(source_id TEXT NOT NULL, event TEXT NOT NULL,"
    " violation TEXT NOT NULL, count BIGINT NOT NULL, last_seen_ms BIGINT NOT NULL,"
    " PRIMARY KEY(source_id, event, violation))",
)


class SourceConfig(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A source's settings: event-name rules (canonical name -> names that mean it), an
    optional tracking plan, and the vendor webhooks it receives (``collect.webhooks``)."""

    event_names: dict[str, list[str]] = {}
    tracking_plan: TrackingPlan | None = None
    webhook: WebhookConfig | None = None


class Source(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    created_at_ms: int
    config: SourceConfig = msgspec.field(default_factory=SourceConfig)

    def name_rules(self) -> NameRules:
        return NameRules(self.config.event_names)


class Violation(msgspec.Struct, frozen=True, kw_only=True):
    event: str
    violation: str
    count: int
    last_seen_ms: int


def hash_key(write_key: str) -> str:
    """The stored form of a write key."""
    return hashlib.sha256(write_key.encode()).hexdigest()


class SourceCatalog:
    """Sources, write keys and tracking-plan violation counts (see module docstring)."""

    def __init__(self, target: CatalogTarget, *, clock: Clock | None = None) -> None:
        self._con = open_catalog_db(target, sqlite=";\n".join(_SCHEMA), postgres=_SCHEMA_POSTGRES)
        self._lock = threading.Lock()
        self._clock = clock or WallClock()
        self._by_hash: dict[str, Source] = {}

    def create(self, name: str, config: SourceConfig | None = None) -> tuple[Source, str]:
        """Create a source; returns it with its write key (the only time the key is seen)."""
        if not name.strip():
            raise UnknownSource("a source needs a name")
        write_key = secrets.token_urlsafe(24)
        source = Source(
            id=f"src_{secrets.token_hex(6)}",
            name=name,
            created_at_ms=self._clock.now_ms(),
            config=config or SourceConfig(),
        )
        with self._lock, self._con.write("sources"):
            if self._con.execute("SELECT 1 FROM sources WHERE name=?", (name,)).fetchone():
                raise SourceExists(
                    f"a source named {name!r} already exists", details={"name": name}
                )
            self._con.execute(
                "INSERT INTO sources VALUES(?,?,?,?,?)",
                (
                    source.id,
                    name,
                    hash_key(write_key),
                    source.created_at_ms,
                    msgspec.json.encode(source.config),
                ),
            )
        return source, write_key

    def _row_to_source(self, row: tuple[str, str, int, bytes]) -> Source:
        return Source(
            id=row[0],
            name=row[1],
            created_at_ms=row[2],
            config=msgspec.json.decode(row[3], type=SourceConfig),
        )

    def get(self, name: str) -> Source:
        """The source named ``name`` (raises :class:`UnknownSource`)."""
        with self._lock:
            row = self._con.execute(
                "SELECT id, name, created_at_ms, config FROM sources WHERE name=?", (name,)
            ).fetchone()
        if row is None:
            raise UnknownSource(f"no source named {name!r}", details={"name": name})
        return self._row_to_source(row)

    def list(self) -> list[Source]:
        with self._lock:
            rows = self._con.execute(
                "SELECT id, name, created_at_ms, config FROM sources ORDER BY name"
            ).fetchall()
        return [self._row_to_source(r) for r in rows]

    def authenticate(self, write_key: str | None) -> Source | None:
        """The source a write key belongs to, or ``None``."""
        if not write_key:
            return None
        digest = hash_key(write_key)
        source = self._by_hash.get(digest)
        if source is not None:
            return source
        with self._lock:
            row = self._con.execute(
                "SELECT id, name, created_at_ms, config, key_hash FROM sources WHERE key_hash=?",
                (digest,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[4], digest):
            return None
        source = self._row_to_source(row[:4])
        self._by_hash[digest] = source
        return source

    def configure(self, name: str, config: SourceConfig) -> Source:
        """Replace a source's config (name rules, tracking plan). Running servers pick it up
        after :meth:`refresh`."""
        source = self.get(name)
        with self._lock:
            self._con.execute(
                "UPDATE sources SET config=? WHERE id=?", (msgspec.json.encode(config), source.id)
            )
        self.refresh()
        return msgspec.structs.replace(source, config=config)

    def refresh(self) -> None:
        """Forget cached sources (they are re-read on next use)."""
        self._by_hash = {}

    def record_violations(self, source_id: str, counts: Mapping[tuple[str, str], int]) -> None:
        """Add to the per-event violation counters."""
        now_ms = self._clock.now_ms()
        rows = [(source_id, ev, v, n, now_ms) for (ev, v), n in counts.items()]
        with self._lock:
            self._con.executemany(
                "INSERT INTO plan_violations VALUES(?,?,?,?,?) ON CONFLICT(source_id, event, violation)"
                " DO UPDATE SET count=plan_violations.count+excluded.count,"
                " last_seen_ms=excluded.last_seen_ms",
                rows,
            )

    def violations(self, name: str) -> builtins.list[Violation]:
        """Violation counts of a source, per event name and violation."""
        source = self.get(name)
        with self._lock:
            rows = self._con.execute(
                "SELECT event, violation, count, last_seen_ms FROM plan_violations WHERE source_id=? ORDER BY event, violation",
                (source.id,),
            ).fetchall()
        return [Violation(event=r[0], violation=r[1], count=r[2], last_seen_ms=r[3]) for r in rows]

    def close(self) -> None:
        self._con.close()


def open_catalog(data_dir: str | Path, *, clock: Clock | None = None) -> SourceCatalog:
    """The SQLite catalog of a data directory (``DIR/catalog.sqlite``)."""
    return SourceCatalog(Path(data_dir) / "catalog.sqlite", clock=clock)
