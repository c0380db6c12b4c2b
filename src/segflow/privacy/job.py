"""One regulation, step by step: each store's owner is asked to do its part, and confirms.

The processor owns ``state.sqlite`` and the warehouse loader owns ``warehouse.duckdb``; the job
never writes their files. It queues commands that they apply in their own loops, in their own
transactions, after a **barrier** (they have consumed the log up to where the regulation
started), and waits for each to confirm. The log, the delivery store and the catalog are
shared stores with their own locks; the job calls them directly.

Steps (``Regulation.step``), every one idempotent, so a regulation interrupted by a crash
resumes from the start of its steps with the working data it saved (docs/privacy.md):

==========  ===================================================================================
hold        the named identifiers are *held*: new events carrying them are dropped (collector,
            processor, loader) while the regulation runs; ``suppress*`` also stores them as
            suppressions
retire      processor: find the profiles, hold every identifier they have, and (deletions) emit
            ``exited`` for each segment they are in; the profiles are marked ``erasing``
notify      processor: the timeline's log positions; the loader starts deleting the profile's
            rows in every warehouse table (its events by log position) in its thread; the
            delivery feeder has queued the exits; deletion notices are queued; the job waits
            (``privacy.notify_timeout_s``) for the profile's deliveries to be sent
erase       the events leave the log (by position; on Kafka, the keys of every identifier of
            the person are deleted: crypto-shredding), with matching dead letters; queue entries,
            attempts, sent state; file destinations in the data directory are scrubbed; the
            loader confirms the warehouse
state       processor: delete the profiles, identity nodes, timelines, outbox changes, ...
sweep       a second barrier: events in flight when the hold began are dropped and erased
            (on Kafka, keys made meanwhile by in-flight events are deleted again)
compact     (runner, once for every regulation erased) rewrite the stores without free space
==========  ===================================================================================
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec

from segflow.activate import erase as activate_erase
from segflow.activate.store import DeliveryStore
from segflow.catalog.audit import AuditLog
from segflow.clock import Clock
from segflow.config import PrivacySettings
from segflow.identity import Identifier
from segflow.log.sqlite import SqliteEventLog
from segflow.privacy.exceptions import StepTimeout
from segflow.privacy.identifiers import hashes
from segflow.privacy.store import HashedIdentifier, PrivacyStore, Regulation, Work
from segflow.privacy.suppression import SuppressionList
from segflow.stream import erase as state_erase
from segflow.stream.batch import Batch
from segflow.stream.processor import Processor
from segflow.warehouse import erase as warehouse_erase
from segflow.warehouse.loader import WarehouseLoader

log = logging.getLogger(__name__)
_T = TypeVar("_T")
CHANGE_FEED_CURSOR = "change_feed"  # segflow.activate.feeder.CURSOR


class ShreddingLog(Protocol):
    """A log whose records cannot be deleted one by one but are sealed under per-person keys
    (the Kafka driver, :mod:`segflow.log.shredding`): erasing is deleting the keys."""

    def submit(self, events: Sequence[Any]) -> Future[Any]: ...

    def readable_ends(self) -> dict[int, int]: ...

    def shred(self, identifiers: Sequence[tuple[str, str]]) -> int: ...

    def shred_dead_letters(self, holds: Callable[[bytes], bool]) -> int: ...

    def compact(self) -> None: ...


@dataclass
class Owners:
    """The parts a regulation asks: each store's owner in this process."""

    log: SqliteEventLog | ShreddingLog
    processor: Processor
    loader: WarehouseLoader
    delivery: DeliveryStore
    data_dir: Path


