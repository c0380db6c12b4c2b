"""The transport-independent ingestion service."""

from __future__ import annotations

import msgspec
import pytest

from segflow.collect.catalog import SourceCatalog, SourceConfig
from segflow.collect.exceptions import SourceExists, UnknownSource
from segflow.collect.ingest import Ingestor
from segflow.collect.plans import EventSpec, PropertySpec, TrackingPlan
from segflow.log.sqlite import SqliteEventLog

NOW_MS = 1_700_000_000_000


def stored(log: SqliteEventLog) -> list[msgspec.Struct]:
    return [r.event for p in range(log.partitions) for r in log.read(p, 0, 10_000)]


def test_accepts_good_and_refuses_bad_by_index(
    ingestor: Ingestor, catalog: SourceCatalog, log: SqliteEventLog
) -> None:
    source, _ = catalog.create("backend")
    result = ingestor.ingest(
        source,
        [
            {"type": "track", "userId": "u1", "event": "E", "messageId": "m1"},
            {"type": "track", "messageId": "m2", "event": "E"},
            {"userId": "u1", "messageId": "m3"},
            {"type": "identify", "userId": "u1", "traits": "no", "messageId": "m4"},
            "not an object",  # type: ignore[list-item]
        ],
        received_at_ms=NOW_MS,
        ip="10.1.1.1",
    )
    assert result.accepted == 1
    assert [(r.index, r.message_id, r.field) for r in result.refused] == [
        (1, "m2", "userId"),
        (2, "m3", "type"),
        (3, "m4", "traits"),
        (4, None, ""),
    ]
    (event,) = stored(log)
    assert (
        event.context == {"ip": "10.1.1.1"}
        and event.received_at_ms == NOW_MS
        and event.source_id == source.id
    )
    assert len(log.dead_letters()) == 4


def test_repeated_ingest_is_idempotent(
    ingestor: Ingestor, catalog: SourceCatalog, log: SqliteEventLog
) -> None:
    source, _ = catalog.create("backend")
    batch = [
        {"type": "track", "userId": "u1", "event": "E", "messageId": f"m{i}"} for i in range(3)
    ]
    ingestor.ingest(source, batch, received_at_ms=NOW_MS)
    again = ingestor.ingest(source, batch, received_at_ms=NOW_MS + 1000)
    assert (again.accepted, again.duplicates) == (3, 3)
    assert len(stored(log)) == 3


def test_large_input_is_chunked(
    ingestor: Ingestor, catalog: SourceCatalog, log: SqliteEventLog
) -> None:
    source, _ = catalog.create("bulk")
    batch = [{"type": "identify", "userId": f"u{i}", "messageId": f"m{i}"} for i in range(12_000)]
    assert ingestor.ingest(source, batch, received_at_ms=NOW_MS).accepted == 12_000
    assert sum(log.end_offsets().values()) == 12_000


def test_name_rules_from_source_config(
    ingestor: Ingestor, catalog: SourceCatalog, log: SqliteEventLog
) -> None:
    source, _ = catalog.create("web", SourceConfig(event_names={"Signed Up": ["user_signup"]}))
    ingestor.ingest(
        source, [{"type": "track", "userId": "u", "event": "User Signup"}], received_at_ms=NOW_MS
    )
    assert [e.event for e in stored(log)] == ["Signed Up"]


PLAN_EVENTS = {
    "Order Completed": EventSpec(
        properties={
            "revenue": PropertySpec(type="number", required=True),
            "currency": PropertySpec(type="string", enum=("USD", "EUR")),
        }
    )
}
GOOD = {
    "type": "track",
    "userId": "u",
    "event": "Order Completed",
    "properties": {"revenue": 3, "currency": "USD"},
    "messageId": "good",
}
BAD = {
    "type": "track",
    "userId": "u",
    "event": "Order Completed",
    "properties": {"currency": "JPY"},
    "messageId": "bad",
}
UNPLANNED = {"type": "track", "userId": "u", "event": "Mystery", "messageId": "unplanned"}


