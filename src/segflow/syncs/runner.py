"""Run a sync: fetch a page -> map it to events -> append them durably -> commit the cursor.

The order is the contract: a cursor moves only after :meth:`Ingestor.ingest` returned, that is
after the page's events are fsynced in the log. A crash (or an exception) anywhere before that
leaves the cursor where it was; the next run reads the same objects again, and their
deterministic message ids make the log store them once. Objects that one API lists newest
first (Stripe) commit their cursor after the last page.

A sync runs in one process at a time (a lock file beside ``syncs.sqlite``): ``segflow sources
sync run`` while ``serve`` runs the same sync answers "already running".

>>> import tempfile
>>> from segflow.collect.catalog import SourceCatalog
>>> from segflow.collect.ingest import Ingestor
>>> from segflow.log.sqlite import SqliteEventLog
>>> from segflow.syncs.store import open_store
>>> d = tempfile.mkdtemp()
>>> log = SqliteEventLog(d + "/log.sqlite")
>>> ingestor = Ingestor(log, SourceCatalog(d + "/catalog.sqlite"))
>>> runner = SyncRunner(open_store(d), ingestor)
>>> runner.due(), log.close()
([], None)
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from segflow.background import BackgroundLoop
from segflow.clock import Clock, WallClock
from segflow.collect.catalog import Source
from segflow.collect.ingest import Ingestor
from segflow.errors import ConflictError, SegflowError
from segflow.log.base import DeadLetter
from segflow.syncs import fetch
from segflow.syncs.mapping import to_messages
from segflow.syncs.store import SyncProgress, SyncStore
from segflow.syncs.vendors import VENDORS, ObjectSpec, Record, Vendor

logger = logging.getLogger("segflow.syncs")


@dataclass
class SyncResult:
    """What one run did (the CLI prints it, the API shows it as progress)."""

    name: str
    objects: int = 0
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    cursors: dict[str, str] = field(default_factory=dict)


class SyncRunner:
    """Runs the syncs of a :class:`SyncStore` into an :class:`Ingestor`'s log."""

    def __init__(
        self,
        store: SyncStore,
        ingestor: Ingestor,
        *,
        clock: Clock | None = None,
        retries: fetch.Retries = fetch.Retries(),
        lock_dir: str | Path | None = None,
    ) -> None:
        self.store = store
        self.ingestor = ingestor
        self.clock = clock or WallClock()
        self.retries = retries
        self.lock_dir = Path(lock_dir) if lock_dir is not None else None

    def run(self, name: str, *, full: bool = False) -> SyncResult:
        """Pull every object of sync ``name`` changed since its cursors (``full``: from the
        start; what is stored already is not stored again). Progress and the last error are
        kept in the store; an error is raised after it is recorded."""
        info = self.store.get(name)
        definition = info.definition
        vendor = VENDORS[definition.vendor]
        result = SyncResult(name)
        before = info.progress
        progress = SyncProgress(
            state="running",
            started_at_ms=self.clock.now_ms(),
            last_success_ms=before.last_success_ms,
            total_objects=before.total_objects,
            last_error=before.last_error,
            last_error_at_ms=before.last_error_at_ms,
        )
        with self._exclusive(name):
            if full:
                self.store.reset_cursors(name)
            self.store.save_progress(name, progress)
            try:
                source = self.ingestor.source(definition.source)  # UnknownSource
                with fetch.client(
                    definition.url(),
                    self.store.auth(name),
                    self.retries,
                    vendor=vendor.name,
                    on_refresh=lambda token: self.store.replace_token(name, token),
                ) as api:
                    for obj in definition.object_names():
                        progress.object = obj
                        spec = vendor.objects[obj]
                        for part in (spec, spec.deletions):
                            if part is not None:
                                self._object(name, vendor, part, source, api, result, progress)
            except Exception as exc:
                progress.state, progress.object = "failed", None
                progress.finished_at_ms = progress.last_error_at_ms = self.clock.now_ms()
                progress.last_error = _describe(exc)
                self.store.save_progress(name, progress)
                raise
        progress.state, progress.object = "ok", None
        progress.finished_at_ms = progress.last_success_ms = self.clock.now_ms()
        self.store.save_progress(name, progress)
        return result

    def _object(
        self,
        name: str,
        vendor: Vendor,
        spec: ObjectSpec,
        source: Source,
        api: Any,
        result: SyncResult,
        progress: SyncProgress,
    ) -> None:
        start, seen = self.store.cursor_state(name, spec.cursor_key)
        cursor, boundary = start, set(seen)
        while True:  # one query, or more where the API caps a query's results (HubSpot)
            asked, skip = cursor, frozenset(boundary)
            read, capped = 0, False
            for page, fetched in fetch.pages(api, vendor, spec, asked):
                records = _unseen(spec, page, asked, skip)
                owners = fetch.associations(api, vendor, spec, records)
                self._store_page(vendor, spec, source, records, result, owners)  # durable
                result.duplicates += _calls(spec, page) - _calls(spec, records)
                moved = spec.next_cursor(cursor, page, fetched)
                if spec.cursor_of is not None and moved is not None:
                    if moved != cursor:
                        boundary = set()
                    boundary.update(
                        _version(spec, r) for r in page if spec.cursor_of(r) == int(moved)
                    )
                cursor = moved
                progress.objects += len(page)
                progress.total_objects += len(page)
                progress.stored, progress.duplicates = result.stored, result.duplicates
                progress.refused = result.refused
                if spec.commit_each_page and cursor is not None:
                    self._commit(name, spec, cursor, boundary, progress)
                else:
                    self.store.save_progress(name, progress)
                read += len(page)
                if spec.query_limit is not None and read >= spec.query_limit:
                    capped = True  # ask again from the cursor before the API refuses the page
                    break
            if not capped or cursor == asked:
                break
        if cursor is not None and (cursor != start or boundary != seen):
            self._commit(name, spec, cursor, boundary)
            result.cursors[spec.cursor_key] = cursor

    def _commit(
        self,
        name: str,
        spec: ObjectSpec,
        cursor: str,
        boundary: set[str],
        progress: SyncProgress | None = None,
    ) -> None:
        at = self.clock.now_ms()
        self.store.commit_cursor(
            name, spec.cursor_key, cursor, at_ms=at, boundary=frozenset(boundary), progress=progress
        )

    def _store_page(
        self,
        vendor: Vendor,
        spec: ObjectSpec,
        source: Source,
        records: list[Record],
        result: SyncResult,
        owners: dict[str, list[str]] | None = None,
    ) -> None:
        received = self.clock.now_ms()
        messages: list[dict[str, Any]] = []
        letters: list[DeadLetter] = []
        for record in records:
            try:
                people = owners.get(spec.id_of(record)) if owners else None
                messages.extend(to_messages(vendor, spec, record, people))
            except (KeyError, TypeError, ValueError) as exc:  # an object without its id...
                letters.append(_dead_letter(source, received, vendor, spec, record, exc))
        if letters:
            self.ingestor.log.submit((), letters).result()
        outcome = self.ingestor.ingest(source, messages, received_at_ms=received)
        result.objects += len(records)
        result.stored += outcome.accepted - outcome.duplicates - outcome.suppressed
        result.duplicates += outcome.duplicates
        result.refused += len(outcome.refused) + len(letters)

    def due(self) -> list[str]:
        """The syncs whose interval has passed since their last run started, or whose run was
        asked for (:meth:`SyncStore.request_run`) since."""
        now = self.clock.now_ms()
        found = []
        for info in self.store.list():
            started = info.progress.started_at_ms
            asked = info.progress.requested_at_ms
            if (
                started is None
                or now - started >= info.definition.interval_s * 1000
                or (asked is not None and asked >= started)
            ):
                found.append(info.definition.name)
        return found

    @contextlib.contextmanager
    def _exclusive(self, name: str) -> Iterator[None]:
        if self.lock_dir is None:
            yield
            return
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_dir / f"sync-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConflictError(
                    f"sync {name!r} is already running", details={"name": name}
                ) from None
            yield
        finally:
            os.close(fd)