class RegulationJob:
    """Runs regulations (:meth:`run`); the runner calls it from its own thread."""

    def __init__(
        self,
        store: PrivacyStore,
        suppressions: SuppressionList,
        owners: Owners,
        settings: PrivacySettings,
        clock: Clock,
        audit: AuditLog | None = None,
    ) -> None:
        self.store = store
        self.suppressions = suppressions
        self.owners = owners
        self.settings = settings
        self.clock = clock
        self.audit = audit

    # -- the regulation --------------------------------------------------------------------
    def run(self, reg: Regulation) -> Regulation:
        """Run (or resume) ``reg`` up to its erasure; returns it ``finished``, ``failed`` or
        at step ``compact`` (the runner compacts then finishes it)."""
        if reg.step == "compact":
            return reg
        work = self.store.work(reg.id)
        reg.status, reg.attempts = "running", reg.attempts + 1
        reg.started_ms = reg.started_ms or self.clock.now_ms()
        self._save(reg, work, "hold")
        try:
            self._steps(reg, work)
        except Exception as exc:
            log.exception("regulation %s failed", reg.id)
            return self.fail(reg, exc)
        if reg.type == "suppress" or not self.settings.compact_after_regulation:
            return self.finish(reg)
        self._save(reg, work, "compact")
        self.store.save(reg, None)  # compaction needs no identifier: forget them now
        self.suppressions.release(reg.id)
        return reg

    def resume_holds(self, regs: Iterable[Regulation]) -> None:
        """Hold again the identifiers of regulations that were running (after a restart)."""
        key = self.store.key()
        for reg in regs:
            work = self.store.work(reg.id)
            idents = [Identifier(*i) for i in (*work.identifiers, *work.expanded)]
            self.suppressions.hold(reg.id, hashes(key, idents))

    def finish(self, reg: Regulation, compacted_ms: int | None = None) -> Regulation:
        reg.status, reg.step, reg.finished_ms = "finished", "finished", self.clock.now_ms()
        if compacted_ms is not None:
            reg.result["compacted_ms"] = compacted_ms
        self._end(reg)
        return reg

    def fail(self, reg: Regulation, exc: BaseException) -> Regulation:
        reg.status, reg.finished_ms = "failed", self.clock.now_ms()
        reg.error = f"{reg.step}: {exc}"
        self._end(reg)
        return reg

    def _end(self, reg: Regulation) -> None:
        self.store.save(reg, None)  # the identifiers in clear are gone with the working data
        self.suppressions.release(reg.id)  # suppress*: the stored suppressions stay
        if self.audit is not None:
            after = {"status": reg.status, "result": reg.result, "error": reg.error}
            self.audit.record(reg.actor, f"regulation.{reg.status}", reg.id, None, after)

    def _save(self, reg: Regulation, work: Work, step: str) -> None:
        reg.step = step
        reg.result = {
            "counts": work.counts,
            "profiles": len(work.profile_ids),
            "identifiers": len(work.expanded or work.identifiers),
        }
        self.store.save(reg, work)

    # -- steps -----------------------------------------------------------------------------
    def _steps(self, reg: Regulation, work: Work) -> None:
        named = [Identifier(*i) for i in work.identifiers]
        self._hold(reg, named)
        barrier = self._barrier()
        self._save(reg, work, "retire")
        self._retire(reg, work, named, barrier)
        if reg.type == "suppress":
            return
        self._save(reg, work, "notify")
        positions = self._wait(
            self.owners.processor.submit(
                functools.partial(_positions, profile_ids=work.profile_ids)
            ),
            "processor",
        )
        # the loader erases the warehouse in its thread meanwhile (DuckDB's commit of many
        # deletions is the longest part: BENCHMARKS.md, "Privacy")
        warehouse = self._erase_warehouse(work, positions, barrier)
        self._notify(reg, work)
        self._save(reg, work, "erase")
        self._erase_log(work, positions)
        self._erase_delivery(work)
        _add(work.counts, self._wait(warehouse, "warehouse loader"), "warehouse.")
        self._save(reg, work, "state")
        erase = functools.partial(
            _erase_state, profile_ids=work.profile_ids, identifiers=work.expanded
        )
        _add(work.counts, self._wait(self.owners.processor.submit(erase), "processor"), "state.")
        self._save(reg, work, "sweep")
        sweep = self._owned(self._barrier())
        self._wait(self.owners.processor.submit(_noop, after=sweep), "processor")
        if not isinstance(self.owners.log, SqliteEventLog):  # keys an in-flight event made
            self._count(work, "log.keys", self.owners.log.shred(work.expanded))

    def _hold(self, reg: Regulation, idents: Sequence[Identifier]) -> None:
        key = self.store.key()
        self.suppressions.hold(reg.id, hashes(key, idents))
        if reg.type != "delete":
            self._suppress(reg, idents)

    def _suppress(self, reg: Regulation, idents: Sequence[Identifier]) -> None:
        key = self.store.key()
        hashed = [
            HashedIdentifier(i.type, h) for i, h in zip(idents, hashes(key, idents), strict=True)
        ]
        self.store.suppress(hashed, reg.id)
        self.suppressions.add(h.hash for h in hashed)

    def _barrier(self) -> dict[int, int]:
        """The log's end offsets once every append queued before now is on disk (on Kafka,
        less the erased records at the ends, which no consumer's offset passes)."""
        log = self.owners.log
        log.submit(()).result()
        return log.end_offsets() if isinstance(log, SqliteEventLog) else log.readable_ends()

    def _owned(self, barrier: Mapping[int, int]) -> dict[int, int]:
        """The part of a barrier the processor can pass (the partitions it owns)."""
        owned = set(self.owners.processor.owned_partitions)
        return {p: o for p, o in barrier.items() if p in owned}

    def _retire(
        self, reg: Regulation, work: Work, named: Sequence[Identifier], barrier: Mapping[int, int]
    ) -> None:
        known = [*named, *(Identifier(*i) for i in work.expanded)]
        retire = functools.partial(_retire, identifiers=known, exits=reg.type != "suppress")
        after = self._owned(barrier)
        found = self._wait(self.owners.processor.submit(retire, after=after), "processor")
        work.profile_ids = sorted({*work.profile_ids, *found.profile_ids})
        work.expanded = sorted({*work.expanded, *found.identifiers})
        work.identities.update(found.identities)
        work.exit_seq = max(work.exit_seq, found.exit_seq)
        work.counts["exits"] = work.counts.get("exits", 0) + found.exits
        self._save(reg, work, "retire")
        expanded = [Identifier(*i) for i in work.expanded]
        self.suppressions.hold(reg.id, hashes(self.store.key(), expanded))
        if reg.type != "delete":
            self._suppress(reg, expanded)

    def _notify(self, reg: Regulation, work: Work) -> None:
        deadline = time.monotonic() + self.settings.notify_timeout_s
        store = self.owners.delivery
        fed = _poll(lambda: store.cursor(CHANGE_FEED_CURSOR) >= work.exit_seq, deadline)
        if fed:
            now_ms = self.clock.now_ms()
            notices = activate_erase.queue_deletion_notices(store, work.identities, reg.id, now_ms)
            work.counts["notices"] = max(work.counts.get("notices", 0), notices)
        _poll(lambda: activate_erase.pending(store, work.profile_ids) == 0, deadline)
        work.counts["undelivered"] = activate_erase.pending(store, work.profile_ids)
        if not fed:
            work.counts["exits_not_queued"] = 1

    def _erase_warehouse(
        self, work: Work, positions: Sequence[tuple[int, int]], barrier: Mapping[int, int]
    ) -> Future[dict[str, int]]:
        erase = functools.partial(
            warehouse_erase.erase,
            profile_ids=work.profile_ids,
            identifiers=work.expanded,
            positions=positions,
        )
        return self.owners.loader.submit(erase, after=barrier, after_change=work.exit_seq)

    def _erase_log(self, work: Work, positions: Sequence[tuple[int, int]]) -> None:
        values = sorted({v for _, v in work.expanded})
        log = self.owners.log
        if not isinstance(log, SqliteEventLog):  # Kafka: crypto-shredding (docs/privacy.md)
            self._count(work, "log.keys", log.shred(work.expanded))
            self._count(work, "log.dead_letters", log.shred_dead_letters(_json_holds(values)))
            return
        self._count(work, "log.records", log.erase(positions))
        needles = [v.encode() for v in values]
        self._count(work, "log.dead_letters", log.erase_dead_letters(_json_holds(values), needles))

    @staticmethod
    def _count(work: Work, name: str, n: int) -> None:
        work.counts[name] = work.counts.get(name, 0) + n

    def _erase_delivery(self, work: Work) -> None:
        store = self.owners.delivery
        _add(work.counts, activate_erase.erase_deliveries(store, work.profile_ids), "delivery.")
        values = [v for _, v in work.expanded]
        rows = activate_erase.scrub_files(store, self.owners.data_dir, work.profile_ids, values)
        work.counts["files.rows"] = work.counts.get("files.rows", 0) + rows

    def _wait(self, future: Future[_T], owner: str) -> _T:
        try:
            return future.result(timeout=self.settings.step_timeout_s)
        except FutureTimeout as exc:
            raise StepTimeout(
                f"the {owner} did not confirm within {self.settings.step_timeout_s:g} s"
                " (is it running?)",
                details={"owner": owner},
            ) from exc


