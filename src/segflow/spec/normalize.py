"""From a validated wire message to the normalised :class:`~segflow.spec.Event`.

What normalisation does (and records in ``Event.flags`` when it changed something):

- ``receivedAt`` is the server's time;
- ``timestamp`` is corrected for client clock skew as Segment does:
  ``receivedAt - (sentAt - originalTimestamp)`` when ``sentAt`` is given, where the client's
  time is ``originalTimestamp`` or, failing that, ``timestamp``;
- a time outside what every reader can render (``0001-01-01T00:00:00Z`` to
  ``9999-12-31T23:59:59.999Z``, :data:`MIN_TIME_MS` to :data:`MAX_TIME_MS`) is refused with the
  field that carries it: ``timestamp``/``originalTimestamp``/``sentAt`` as sent, or
  ``timestamp`` when the skew correction carries it out of range;
- a timestamp more than ``future_tolerance_ms`` (23 h) after ``receivedAt`` is clamped to
  ``receivedAt`` (flag ``future_timestamp_clamped``), as PostHog does;
- a missing ``messageId`` is generated (flag ``message_id_generated``);
- ``context.ip`` is the request's address unless the message gives one;
- track event names go through the source's :class:`NameRules`.

>>> from segflow.spec.wire import decode_message
>>> msg = decode_message(b'{"event": "user_signup", "userId": "u1", "messageId": "m1",'
...     b' "timestamp": "2024-01-01T00:00:00Z", "sentAt": "2024-01-01T00:00:10Z"}')
>>> rules = NameRules({"Signed Up": ["user_signup"]})
>>> e = normalize(msg, "track", source_id="web", received_at_ms=1704067200000, name_rules=rules)
>>> (e.event, e.timestamp_ms, e.received_at_ms - e.timestamp_ms)
('Signed Up', 1704067190000, 10000)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from segflow.spec import ids
from segflow.spec.events import Event
from segflow.spec.exceptions import InvalidMessage
from segflow.spec.wire import WireMessage

FUTURE_TOLERANCE_MS = 23 * 3_600_000
MIN_TIME_MS = int(datetime(1, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_TIME_MS = int(datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC).timestamp() * 1000)
FLAG_CLAMPED = "future_timestamp_clamped"
FLAG_GENERATED_ID = "message_id_generated"
FLAG_RENAMED = "event_renamed"
_EMPTY: dict[str, Any] = {}
_FOLD = re.compile(r"[^0-9a-z]+")


@functools.lru_cache(maxsize=8192)
def parse_time_ms(value: str, field: str = "timestamp") -> int:
    """ISO 8601 (with ``Z`` or an offset; naive means UTC) to epoch milliseconds (cached: the
    messages of a batch share their ``sentAt`` and often their timestamps).

    >>> parse_time_ms("1970-01-01T00:00:01.5Z")
    1500
    >>> parse_time_ms("1970-01-01T01:00:00+01:00")
    0
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidMessage(field, f"not an ISO 8601 date-time: {value[:64]!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    ms = int(parsed.timestamp() * 1000)
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        raise InvalidMessage(field, f"{value[:64]!r} is outside {_RANGE} in UTC")
    return ms


_RANGE = "0001-01-01T00:00:00Z..9999-12-31T23:59:59.999Z"


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 in UTC, for any stored value (clamped to the years
    1..9999 that ``datetime`` renders: a read never fails on what an older version stored).

    >>> iso_ms(1500)
    '1970-01-01T00:00:01.500Z'
    >>> iso_ms(-10**15)
    '0001-01-01T00:00:00.000Z'
    """
    ms = min(max(ms, MIN_TIME_MS), MAX_TIME_MS)
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fold_name(name: str) -> str:
    """The key names are matched on: lower case, separators removed.

    >>> fold_name("Signed Up") == fold_name("signed_up") == fold_name("signedUp")
    True
    """
    return _FOLD.sub("", name.lower())


class NameRules:
    """A source's event-name rules: each canonical name lists the names that mean it.

    Names match after :func:`fold_name`, so ``user-signup`` matches a rule for ``user_signup``.

    >>> rules = NameRules({"Signed Up": ["user_signup", "signup"]})
    >>> rules.canonical("User Signup"), rules.canonical("Order Completed")
    ('Signed Up', 'Order Completed')
    """

    def __init__(self, canonical: Mapping[str, Sequence[str]] | None = None) -> None:
        self._map: dict[str, str] = {}
        for target, aliases in (canonical or {}).items():
            for alias in (target, *aliases):
                self._map[fold_name(alias)] = target

    def __bool__(self) -> bool:
        return bool(self._map)

    def canonical(self, name: str) -> str:
        """The canonical name of ``name`` (itself when no rule matches)."""
        if not self._map:
            return name
        return self._map.get(fold_name(name), name)


def _ident(value: str | int | None) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def event_time_ms(
    msg: WireMessage,
    received_at_ms: int,
    *,
    batch_sent_at: str | None = None,
    future_tolerance_ms: int = FUTURE_TOLERANCE_MS,
) -> tuple[int, int | None, int | None, bool]:
    """``(timestamp_ms, original_timestamp_ms, sent_at_ms, clamped)`` for one message.

    >>> from segflow.spec.wire import WireMessage
    >>> m = WireMessage(original_timestamp="1970-01-01T00:00:05Z", sent_at="1970-01-01T00:00:07Z")
    >>> event_time_ms(m, 100_000)
    (98000, 5000, 7000, False)
    """
    client = msg.original_timestamp or msg.timestamp
    original_ms = (
        parse_time_ms(client, "originalTimestamp" if msg.original_timestamp else "timestamp")
        if client
        else None
    )
    sent = msg.sent_at or batch_sent_at
    sent_ms = parse_time_ms(sent, "sentAt") if sent else None
    if original_ms is None:
        timestamp_ms = received_at_ms
    elif sent_ms is None:
        timestamp_ms = original_ms
    else:
        timestamp_ms = received_at_ms - (sent_ms - original_ms)
        if not MIN_TIME_MS <= timestamp_ms <= MAX_TIME_MS:
            raise InvalidMessage(
                "timestamp",
                f"receivedAt - (sentAt - {'originalTimestamp' if msg.original_timestamp else 'timestamp'})"
                f" (the clock-skew correction) is outside {_RANGE}",
            )
    clamped = timestamp_ms > received_at_ms + future_tolerance_ms
    return (received_at_ms if clamped else timestamp_ms), original_ms, sent_ms, clamped


def new_message_id() -> str:
    """A generated messageId (for messages that came without one)."""
    return f"segflow-{ids.uuid4()}"


def normalize(
    msg: WireMessage,
    call: str,
    *,
    source_id: str,
    received_at_ms: int,
    ip: str | None = None,
    name_rules: NameRules | None = None,
    batch_sent_at: str | None = None,
    batch_context: dict[str, Any] | None = None,
    batch_integrations: dict[str, Any] | None = None,
    future_tolerance_ms: int = FUTURE_TOLERANCE_MS,
    id_factory: Callable[[], str] = new_message_id,
) -> Event:
    """The :class:`Event` for a message already checked by :func:`segflow.spec.wire.validate`."""
    flags: list[str] = []
    timestamp_ms, original_ms, sent_ms, clamped = event_time_ms(
        msg, received_at_ms, batch_sent_at=batch_sent_at, future_tolerance_ms=future_tolerance_ms
    )
    if clamped:
        flags.append(FLAG_CLAMPED)
    message_id = msg.message_id
    if not message_id:
        message_id = id_factory()
        flags.append(FLAG_GENERATED_ID)
    event = msg.event
    if event is not None and name_rules:
        renamed = name_rules.canonical(event)
        if renamed != event:
            flags.append(FLAG_RENAMED)
            event = renamed
    context = _merged(batch_context, msg.context)
    if ip is not None and "ip" not in context:
        context = {**context, "ip": ip}
    normalized = Event(  # at most 15 keywords: msgspec takes ~3x longer past that
        type=call,
        message_id=message_id,
        source_id=source_id,
        timestamp_ms=timestamp_ms,
        received_at_ms=received_at_ms,
        user_id=_ident(msg.user_id),
        anonymous_id=_ident(msg.anonymous_id),
        event=event,
        properties=msg.properties or _EMPTY,
        traits=msg.traits or _EMPTY,
        context=context,
        integrations=_merged(batch_integrations, msg.integrations),
        original_timestamp_ms=original_ms,
        sent_at_ms=sent_ms,
        flags=tuple(flags),
    )
    rare = (msg.name, msg.category, msg.group_id, msg.previous_id)
    if rare == _NONE_OF_4:  # track and identify: nothing more to set
        return normalized
    return msgspec.structs.replace(
        normalized,
        name=msg.name,
        category=msg.category,
        group_id=_ident(msg.group_id),
        previous_id=_ident(msg.previous_id),
    )


_NONE_OF_4 = (None, None, None, None)


def _merged(outer: dict[str, Any] | None, inner: dict[str, Any] | None) -> dict[str, Any]:
    if not outer:
        return inner or _EMPTY
    if not inner:
        return outer
    return {**outer, **inner}
