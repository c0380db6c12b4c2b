"""The transport-independent ingestion service: validate, normalise, apply the source's
name rules and tracking plan, dedupe, append durably, dead-letter what is refused.

The HTTP handlers (``collect.app``) and bulk import (``warehouse``) both go through
:class:`Ingestor`, so a message is accepted or refused the same way whichever door it came in.

>>> import os, tempfile
>>> from segflow.collect.catalog import SourceCatalog
>>> from segflow.log.sqlite import SqliteEventLog
>>> d = tempfile.mkdtemp()
>>> log = SqliteEventLog(os.path.join(d, "log.sqlite"))
>>> catalog = SourceCatalog(os.path.join(d, "catalog.sqlite"))
>>> source, _ = catalog.create("backend")
>>> ingestor = Ingestor(log, catalog)
>>> result = ingestor.ingest(source, [
...     {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m1"},
...     {"type": "track", "userId": "u1", "messageId": "m2"},
... ], received_at_ms=1_700_000_000_000)
>>> result.accepted, [(r.index, r.field) for r in result.refused]
(1, [(1, 'event')])
>>> log.close()
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from segflow.collect.catalog import Source, SourceCatalog
from segflow.collect.exceptions import PayloadTooLarge, PlanViolation
from segflow.collect.plans import check_fields, describe
from segflow.config import CollectSettings
from segflow.errors import ValidationError
from segflow.log.base import DeadLetter, Position, ServedLog
from segflow.spec.events import EVENT_ENCODER, Event
from segflow.spec.exceptions import InvalidMessage
from segflow.spec.normalize import NameRules, normalize
from segflow.spec.wire import (
    WireBatch,
    WireMessage,
    convert_message,
    decode_message,
    decode_messages,
    peek_message_id,
    validate,
)
from segflow.telemetry.metrics import (
    EVENTS_ACCEPTED,
    EVENTS_DUPLICATE,
    EVENTS_RECEIVED,
    EVENTS_REFUSED,
)

_CHUNK = 5_000


class Refusal(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One refused message of a request: its index in the batch, messageId, field and reason."""

    index: int
    message_id: str | None
    field: str
    reason: str


class IngestResult(msgspec.Struct, kw_only=True):
    """``accepted`` counts stored messages and acknowledged duplicates (``duplicates`` of them)
    and suppressed messages (``suppressed``: acknowledged and dropped, as Segment does)."""

    accepted: int = 0
    duplicates: int = 0
    suppressed: int = 0
    refused: list[Refusal] = msgspec.field(default_factory=list)


@dataclass
class Prepared:
    """A request's messages after validation: what to append, dead-letter and count."""

    events: list[Event] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    violations: Counter[tuple[str, str]] = field(default_factory=Counter)
    suppressed: int = 0
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)  # (code, field) refused


@dataclass(frozen=True)
class Request:
    """Where a set of messages came from (shared by every message of one request)."""

    source: Source
    received_at_ms: int
    ip: str | None = None
    call: str | None = None
    batch: WireBatch | None = None


