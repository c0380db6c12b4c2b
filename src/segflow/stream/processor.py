"""The stream processor: consume the log, attribute events to profiles, fire timers.

Each batch (up to ``batch_size`` records of every owned partition) runs in one state
transaction that also stores the partitions' next offsets and the changes it emitted, so a crash anywhere neither loses nor double-counts an
event. Partitions are processed in a fixed order with a fixed batch size, so a replay from
offset 0 (or a restart after a crash) walks the same batches and reproduces the same state.

>>> from segflow.stream.state import MemoryStateStore
>>> from segflow.clock import ManualClock
>>> class EmptyLog:
...     partitions = 1
...     def read(self, partition, offset, max_records=1000): return []
>>> Processor(EmptyLog(), MemoryStateStore(), clock=ManualClock(0)).run_once()
0
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from segflow.background import BackgroundLoop
from segflow.clock import Clock, WallClock
from segflow.errors import NotFoundError
from segflow.identity import Identifier, IdentityRules
from segflow.log.base import LogReader, Record
from segflow.rules.incremental import SegmentProgram
from segflow.rules.incremental.kernel import compile_kernel
from segflow.stream import backfill, keys
from segflow.stream.attributes import AttributeInbox, AttributeUpdate
from segflow.stream.batch import Batch, WorkingSet, timer_row
from segflow.stream.decode import decoder_for
from segflow.stream.dedupe import SeenIndex
from segflow.stream.evaluator import NullEvaluator, SegmentEvaluator
from segflow.stream.freshness import Freshness
from segflow.stream.garbage import GcPolicy
from segflow.stream.garbage import tune_gc as tune_gc  # where the benchmarks import it from
from segflow.stream.handler import EventHandler
from segflow.stream.live import LiveScoring
from segflow.stream.outbox import StateChangeFeed
from segflow.stream.split import SplitResult, split_profile
from segflow.stream.state.base import StateStore, StateTransaction
from segflow.stream.state.optimistic import StateConflict
from segflow.telemetry.metrics import (
    MEMBERSHIPS,
    PROCESSOR_BATCH,
    PROCESSOR_DUPLICATES,
    PROCESSOR_EVENTS,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")
Command = Callable[[Batch, int], _T]
"""Work applied in the processor's loop, in its own state transaction: ``(batch, now_ms)``."""


ReadableLog = LogReader
"""The part of the log the processor needs (``segflow.log.base.LogReader``; the old name)."""


class Assignment(Protocol):
    """Which partitions this processor owns now (a consumer group's share, which can change)."""

    def partitions(self) -> Sequence[int]: ...


STAGES = ("read", "identity", "rules", "commit", "events")
TIMER_COALESCE_S = 0.005  # an idle processor's shortest wait for a timer: idle_wait_s
BACKFILL_STEP_S = 0.1  # a backfill step's aim (live events wait for it): Processor.backfill_step


class ProcessorSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``group``: consumer group (offsets mirrored to the log for lag monitoring and log
    retention, at most every ``mirror_interval_ms`` and whenever the processor is idle: the
    real offsets commit with the state, so the mirror only trails them); ``partitions``: owned partitions (None = all); ``poll_interval_ms`` bounds timer lateness;
    ``optimistic_tries``: optimistic attempts of a batch before it takes the store's write lock
    (:mod:`segflow.stream.state.optimistic`; for processors sharing one store)."""

    group: str = "processor"
    partitions: tuple[int, ...] | None = None
    batch_size: int = 500
    poll_interval_ms: int = 200
    timer_batch: int = 1000
    mirror_offsets: bool = True
    mirror_interval_ms: int = 1000
    optimistic_tries: int = 0  # > 0: batches run optimistically first (several processors)
    working_profiles: int = 200_000  # committed profiles kept decoded (stores only it writes)
    gc_threshold: int = 100_000  # the cyclic GC's first threshold while running (see tune_gc)
    # while running: each step's survivors frozen out of the collector's walks (GcPolicy)
    gc_freeze: bool = True
    kernel: bool = True  # run rule sets on the compiled kernel when it is built (see native)
    # > 0: drop a record whose message id its partition processed within this window
    # (segflow.stream.dedupe: for logs that can let a duplicate through, e.g. Kafka)
    dedupe_window_ms: int = 0
    # decode only the fields the stages read when the rule set allows (segflow.stream.decode)
    narrow_decode: bool = True


class Processor(BackgroundLoop):
    """Consumes ``log`` into ``store``: ``run_once`` (one batch), or ``start`` / ``stop`` for a
    background thread (a :class:`~segflow.background.BackgroundLoop`: a batch after another
    while there is work, then ``poll_interval_ms`` idle unless :meth:`wake` comes first)."""

    join_s = 10.0

    def __init__(
        self,
        log: LogReader,
        store: StateStore,
        evaluator: SegmentEvaluator | None = None,
        clock: Clock | None = None,
        settings: ProcessorSettings | None = None,
        rules: IdentityRules | None = None,
        assignment: Assignment | None = None,
    ) -> None:
        super().__init__()
        self.name = "processor"  # a segflow.server.services.Service: start() / stop()
        self.log = log
        self.store = store
        self.clock: Clock = clock or WallClock()
        self.settings = settings or ProcessorSettings()
        self.assignment = assignment  # None: ``settings.partitions`` (None: every partition)
        self.handler = EventHandler(
            rules or IdentityRules(), self.native(evaluator or NullEvaluator()), log
        )
        self._pending_evaluator: SegmentEvaluator | None = None
        self._program: SegmentEvaluator | None = evaluator  # as given, before live traits
        self._complete_for: str | None = None  # the rule set the state is backfilled for
        # where the backfill of a changed rule set is (read from any thread: the API, status)
        self.progress = backfill.Progress(running=False)
        self.backfill_stages: dict[str, float] = {}  # seconds per stage (backfill.step; commit)
        self.attributes = AttributeInbox()
        self.live = LiveScoring()  # models scored as profiles change (segflow.stream.live)
        self.freshness = Freshness()  # ack -> committed change, per segment
        self.wall_ms: Callable[[], int] = lambda: (
            time.time_ns() // 1_000_000
        )  # ML scores and clusters, applied between batches
        self._records: dict[int, list[Record]] = {}
        # the evaluator the decoder was chosen for, and the decoder (segflow.stream.decode)
        self._decoder: tuple[object, Callable[[bytes], Any] | None] = (None, None)
        self._unmirrored: dict[int, int] = {}  # offsets committed, not yet mirrored to the log
        self._mirror_seeded: set[int] = set()  # partitions whose stored offset was mirrored
        self._mirrored_at = 0.0
        self.conflicts = 0  # optimistic batches redone because another processor won
        # seconds spent per stage of the event batches (read: the log and decoding; identity:
        # identifiers, profiles, timelines; rules: the evaluator; commit: encoding and the
        # store's write), and how many events they held: what the benchmarks report
        self.stages: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        # committed profiles and owners between transactions, when no other process writes
        self.working = (
            WorkingSet(self.settings.working_profiles)
            if getattr(store, "exclusive", False) is True
            else None
        )
        self._lock = threading.Lock()
        self.interval_s = self.settings.poll_interval_ms / 1000  # idle: the next poll
        self._commands: list[_Pending[Any]] = []
        self._change_listeners: list[Callable[[], None]] = []  # on_changes
        self._next_due_ms: int | None = None  # the earliest timer row (fire_timers)
        # events carrying one of these identifiers are dropped (segflow.privacy suppressions)
        self.blocked: Callable[[Sequence[Identifier]], bool] | None = None
        # message ids processed within the window, for logs that may hold a duplicate
        window = self.settings.dedupe_window_ms
        self.seen = SeenIndex(window) if window > 0 else None
        self._dropped_unerased = True  # positions noted before a restart are erased first
        self._owners_retry_at = 0.0  # when the working set may load every owner again
        self._backfill_limit = 200  # profiles per backfill step (adapted: backfill_step)
        # the cyclic garbage collector while the loop runs (segflow.stream.garbage)
        self.gc_policy = GcPolicy(self.settings.gc_threshold, freeze=self.settings.gc_freeze)

    @property
    def owned_partitions(self) -> Sequence[int]:
        if self.assignment is not None:
            return self.assignment.partitions()
        return self.settings.partitions or tuple(range(self.log.partitions))

    def set_evaluator(self, evaluator: SegmentEvaluator) -> None:
        """Swap the rule set; takes effect at the next batch boundary (thread-safe). A
        compiled rule set gets the live models' feature traits (:mod:`segflow.stream.live`)."""
        self._program = evaluator
        self._hand_over(self.live.extend(evaluator))

    def _hand_over(self, evaluator: SegmentEvaluator) -> None:
        native = self.native(evaluator)
        with self._lock:
            self._pending_evaluator = native
        self.wake()  # its backfill starts now, not when the next event or the poll comes

    def native(self, evaluator: SegmentEvaluator) -> SegmentEvaluator:
        """The evaluator this processor runs for ``evaluator``: a rule set compiled by
        ``segflow.rules.compile_segments`` runs on the compiled kernel (the same answers,
        docs/engine.md) unless ``settings.kernel`` is off or the kernel is not built."""
        if self.settings.kernel and isinstance(evaluator, SegmentProgram):
            return compile_kernel(evaluator)
        return evaluator

    def on_changes(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after each commit that added changes to the outbox (from the
        processor's thread): ``segflow serve`` wakes delivery with it, in this process or,
        through a bell, in another (:mod:`segflow.server.wakeups`), instead of letting it
        poll the change feed."""
        self._change_listeners.append(listener)

    def _changes_committed(self) -> None:
        for listener in self._change_listeners:
            try:
                listener()
            except Exception:  # a wake-up is a hint: the feed's poll still finds the changes
                log.exception("a change listener failed")

    def change_feed(self) -> StateChangeFeed:
        """The committed outbox as a ``segflow.spec.ChangeFeed`` (its own read connection)."""
        return StateChangeFeed(self.store.reader())

    def run_once(self, max_records: int | None = None) -> int:
        """Process up to ``max_records`` per owned partition (all partitions in one transaction,
        so a restart after a crash walks the same batches), then due timers; returns events done."""
        self._swap_evaluator()
        self._load_owners()
        limit = max_records or self.settings.batch_size
        # the backfill step first: on a fresh state (no profiles yet) it completes at once, so
        # the events are then processed under complete rules instead of rebuilt afterwards
        self.backfill_step()
        done = self._process_batch(limit)
        self.erase_dropped()
        self.run_commands()
        self.apply_attributes()
        self.fire_due_timers()
        if not done:
            self.flush_offsets()
        self.gc_policy.after_step()
        return done

    def _load_owners(self) -> None:
        """Hold every owner of the store in the working set when they fit
        (``WorkingSet.complete``: a newcomer's identifiers then cost no read of the store).
        Tried at the first batch, and at most once a minute after the set was cleared (a
        rolled-back batch) or trimmed."""
        working = self.working
        if working is None or working.complete:
            return
        now = time.monotonic()
        if now < self._owners_retry_at:
            return
        self._owners_retry_at = now + 60.0
        reader = self.store.reader()
        try:
            rows = reader.scan(keys.OWNER, "", "\U0010ffff", limit=working.max_owners + 1)
        finally:
            reader.close()
        working.load_owners(rows)

    def backfill_step(self, limit: int | None = None) -> int:
        """Rebuild up to ``limit`` profiles' rule state for a changed rule set (see
        :mod:`segflow.stream.backfill`); returns how many (0 when the state is complete).

        ``None``: as many as take about :data:`BACKFILL_STEP_S` (from the previous steps'
        rate, between 50 and 5,000): live events wait for a step, so a step stays short
        while a backfill on a fast machine takes few, large ones."""
        adaptive = limit is None
        if limit is None:
            limit = self._backfill_limit
        fingerprint = backfill.fingerprint_of(self.handler.evaluator)
        if fingerprint is None or fingerprint == self._complete_for:
            return 0
        definitions = getattr(self.handler.evaluator, "definitions", None) or {}
        began = time.perf_counter()
        with self.transaction() as batch:
            if not backfill.pending(batch.tx, fingerprint):
                batch.discard = True
                self._complete_for = fingerprint
                self.progress = backfill.Progress(running=False)
                return 0
            now_ms = self.clock.now_ms()
            stages = self.backfill_stages
            done = backfill.step(batch, self.handler, self.log, fingerprint, now_ms, limit, stages)
            self.progress = backfill.progress(batch.tx, fingerprint, definitions)
            started = time.perf_counter()
        ended = time.perf_counter()
        stages["commit"] = stages.get("commit", 0.0) + ended - started
        if done < limit:
            self._complete_for = fingerprint
        elif adaptive and done:
            per_profile = (ended - began) / done
            self._backfill_limit = max(50, min(5_000, int(BACKFILL_STEP_S / per_profile)))
        return done

    @contextlib.contextmanager
    def transaction(self, tx: StateTransaction | None = None) -> Iterator[Batch]:
        """One state transaction as a :class:`Batch`: committed (profiles flushed) when the
        block ends, rolled back when it raises or sets ``batch.discard``; a committed batch's
        membership changes are counted (``segflow_memberships_total``).

        >>> from segflow.stream.state import MemoryStateStore
        >>> from segflow.clock import ManualClock
        >>> class NoLog:
        ...     partitions = 1
        >>> proc = Processor(NoLog(), MemoryStateStore(), clock=ManualClock(0))
        >>> with proc.transaction() as batch:
        ...     batch.tx.set("meta", "note", b"kept")
        >>> proc.store.reader().get("meta", "note")
        b'kept'
        """
        tx = self.store.begin_global() if tx is None else tx
        batch = Batch(tx, self.working, now_ms=self.clock.now_ms())
        try:
            yield batch
            if batch.discard:
                tx.rollback()
                if batch.dirty and self.working is not None:
                    self.working.clear()  # the batch changed cached profiles in place
                return
            if self.live.active:  # after the rules ran: scores and clusters, then their rules
                self.live.apply(batch, self.handler, self.clock.now_ms())
            emitted = bool(batch.changes)  # flush moves them into the outbox
            batch.flush()
            tx.commit()
        except BaseException:
            tx.rollback()
            if self.working is not None:
                self.working.clear()
            raise
        batch.committed()
        _count_memberships(batch)
        if emitted:
            self._changes_committed()

    @property
    def backfill_pending(self) -> bool:
        """Whether the current rule set is not yet known to be backfilled (in memory: safe to
        read from any thread; :meth:`backfilling` asks the state, from the processor's own)."""
        fingerprint = backfill.fingerprint_of(self.handler.evaluator)
        pending = self._pending_evaluator is not None or fingerprint != self._complete_for
        return pending and (fingerprint is not None or self._pending_evaluator is not None)

    def backfilling(self) -> bool:
        """True while a changed rule set is being backfilled."""
        fingerprint = backfill.fingerprint_of(self.handler.evaluator)
        with self.transaction() as batch:
            batch.discard = True
            return backfill.pending(batch.tx, fingerprint)

    def put_scores(self, model: str, values: Sequence[tuple[str, float]], at_ms: int) -> None:
        """Queue ML scores for profiles (``segflow.ml.jobs.AttributeSink``)."""
        self.attributes.put_scores(model, values, at_ms)

    def put_clusters(self, model: str, values: Sequence[tuple[str, str, int]], at_ms: int) -> None:
        """Queue ML clusters ``(profile_id, name, stable id)`` for profiles (``segflow.ml.jobs.AttributeSink``)."""
        self.attributes.put_clusters(model, values, at_ms)

    def put_live_model(self, export: Mapping[str, Any]) -> None:
        """Score a model on the fly from now on (``segflow.ml.jobs.push_live_model``); a
        model with new features recompiles the rule set with them."""
        self.live.put_live_model(export)
        if self._program is not None:
            extended = self.live.extend(self._program)
            if extended is not self._program:  # compiled once, not again by set_evaluator
                self._hand_over(extended)

    def apply_attributes(self, limit: int = 5000) -> int:
        """Apply up to ``limit`` queued scores/clusters in one transaction, re-evaluating the
        rules of each touched profile; returns how many profiles were updated."""
        updates = self.attributes.drain(limit)
        if not updates:
            return 0
        now_ms = self.clock.now_ms()
        with self.transaction() as batch:
            touched = _apply_updates(batch, updates)
            for profile_id in sorted(touched):
                self.handler.on_timer(batch, profile_id, now_ms)
        return len(touched)

    def _swap_evaluator(self) -> None:
        with self._lock:
            if self._pending_evaluator is not None:
                self.handler.evaluator = self._pending_evaluator
                self._pending_evaluator = None

    def _process_batch(self, limit: int) -> int:
        """One batch; optimistic first when the store offers it and the settings ask (several
        processors on one store), pessimistic (the store's write lock) after repeated conflicts."""
        begin = getattr(self.store, "begin_optimistic", None)
        tries = self.settings.optimistic_tries if begin is not None else 0
        try:
            for _ in range(tries):
                try:
                    return self._batch(begin(), limit)  # type: ignore[misc]
                except StateConflict:
                    self.conflicts += 1
            return self._batch(self.store.begin_global(), limit)
        finally:
            self._records.clear()

    def _read(self, partition: int, offset: int, limit: int) -> list[Record]:
        """The log's records, kept until the batch commits (a retried batch reads them again)."""
        found = self._records.get(partition)
        if not found or found[0].offset != offset or len(found) < limit:
            found = self._read_log(partition, offset, limit)
            self._records[partition] = found
        return found[:limit]

    def _read_log(self, partition: int, offset: int, limit: int) -> list[Record]:
        """Records whose events hold only what the stages read (:mod:`segflow.stream.decode`)
        when the log hands out encoded events and the rule set allows, else whole events:
        decoding whole events was 11% of ``segflow serve``'s processor (issue #15)."""
        read_encoded = getattr(self.log, "read_encoded", None)
        evaluator = self.handler.evaluator
        if self._decoder[0] is not evaluator:  # worked out once per rule set (walks its rules)
            on = self.settings.narrow_decode
            self._decoder = (evaluator, decoder_for(evaluator, self.handler.rules) if on else None)
        decode = self._decoder[1]
        if read_encoded is None or decode is None:
            return self.log.read(partition, offset, limit)
        rows = read_encoded(partition, offset, limit)
        return [Record(partition, off, decode(payload)) for off, payload in rows]

    def _batch(self, tx: StateTransaction, limit: int) -> int:
        """Read up to ``limit`` records of every owned partition and apply them in one
        transaction: identity and profiles event by event, then each touched profile's rules
        once over its events (:class:`~segflow.stream.handler.EventHandler`)."""
        clock = time.perf_counter
        started = clock()
        advanced: dict[int, int] = {}
        handler, blocked, stages = self.handler, self.blocked, self.stages
        with self.transaction(tx) as batch:
            reads = [(p, self._read(p, tx.get_offset(p), limit)) for p in self.owned_partitions]
            # the clock after the reads: a record appended between a clock read and the log
            # read would be in the future at that clock, evaluated without itself, and only
            # counted by the timer at its timestamp (an extra transaction, a later change)
            now_ms = self.clock.now_ms()
            batch.now_ms = now_ms  # its changes recorded then too, never before their events
            records = [r for _, found in reads for r in found]
            if not records:
                batch.discard = True
                self._seed_mirror(tx)
                return 0
            duplicates = 0
            if self.seen is not None:
                fresh = self.seen.filter(tx, records)
                duplicates, records = len(records) - len(fresh), fresh
            t_read = clock()
            idents, ident_keys = handler.prefetch_keyed(batch, records)
            if blocked is None:
                handler.attribute_all(batch, records, idents, now_ms, ident_keys)
            else:
                kept = []
                for record, ids, ks in zip(records, idents, ident_keys, strict=True):
                    if blocked(ids):
                        self._drop(batch, record)
                    else:
                        kept.append((record, ids, ks))
                handler.attribute_all(
                    batch,
                    [r for r, _, _ in kept],
                    [i for _, i, _ in kept],
                    now_ms,
                    [k for _, _, k in kept],
                )
            t_identity = clock()
            handler.settle(batch, now_ms)
            t_rules = clock()
            for partition, found in reads:
                if found:
                    advanced[partition] = found[-1].offset + 1
                    tx.set_offset(advanced[partition], partition)
        t_commit = clock()
        stages["read"] += t_read - started
        stages["identity"] += t_identity - t_read
        stages["rules"] += t_rules - t_identity
        stages["commit"] += t_commit - t_rules
        stages["events"] += len(records)
        wall = self.wall_ms()
        self.freshness.observe(batch.caused, wall)
        self.freshness.observe(batch.caused_late, wall, kind="backfill")
        self._mirror_offsets(advanced)
        group = self.settings.group
        PROCESSOR_EVENTS.labels(group=group).inc(len(records))
        if duplicates:
            PROCESSOR_DUPLICATES.labels(group=group).inc(duplicates)
        PROCESSOR_BATCH.labels(group=group).observe(time.perf_counter() - started)
        return len(records) + duplicates  # consumed: a batch of duplicates is work done too

    def _drop(self, batch: Batch, record: Record) -> None:
        """A suppressed event: not attributed; its position is noted so that the record is
        erased from the log after this transaction commits (:meth:`erase_dropped`)."""
        batch.tx.set(keys.DROPPED, f"{record.partition:04x}|{record.offset:016x}", b"")
        self._dropped_unerased = True

    def erase_dropped(self) -> int:
        """Erase the log records of suppressed events noted by committed batches (when the
        log can erase); returns how many positions were cleared."""
        erase = getattr(self.log, "erase", None)
        if not self._dropped_unerased or erase is None:
            return 0
        with self.transaction() as batch:
            rows = batch.tx.scan(keys.DROPPED, "", "\U0010ffff", limit=10_000)
            positions = [(int(k[:4], 16), int(k[5:], 16)) for k, _ in rows]
            erase(positions)
            for key, _ in rows:
                batch.tx.delete(keys.DROPPED, key)
        self._dropped_unerased = len(rows) == 10_000
        return len(rows)

    # -- commands (segflow.privacy) ---------------------------------------------------------
    def submit(self, command: Command[_T], *, after: Mapping[int, int] | None = None) -> Future[_T]:
        """Queue ``command`` to run in the processor's loop, in its own state transaction,
        once the processor has consumed every partition up to ``after`` (a barrier: e.g. the
        log's end offsets when a regulation started). The future holds its result, or its
        exception (the transaction is then rolled back)."""
        pending: _Pending[_T] = _Pending(command, dict(after or {}))
        with self._lock:
            self._commands.append(pending)
        return pending.future

    def run_commands(self) -> int:
        """Run the queued commands whose barrier is passed; returns how many ran."""
        with self._lock:
            queued = list(self._commands)
        ran = 0
        for pending in queued:
            if self._run_command(pending):
                ran += 1
                with self._lock:
                    self._commands.remove(pending)
        return ran

    def _run_command(self, pending: _Pending[Any]) -> bool:
        self._swap_evaluator()
        try:
            with self.transaction() as batch:
                if any(batch.tx.get_offset(p) < o for p, o in pending.after.items()):
                    batch.discard = True
                    return False
                result = pending.command(batch, self.clock.now_ms())
        except Exception as exc:  # the command's failure is its caller's to handle
            pending.future.set_exception(exc)
            return True
        pending.future.set_result(result)
        return True

    def _wall_of(self, due_ms: int, now_ms: int) -> int:
        """A timer's due time on the wall clock (the processor's clock may be a replay's)."""
        return self.wall_ms() - (now_ms - due_ms)

    def _mirror_offsets(self, offsets: dict[int, int]) -> None:
        """Note a batch's offsets; mirror them to the log once ``mirror_interval_ms`` passed.

        Not per batch: on the embedded log a mirror is a write transaction with its own fsync,
        taken under the log writer's lock, so per batch it delayed both the batch (the
        processor waited for the writer's group commit) and the collector's acks."""
        self._unmirrored.update(offsets)
        if time.monotonic() - self._mirrored_at >= self.settings.mirror_interval_ms / 1000:
            self.flush_offsets()

    def _seed_mirror(self, tx: StateTransaction) -> None:
        """At the first idle batch of each owned partition, mirror the offset the state holds:
        a state committed ahead of its mirror (SIGKILL between the two, or a backup whose log
        copy was taken before the mirror caught up) otherwise shows a lag that never drains,
        since an idle processor has nothing new to mirror."""
        for partition in self.owned_partitions:
            if partition not in self._mirror_seeded:
                self._mirror_seeded.add(partition)
                offset = tx.get_offset(partition)
                if offset > 0:
                    self._unmirrored.setdefault(partition, offset)

    def flush_offsets(self) -> None:
        """Mirror the committed offsets not yet mirrored to the log's consumer group (called
        when idle and on stop; :meth:`_mirror_offsets` calls it at most every interval)."""
        commit = getattr(self.log, "commit", None)
        offsets, self._unmirrored = self._unmirrored, {}
        self._mirrored_at = time.monotonic()
        if not offsets or not self.settings.mirror_offsets or commit is None:
            return
        try:
            commit(self.settings.group, offsets)
        except Exception:  # informative only: the state store holds the real offsets
            log.warning("could not mirror offsets %s to the log", offsets, exc_info=True)

    def fire_due_timers(self, budget_s: float = 0.1) -> int:
        """:meth:`fire_timers` again while a whole ``timer_batch`` came due, for up to
        ``budget_s``: timers come due as fast as events arrive (a window's exit per event),
        and one ``timer_batch`` per event batch let them fall behind (p50 0.85 s late at
        5,000 events/s, BENCHMARKS.md); returns how many rows came due."""
        started, fired = time.monotonic(), 0
        while True:
            count = self.fire_timers()
            fired += count
            if count < self.settings.timer_batch or time.monotonic() - started >= budget_s:
                return fired

    def fire_timers(self) -> int:
        """Call ``on_time`` for profiles whose wakeup is due at the clock's now; returns how
        many rows of the timer index came due (a row due early — the profile's due time moved
        later since, see :meth:`Batch.set_timer` — is moved to the real time instead)."""
        now_ms = self.clock.now_ms()
        with self.transaction() as batch:
            due = batch.tx.scan(
                keys.TIMER, "", keys.timer_key(now_ms + 1, ""), limit=self.settings.timer_batch
            )
            if not due:
                first = batch.tx.scan(keys.TIMER, "", "\U0010ffff", limit=1)
                self._next_due_ms = int(first[0][0].split("|", 1)[0], 16) if first else None
                batch.discard = True
                return 0
            self._next_due_ms = now_ms  # more may be due: the next idle wait is short
            for key, _ in due:
                due_hex, profile_id = key.split("|", 1)
                profile = batch.find(profile_id)
                if profile is None or timer_row(profile) != int(due_hex, 16):
                    batch.tx.delete(keys.TIMER, key)  # the profile went, or a stray row
                    continue
                wake = profile.next_wakeup_ms
                batch.clear_timer(profile)
                if wake is not None and wake <= now_ms:
                    batch.cause_ms = self._wall_of(wake, now_ms)
                    self.handler.on_timer(batch, profile_id, now_ms)
                else:
                    batch.set_timer(profile, wake)
                    batch.put(profile)
        self.freshness.observe(batch.caused, self.wall_ms(), kind="timer")
        return len(due)

    def split(
        self, profile_id: str, identifiers: Sequence[str], timeout_s: float = 60.0
    ) -> SplitResult:
        """Split ``identifiers`` off ``profile_id`` (admin): see :mod:`segflow.stream.split`.

        Runs in its own state transaction in the processor's loop (a command, when the loop
        runs in its thread: the working set is the loop's alone), else at once."""

        def command(batch: Batch, now_ms: int) -> SplitResult:
            if batch.find(profile_id) is None:
                raise NotFoundError(f"no profile {profile_id}", details={"profile_id": profile_id})
            return split_profile(batch, self.handler, self.log, profile_id, identifiers, now_ms)

        if self._thread is not None and threading.current_thread() is not self._thread:
            future = self.submit(command)
            self.wake()
            return future.result(timeout_s)
        self._swap_evaluator()
        with self.transaction() as batch:
            return command(batch, self.clock.now_ms())

    def tick(self) -> bool:
        """One batch; ``True`` when it did work (another follows at once)."""
        return self.run_once() > 0

    def idle_wait_s(self) -> float:
        """Idle until the poll interval, or until the earliest timer comes due when that is
        sooner (a window's exit waited up to a whole interval: 113-116 ms late at p50 with the
        200 ms poll, 2-5 ms after). At least ``TIMER_COALESCE_S``, so that timers coming due
        as fast as events arrive share a transaction (and its fsync) instead of one each."""
        due = self._next_due_ms
        if due is None:
            return self.interval_s
        wait = max(TIMER_COALESCE_S, (due - self.clock.now_ms()) / 1000)
        return min(self.interval_s, wait)

    def start(self) -> None:
        """Run in a background thread (``segflow serve``, ``segflow process``), with the
        process's cyclic garbage collector tuned for it (:class:`GcPolicy`)."""
        self.gc_policy.start()
        super().start()

    def stop(self) -> None:
        """Stop the background thread after its current batch; mirror the offsets."""
        super().stop()
        self.gc_policy.stop()
        with contextlib.suppress(Exception):  # the log may be closed already
            self.flush_offsets()


class _Pending(Generic[_T]):
    """A queued command, its barrier and its future."""

    def __init__(self, command: Command[_T], after: dict[int, int]) -> None:
        self.command = command
        self.after = after
        self.future: Future[_T] = Future()


def _count_memberships(batch: Batch) -> None:
    """Add a committed batch's membership changes to ``segflow_memberships_total``."""
    for (segment, kind), n in batch.membership_counts().items():
        MEMBERSHIPS.labels(segment=segment, kind=kind).inc(n)


def _apply_updates(batch: Batch, updates: Sequence[AttributeUpdate]) -> set[str]:
    touched: set[str] = set()
    for update in updates:
        profile_id = _survivor(batch, update.profile_id)
        profile = None if profile_id is None else batch.find(profile_id)
        if profile is None:
            continue
        if update.kind == "score":
            profile.scores = {**profile.scores, update.model: float(update.value)}
        else:
            profile.clusters = {**profile.clusters, update.model: str(update.value)}
            if update.cluster_id is not None:
                profile.cluster_ids = {**profile.cluster_ids, update.model: update.cluster_id}
        batch.put(profile)
        touched.add(profile.profile_id)
    return touched


def _survivor(batch: Batch, profile_id: str) -> str | None:
    """Follow merge aliases from ``profile_id`` to the profile that holds it now."""
    profile = batch.current(profile_id)
    return None if profile is None else profile.profile_id
