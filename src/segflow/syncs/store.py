"""Sync definitions, their credentials (encrypted), cursors and progress: ``DATA_DIR/syncs.sqlite``.

A credential (an API token, or :class:`~segflow.syncs.auth.Credential`'s parts) is encrypted at rest with the data directory's
:class:`~segflow.activate.secretbox.SecretBox`, as webhook secrets are; listings show its
fingerprint only. A cursor row is written only by :meth:`SyncStore.commit_cursor`, which the
runner calls after the page's events are durable in the log.

>>> import tempfile
>>> from segflow.activate.secretbox import SecretBox
>>> d = tempfile.mkdtemp()
>>> store = SyncStore(d + "/syncs.sqlite", box=SecretBox.open(d))
>>> sync = store.create(SyncDefinition(name="crm", vendor="hubspot", source="crm"), "pat-123")
>>> store.credential("crm"), store.cursor("crm", "contacts")
('pat-123', None)
>>> store.commit_cursor("crm", "contacts", "1704067200000", at_ms=1)
>>> store.cursor("crm", "contacts")
'1704067200000'
>>> store.close()
"""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import urlparse

import msgspec

from segflow.activate.secretbox import SecretBox, fingerprint
from segflow.db.sqlite import connect, create_schema
from segflow.syncs import auth
from segflow.syncs.auth import Credential
from segflow.syncs.exceptions import SyncExists, SyncInvalid, UnknownSync
from segflow.syncs.vendors import VENDORS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS syncs(name TEXT PRIMARY KEY, definition BLOB NOT NULL,
    credential TEXT NOT NULL, fingerprint TEXT NOT NULL, created_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursors(sync TEXT NOT NULL, object TEXT NOT NULL, cursor TEXT NOT NULL,
    committed_at_ms INTEGER NOT NULL, boundary BLOB NOT NULL DEFAULT '[]',
    PRIMARY KEY(sync, object));
CREATE TABLE IF NOT EXISTS progress(sync TEXT PRIMARY KEY, status BLOB NOT NULL);
"""
# the credential's parts beside its token (an email, a refresh token...), encrypted JSON; added
# after the first release: a store made before has the column added when opened
_ADDED_COLUMNS = (("syncs", "secrets", "TEXT NOT NULL DEFAULT ''"),)


class SyncDefinition(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What to pull, from where, into which source, how often."""

    name: str
    vendor: str  # hubspot | zendesk | stripe | salesforce
    source: str  # the segflow source the events are stored under (its dedupe scope)
    base_url: str | None = None  # default: the vendor's (tests point it at loopback)
    objects: tuple[str, ...] = ()  # default: every object of the vendor
    interval_s: float = 900.0  # how often `serve` runs it

    def object_names(self) -> tuple[str, ...]:
        return self.objects or tuple(VENDORS[self.vendor].objects)

    def url(self) -> str:
        return self.base_url or VENDORS[self.vendor].base_url


class SyncProgress(msgspec.Struct, kw_only=True):
    """A sync's progress: the running or last run, and the last error."""

    state: str = "idle"  # idle | running | ok | failed
    object: str | None = None  # the object being pulled
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    last_success_ms: int | None = None
    requested_at_ms: int | None = None  # a run asked for (API, console): the schedule runs it
    objects: int = 0  # objects read in the running or last run
    stored: int = 0  # events stored in it
    duplicates: int = 0  # events it found already stored
    refused: int = 0  # events refused (dead letters)
    total_objects: int = 0  # since the sync was created
    last_error: str | None = None
    last_error_at_ms: int | None = None


class SyncInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A sync as listings show it: no credential, its fingerprint."""

    definition: SyncDefinition
    fingerprint: str
    created_at_ms: int
    cursors: dict[str, str]
    progress: SyncProgress


def validate(definition: SyncDefinition) -> SyncDefinition:
    """Raise :class:`SyncInvalid` naming the field and the reason."""
    if not definition.name.strip() or "/" in definition.name:
        raise SyncInvalid("name", "a non-empty name without '/' is required")
    vendor = VENDORS.get(definition.vendor)
    if vendor is None:
        raise SyncInvalid("vendor", f"one of {', '.join(sorted(VENDORS))}")
    unknown = [o for o in definition.objects if o not in vendor.objects]
    if unknown:
        raise SyncInvalid("objects", f"{unknown} not among {', '.join(vendor.objects)}")
    if not definition.source.strip():
        raise SyncInvalid("source", "the segflow source to store the events under")
    if definition.base_url is not None:
        url = urlparse(definition.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise SyncInvalid("base_url", "an http(s) URL")
    if not definition.interval_s >= 1:
        raise SyncInvalid("interval_s", "at least 1 second")
    return definition


class SyncStore:
    """See the module docstring. Thread-safe."""

    def __init__(self, path: str | Path, *, box: SecretBox) -> None:
        self._con = connect(path)  # WAL, synchronous=FULL, a busy timeout
        create_schema(self._con, _SCHEMA, added=_ADDED_COLUMNS)
        self._box = box
        self._lock = threading.Lock()

    def create(
        self, definition: SyncDefinition, credential: str | Credential, *, at_ms: int = 0
    ) -> SyncInfo:
        """Add a sync with its API credential (encrypted before it is stored): a token, or a
        :class:`Credential` (Zendesk API token + email, Salesforce's refresh flow)."""
        validate(definition)
        if isinstance(credential, str):
            credential = Credential(token=credential)
        auth.validate(definition.vendor, credential)
        secrets = credential.secrets()
        with self._lock:
            if self._con.execute("SELECT 1 FROM syncs WHERE name=?", (definition.name,)).fetchone():
                raise SyncExists(f"a sync named {definition.name!r} exists")
            self._con.execute(
                "INSERT INTO syncs(name, definition, credential, fingerprint, created_at_ms,"
                " secrets) VALUES(?,?,?,?,?,?)",
                (
                    definition.name,
                    msgspec.json.encode(definition),
                    self._box.encrypt(credential.token),
                    fingerprint(credential.token or credential.refresh_token or ""),
                    at_ms,
                    self._box.encrypt(msgspec.json.encode(secrets).decode()) if secrets else "",
                ),
            )
        return self.get(definition.name)

    def remove(self, name: str) -> None:
        self.get(name)
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            for table, column in (("syncs", "name"), ("cursors", "sync"), ("progress", "sync")):
                self._con.execute(f"DELETE FROM {table} WHERE {column}=?", (name,))
            self._con.execute("COMMIT")

    def names(self) -> list[str]:
        with self._lock:
            rows = self._con.execute("SELECT name FROM syncs ORDER BY name").fetchall()
        return [r[0] for r in rows]

    def get(self, name: str) -> SyncInfo:
        """A sync, its cursors and progress (raises :class:`UnknownSync`)."""
        with self._lock:
            row = self._con.execute(
                "SELECT definition, fingerprint, created_at_ms FROM syncs WHERE name=?", (name,)
            ).fetchone()
            cursors = self._con.execute(
                "SELECT object, cursor FROM cursors WHERE sync=?", (name,)
            ).fetchall()
        if row is None:
            raise UnknownSync(f"no sync named {name!r}", details={"name": name})
        return SyncInfo(
            definition=msgspec.json.decode(row[0], type=SyncDefinition),
            fingerprint=row[1],
            created_at_ms=row[2],
            cursors=dict(cursors),
            progress=self.progress(name),
        )

    def list(self) -> list[SyncInfo]:
        return [self.get(n) for n in self.names()]

    def credential(self, name: str) -> str:
        """The sync's token (decrypted): see :meth:`auth` for the whole credential."""
        return self.auth(name).token

    def auth(self, name: str) -> Credential:
        """The sync's whole credential (decrypted)."""
        with self._lock:
            row = self._con.execute(
                "SELECT credential, secrets FROM syncs WHERE name=?", (name,)
            ).fetchone()
        if row is None:
            raise UnknownSync(f"no sync named {name!r}", details={"name": name})
        parts = msgspec.json.decode(self._box.decrypt(row[1])) if row[1] else {}
        return Credential(token=self._box.decrypt(row[0]), **parts)

    def replace_token(self, name: str, token: str) -> None:
        """Store a new access token (a Salesforce refresh's), encrypted like the first."""
        with self._lock:
            found = self._con.execute(
                "UPDATE syncs SET credential=? WHERE name=?", (self._box.encrypt(token), name)
            ).rowcount
        if not found:
            raise UnknownSync(f"no sync named {name!r}", details={"name": name})

    def cursor(self, name: str, obj: str) -> str | None:
        return self.cursor_state(name, obj)[0]

    def cursor_state(self, name: str, obj: str) -> tuple[str | None, frozenset[str]]:
        """``obj``'s cursor and the versions already read at it (see ``syncs.vendors``)."""
        with self._lock:
            row = self._con.execute(
                "SELECT cursor, boundary FROM cursors WHERE sync=? AND object=?", (name, obj)
            ).fetchone()
        if row is None:
            return None, frozenset()
        return str(row[0]), frozenset(msgspec.json.decode(row[1], type=list[str]))

    def commit_cursor(
        self,
        name: str,
        obj: str,
        cursor: str,
        *,
        at_ms: int,
        boundary: frozenset[str] = frozenset(),
        progress: SyncProgress | None = None,
    ) -> None:
        """Store ``obj``'s cursor (and ``progress``, in the same synced transaction): call only
        once the events it covers are durable."""
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.execute(
                    "INSERT INTO cursors VALUES(?,?,?,?,?) ON CONFLICT(sync, object)"
                    " DO UPDATE SET cursor=excluded.cursor, committed_at_ms=excluded.committed_at_ms,"
                    " boundary=excluded.boundary",
                    (name, obj, cursor, at_ms, msgspec.json.encode(sorted(boundary))),
                )
                if progress is not None:
                    self._save(name, progress)
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def reset_cursors(self, name: str) -> None:
        """Forget the cursors: the next run reads everything again (stored once, by id)."""
        with self._lock:
            self._con.execute("DELETE FROM cursors WHERE sync=?", (name,))

    def progress(self, name: str) -> SyncProgress:
        with self._lock:
            row = self._con.execute("SELECT status FROM progress WHERE sync=?", (name,)).fetchone()
        return SyncProgress() if row is None else msgspec.json.decode(row[0], type=SyncProgress)

    def save_progress(self, name: str, progress: SyncProgress) -> None:
        with self._lock:
            self._save(name, progress)

    def _save(self, name: str, progress: SyncProgress) -> None:
        self._con.execute(
            "INSERT INTO progress VALUES(?,?) ON CONFLICT(sync) DO UPDATE SET status=excluded.status",
            (name, msgspec.json.encode(progress)),
        )

    def request_run(self, name: str, *, at_ms: int) -> SyncProgress:
        """Ask the schedule (in ``serve``'s pipeline process) to run ``name`` at its next look."""
        self.get(name)
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            row = self._con.execute("SELECT status FROM progress WHERE sync=?", (name,)).fetchone()
            progress = (
                SyncProgress() if row is None else msgspec.json.decode(row[0], type=SyncProgress)
            )
            progress.requested_at_ms = at_ms
            self._con.execute(
                "INSERT INTO progress VALUES(?,?) ON CONFLICT(sync) DO UPDATE SET status=excluded.status",
                (name, msgspec.json.encode(progress)),
            )
            self._con.execute("COMMIT")
        return progress

    def close(self) -> None:
        self._con.close()


def summary(data_dir: str | Path) -> dict[str, dict[str, object]]:
    """Every sync's progress and last error, by name (``/api/v1/status``, ``segflow status``);
    empty without ``syncs.sqlite``. Opens no secret.

    >>> import tempfile
    >>> summary(tempfile.mkdtemp())
    {}
    """
    path = Path(data_dir) / "syncs.sqlite"
    if not path.exists():
        return {}
    store = SyncStore(path, box=SecretBox(key_file=Path(data_dir) / "secrets.key"))
    try:
        return report(store)
    finally:
        store.close()


def report(store: SyncStore) -> dict[str, dict[str, object]]:
    """Every sync of ``store``: its vendor, progress and last error, by name."""
    return {
        i.definition.name: {"vendor": i.definition.vendor, **msgspec.to_builtins(i.progress)}
        for i in store.list()
    }


def open_store(data_dir: str | Path, secrets_key: str | None = None) -> SyncStore:
    """The store of a data directory (``DIR/syncs.sqlite``, credentials under ``DIR/secrets.key``
    or ``activate.secrets_key``)."""
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return SyncStore(Path(data_dir) / "syncs.sqlite", box=SecretBox.open(data_dir, secrets_key))