class Ingestor:
    """See the module docstring. Thread-safe; one per process."""

    def __init__(
        self, log: ServedLog, catalog: SourceCatalog, settings: CollectSettings | None = None
    ) -> None:
        self.log = log
        self.catalog = catalog
        self.settings = settings or CollectSettings()
        # events for which this is true are acknowledged and dropped (segflow.privacy)
        self.blocked: Callable[[Event], bool] | None = None

    # -- public API --------------------------------------------------------------------------

    def source(self, name: str) -> Source:
        """The source named ``name`` (raises ``UnknownSource``)."""
        return self.catalog.get(name)

    def ingest(
        self,
        source: Source,
        messages: list[dict[str, Any]],
        *,
        received_at_ms: int,
        ip: str | None = None,
    ) -> IngestResult:
        """Ingest parsed messages (each needs its ``type``); returns once durably stored.

        Raises ``TransientError`` (retry) when the log cannot write.
        """
        result = IngestResult()
        request = Request(source=source, received_at_ms=received_at_ms, ip=ip)
        for start in range(0, len(messages), _CHUNK):
            chunk = messages[start : start + _CHUNK]
            prepared = self.prepare(
                request, [self._from_obj(m) for m in chunk], chunk, offset=start
            )
            positions = self.log.submit(
                prepared.events, prepared.dead_letters, prepared.payloads
            ).result()
            self._record_violations(source, prepared)
            _merge(result, prepared, positions)
            _count(source, len(chunk), prepared, positions)
        return result

    async def ingest_async(
        self, request: Request, items: Sequence[WireMessage | InvalidMessage], raws: Sequence[Any]
    ) -> IngestResult:
        """The HTTP path: ``items`` are decoded messages (or their decoding error), ``raws``
        their original bytes (kept for dead letters)."""
        prepared = self.prepare(request, items, raws)
        future = self.log.submit(prepared.events, prepared.dead_letters, prepared.payloads)
        positions = await asyncio.wrap_future(future)
        if prepared.violations:
            await asyncio.to_thread(self._record_violations, request.source, prepared)
        result = IngestResult()
        _merge(result, prepared, positions)
        _count(request.source, len(items), prepared, positions)
        return result

    async def dead_letter_async(
        self, request: Request, payload: bytes, exc: ValidationError
    ) -> None:
        """Keep a whole refused request body (e.g. a batch that is not JSON) as a dead letter."""
        prepared = Prepared()
        self._refuse(prepared, request, 0, None, payload, exc)
        await asyncio.wrap_future(self.log.submit((), prepared.dead_letters))

    def decode_raw(self, raw: bytes | msgspec.Raw) -> WireMessage | InvalidMessage:
        """Decode one message's bytes (or a ``msgspec.Raw`` slice of a batch body), checking
        the per-message size limit."""
        limit = self.settings.max_message_bytes
        if len(raw) > limit:
            return PayloadTooLargeMessage(limit, len(raw))
        try:
            return decode_message(raw)
        except InvalidMessage as exc:
            return exc

    def decode_many(
        self, raws: Sequence[bytes | msgspec.Raw]
    ) -> list[WireMessage | InvalidMessage]:
        """:meth:`decode_raw` of each of a batch's messages, in one loop (the common case:
        none over the size limit, every one decoded by :func:`decode_messages`)."""
        limit = self.settings.max_message_bytes
        if all(len(raw) <= limit for raw in raws):
            return decode_messages(raws)
        return [self.decode_raw(raw) for raw in raws]

    # -- the pipeline ------------------------------------------------------------------------

    def prepare(
        self,
        request: Request,
        items: Sequence[WireMessage | InvalidMessage],
        raws: Sequence[Any],
        *,
        offset: int = 0,
    ) -> Prepared:
        """Validate and normalise every message; refused ones become dead letters."""
        prepared = Prepared()
        rules = request.source.name_rules()
        blocked = self.blocked
        events, payloads = prepared.events, prepared.payloads
        encode = EVENT_ENCODER.encode
        for index, item in enumerate(items):
            try:
                if isinstance(item, InvalidMessage):
                    raise item
                event = self._one(request, item, rules, prepared)
                if blocked is not None and blocked(event):
                    prepared.suppressed += 1
                    continue
                try:
                    payloads.append(encode(event))
                except (OverflowError, msgspec.EncodeError, RecursionError) as exc:
                    raise _unstorable(event, exc) from exc
                events.append(event)
            except ValidationError as exc:
                self._refuse(prepared, request, offset + index, item, raws[index], exc)
        return prepared

    def _one(
        self, request: Request, msg: WireMessage, rules: NameRules, prepared: Prepared
    ) -> Event:
        call = request.call or msg.type
        if call is None:
            raise InvalidMessage("type", "required in a batch", message_id=msg.message_id)
        validate(msg, call, max_message_id_length=self.settings.max_message_id_length)
        batch = request.batch
        event = normalize(
            msg,
            call,
            source_id=request.source.id,
            received_at_ms=request.received_at_ms,
            ip=request.ip,
            name_rules=rules,
            batch_sent_at=batch.sent_at if batch else None,
            batch_context=batch.context if batch else None,
            batch_integrations=batch.integrations if batch else None,
            future_tolerance_ms=self.settings.future_tolerance_ms,
        )
        plan = request.source.config.tracking_plan
        if plan is None:
            return event
        found = check_fields(plan, call, event.event, event.properties)
        if not found:
            return event
        violations = [describe(f) for f in found]
        for v in violations:
            prepared.violations[(event.event or "", v)] += 1
        if plan.mode == "block":
            raise PlanViolation(found)
        if plan.mode == "flag":
            return msgspec.structs.replace(event, violations=tuple(violations))
        return event

    def _refuse(
        self,
        prepared: Prepared,
        request: Request,
        index: int,
        item: Any,
        raw: Any,
        exc: ValidationError,
    ) -> None:
        if isinstance(raw, msgspec.Raw):  # a batch's message, kept as a view of the body
            raw = bytes(raw)
        message_id = _message_id_of(exc, item, raw)
        prepared.reasons[(exc.code, _top_field(exc.field))] += 1
        prepared.refused.append(
            Refusal(index=index, message_id=message_id, field=exc.field, reason=exc.reason)
        )
        payload = redact_write_key(raw if isinstance(raw, bytes) else _encode_any(raw))
        prepared.dead_letters.append(
            DeadLetter(
                source_id=request.source.id,
                received_at_ms=request.received_at_ms,
                field=exc.field,
                reason=exc.reason,
                payload=payload,
                message_id=message_id,
            )
        )

    def _from_obj(self, obj: Any) -> WireMessage | InvalidMessage:
        try:
            return convert_message(obj)
        except InvalidMessage as exc:
            return exc

    def _record_violations(self, source: Source, prepared: Prepared) -> None:
        if prepared.violations:
            self.catalog.record_violations(source.id, prepared.violations)