@pytest.mark.parametrize("mode", ["allow", "flag", "block"])
def test_tracking_plan_modes(
    mode: str, ingestor: Ingestor, catalog: SourceCatalog, log: SqliteEventLog
) -> None:
    plan = TrackingPlan(mode=mode, events=PLAN_EVENTS)  # type: ignore[arg-type]
    source, _ = catalog.create("web", SourceConfig(tracking_plan=plan))
    result = ingestor.ingest(source, [GOOD, BAD, UNPLANNED], received_at_ms=NOW_MS)
    events = {e.message_id: e for e in stored(log)}
    if mode == "block":
        assert set(events) == {"good"}
        # the property's path in field (was "event" for both: the path only in the reason)
        assert [(r.index, r.field) for r in result.refused] == [
            (1, "properties.revenue"),
            (2, "event"),
        ]
        assert "properties.revenue: required" in result.refused[0].reason
    else:
        assert set(events) == {"good", "bad", "unplanned"} and not result.refused
    expected_flags = (
        "properties.revenue: required",
        "properties.currency: 'JPY' is not one of ['USD', 'EUR']",
    )
    assert events.get("bad") is None or events["bad"].violations == (
        expected_flags if mode == "flag" else ()
    )
    counts = {(v.event, v.violation): v.count for v in catalog.violations("web")}
    assert counts == {
        ("Order Completed", expected_flags[0]): 1,
        ("Order Completed", expected_flags[1]): 1,
        ("Mystery", "event 'Mystery' is not in the tracking plan"): 1,
    }


def test_violations_accumulate(ingestor: Ingestor, catalog: SourceCatalog) -> None:
    source, _ = catalog.create("web", SourceConfig(tracking_plan=TrackingPlan(events=PLAN_EVENTS)))
    for i in range(3):
        ingestor.ingest(source, [{**BAD, "messageId": f"b{i}"}], received_at_ms=NOW_MS)
    assert {v.count for v in catalog.violations("web")} == {3}


def test_catalog_names_and_keys(catalog: SourceCatalog) -> None:
    source, key = catalog.create("web")
    with pytest.raises(SourceExists):
        catalog.create("web")
    with pytest.raises(UnknownSource):
        catalog.get("nope")
    assert catalog.authenticate(key) == source
    assert catalog.authenticate(key + "x") is None and catalog.authenticate(None) is None
    row = catalog._con.execute("SELECT key_hash FROM sources").fetchone()[0]
    assert key not in row


def test_configure_updates_rules(catalog: SourceCatalog, ingestor: Ingestor) -> None:
    catalog.create("web")
    updated = catalog.configure("web", SourceConfig(event_names={"A": ["b"]}))
    assert ingestor.source("web").config == updated.config


def test_values_that_cannot_be_stored_are_refused(
    ingestor: Ingestor, catalog: SourceCatalog, log: SqliteEventLog
) -> None:
    source, _ = catalog.create("web")
    huge = {
        "type": "track",
        "userId": "u",
        "event": "E",
        "messageId": "big",
        "properties": {"n": 1 << 70},
    }
    result = ingestor.ingest(
        source, [huge, {**huge, "messageId": "ok", "properties": {}}], received_at_ms=NOW_MS
    )
    assert result.accepted == 1
    assert result.refused[0].message_id == "big" and "cannot be stored" in result.refused[0].reason


def test_dead_letters_never_keep_a_write_key(
    ingestor: Ingestor, catalog: SourceCatalog, log: SqliteEventLog
) -> None:
    source, key = catalog.create("browser")
    ingestor.ingest(
        source,
        [{"type": "track", "messageId": "m1", "event": "E", "writeKey": key}],
        received_at_ms=NOW_MS,
        ip="10.1.1.1",
    )
    (letter,) = log.dead_letters()
    assert key.encode() not in letter.payload and b'"writeKey":"[redacted]"' in letter.payload


def test_write_key_redaction_handles_escapes() -> None:
    from segflow.collect.ingest import redact_write_key

    raw = b'{"writeKey": "a\\"b\\\\c", "event": "E"}'
    assert redact_write_key(raw) == b'{"writeKey": "[redacted]", "event": "E"}'


def test_decode_many_refuses_a_message_over_the_size_limit_and_decodes_the_others(
    log: SqliteEventLog, catalog: SourceCatalog
) -> None:
    from segflow.config import CollectSettings
    from segflow.spec.exceptions import InvalidMessage
    from segflow.spec.wire import WireMessage

    ingestor = Ingestor(log, catalog, CollectSettings(max_message_bytes=200))
    small = msgspec.json.encode({"type": "track", "userId": "u1", "event": "A"})
    big = msgspec.json.encode({"type": "track", "userId": "u1", "event": "x" * 300})
    bad = b'{"userId": []}'
    items = ingestor.decode_many([small, big, bad])
    assert isinstance(items[0], WireMessage) and items[0].event == "A"
    assert isinstance(items[1], InvalidMessage) and items[1].field == "max_message_bytes"
    assert isinstance(items[2], InvalidMessage) and items[2].field == "userId"
    assert [type(i) for i in ingestor.decode_many([small, bad])] == [WireMessage, InvalidMessage]