# -- processor commands (run in the processor's thread) -----------------------------------


def _retire(
    batch: Batch, now_ms: int, *, identifiers: Sequence[Identifier], exits: bool
) -> state_erase.Retired:
    return state_erase.retire(batch, identifiers, now_ms, exits=exits)


def _positions(batch: Batch, now_ms: int, *, profile_ids: Sequence[str]) -> list[tuple[int, int]]:
    return state_erase.timeline_positions(batch, profile_ids)


def _erase_state(
    batch: Batch, now_ms: int, *, profile_ids: Sequence[str], identifiers: Sequence[tuple[str, str]]
) -> dict[str, int]:
    return state_erase.erase_profiles(batch, profile_ids, identifiers)


def _noop(batch: Batch, now_ms: int) -> None:
    return None


# -- helpers ----------------------------------------------------------------------------------


def _poll(predicate: Callable[[], bool], deadline: float, interval_s: float = 0.05) -> bool:
    """Poll an outcome of another thread until ``deadline`` (monotonic seconds)."""
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def _add(counts: dict[str, int], found: dict[str, int], prefix: str) -> None:
    for name, n in found.items():
        counts[prefix + name] = counts.get(prefix + name, 0) + n


def _json_holds(values: Sequence[str]) -> Callable[[bytes], bool]:
    """Does a refused payload hold one of ``values`` (in any JSON string or number of it,
    case-insensitively; values shorter than 4 characters only as a whole value)? A payload
    that is not JSON: as a substring."""
    wanted = {v.lower() for v in values}
    long = [v for v in wanted if len(v) >= 4]

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            return any(walk(k) or walk(v) for k, v in node.items())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        if isinstance(node, bool) or node is None:
            return False
        text = str(node).strip().lower()
        return text in wanted or any(v in text for v in long)

    def holds(payload: bytes) -> bool:
        try:
            return walk(msgspec.json.decode(payload))
        except msgspec.DecodeError:
            text = payload.decode("utf-8", "replace").lower()
            return any(v in text for v in wanted)

    return holds