def PayloadTooLargeMessage(limit: int, size: int) -> InvalidMessage:
    """A per-message size refusal, shaped like the other message errors."""
    exc = PayloadTooLarge("max_message_bytes", limit, actual=size)
    return InvalidMessage(exc.field, exc.reason, details=exc.details)


def _unstorable(event: Event, exc: Exception) -> InvalidMessage:
    """The refusal of an event whose values msgpack cannot store (an int over 64 bits...)."""
    return InvalidMessage("", f"a value cannot be stored: {exc}", message_id=event.message_id)


def _message_id_of(exc: ValidationError, item: Any, raw: Any) -> str | None:
    for candidate in (getattr(exc, "message_id", None), getattr(item, "message_id", None)):
        if isinstance(candidate, str):
            return candidate
    if isinstance(raw, bytes):
        return peek_message_id(raw)
    candidate = raw.get("messageId") if isinstance(raw, dict) else None
    return candidate if isinstance(candidate, str) else None


def _encode_any(obj: Any) -> bytes:
    try:
        return msgspec.json.encode(obj)
    except (TypeError, msgspec.EncodeError, RecursionError):
        return repr(obj).encode()[:65536]


def _merge(result: IngestResult, prepared: Prepared, positions: list[Position | None]) -> None:
    duplicates = sum(1 for p in positions if p is None)
    result.accepted += len(positions) + prepared.suppressed
    result.duplicates += duplicates
    result.suppressed += prepared.suppressed
    result.refused.extend(prepared.refused)


_FIELDS = frozenset(f.encode_name for f in msgspec.structs.fields(WireMessage)) | {
    "type",
    "max_message_bytes",
}


def _top_field(name: str) -> str:
    """A refused field as a metric label: its top-level name, if it is one of the message's."""
    top = name.split(".", 1)[0]
    return top if top in _FIELDS else ("" if not top else "other")


_SOURCE_COUNTERS: dict[str, tuple[Any, Any, Any]] = {}


def _count(source: Source, received: int, prepared: Prepared, positions: list[Any]) -> None:
    """Per request: ``segflow_collect_events_*_total`` by source (and refusal reason)."""
    counters = _SOURCE_COUNTERS.get(source.name)
    if counters is None:  # labels() takes a lock and hashes the labels: once per source
        counters = _SOURCE_COUNTERS[source.name] = (
            EVENTS_RECEIVED.labels(source=source.name),
            EVENTS_ACCEPTED.labels(source=source.name),
            EVENTS_DUPLICATE.labels(source=source.name),
        )
    duplicates = sum(1 for p in positions if p is None)
    counters[0].inc(received)
    counters[1].inc(len(positions) - duplicates)
    if duplicates:
        counters[2].inc(duplicates)
    for (code, name), n in prepared.reasons.items():
        EVENTS_REFUSED.labels(source=source.name, reason=code, field=name).inc(n)


_WRITE_KEY = re.compile(rb'("writeKey"\s*:\s*)"(?:[^"\\]|\\.)*"')


def redact_write_key(payload: bytes) -> bytes:
    """A dead letter keeps the refused bytes, never a write key that came with them.

    >>> redact_write_key(b'{"writeKey": "abc", "type": "track"}')
    b'{"writeKey": "[redacted]", "type": "track"}'
    """
    return _WRITE_KEY.sub(rb'\1"[redacted]"', payload)