def _calls(spec: ObjectSpec, records: list[Record]) -> int:
    """The messages of ``records`` (a person: identify + track, unless deleted; one track per
    associated person is not counted here)."""
    return sum(2 if spec.person and not spec.deleted_of(r) else 1 for r in records)


def _version(spec: ObjectSpec, record: Record) -> str:
    return f"{spec.id_of(record)}@{spec.version_of(record)}"


def _unseen(
    spec: ObjectSpec, page: list[Record], cursor: str | None, seen: frozenset[str]
) -> list[Record]:
    """The page without the versions read at the cursor by the last run (and, where the API
    cannot filter by the cursor, without those before it)."""
    if spec.cursor_of is None or cursor is None:
        return page
    at, key = int(cursor), spec.cursor_of
    if not spec.api_filters:
        page = [r for r in page if (key(r) or 0) >= at]
    return [r for r in page if key(r) != at or _version(spec, r) not in seen]


def _describe(exc: Exception) -> str:
    if isinstance(exc, SegflowError):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _dead_letter(
    source: Source, received: int, vendor: Vendor, spec: ObjectSpec, record: Record, exc: Exception
) -> DeadLetter:
    return DeadLetter(
        source_id=source.id,
        received_at_ms=received,
        field=f"{vendor.name}.{spec.name}",
        reason=f"cannot map the object: {type(exc).__name__}: {exc}",
        payload=msgspec.json.encode(record),
        message_id=None,
    )


class SyncSchedule(BackgroundLoop):
    """Inside ``serve``: runs each sync when its interval has passed; :meth:`wake` checks now.
    A failed run is recorded in the sync's progress and tried again at its next interval."""

    name = "syncs"
    interval_s = 5.0

    def __init__(self, runner: SyncRunner) -> None:
        super().__init__()
        self.runner = runner

    def tick(self) -> None:
        for name in self.runner.due():
            try:
                self.runner.run(name)
            except SegflowError as exc:
                logger.warning("sync %s failed: %s", name, _describe(exc))
            except Exception:
                logger.exception("sync %s failed", name)
