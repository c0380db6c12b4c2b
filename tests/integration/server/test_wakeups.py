"""Wake-ups in ``segflow serve`` (segflow.server.wakeups): an event acknowledged by the
collector becomes a membership and a delivered webhook because each part wakes the next, not
because a poll interval passed — the servers here poll once an hour."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.support.receivers import Receiver
from tests.support.serve import ALLOW_LOOPBACK, Serve
from tests.support.wait import until

from segflow.log.bell import Bell
from segflow.log.sqlite import SqliteEventLog
from segflow.server import wakeups
from segflow.server.roles import ROLES
from segflow.stream.processor import Processor, ProcessorSettings
from segflow.stream.state import MemoryStateStore

HOURLY = {
    **ALLOW_LOOPBACK,
    "SEGFLOW_STREAM__POLL_INTERVAL_MS": "3600000",  # the processor's idle poll
    "SEGFLOW_ACTIVATE__FEED_INTERVAL_MS": "3600000",  # delivery's poll of the change feed
}


@pytest.mark.parametrize(
    "supervised",
    [pytest.param(True, marks=pytest.mark.long), False],  # supervised: ~20 s on a loaded machine
    ids=["supervised", "single-process"],
)
def test_an_acknowledged_event_is_processed_and_delivered_without_waiting_for_a_poll(
    serve_factory: Callable[..., Serve],
    receiver_factory: Callable[..., Receiver],
    supervised: bool,
) -> None:
    serve = serve_factory(env=HOURLY, supervised=supervised)
    hook = receiver_factory()
    api = serve.api
    made = api.post("/api/v1/segments", json={"name": "signed", "rule": 'did "Signed Up"'})
    assert made.status_code == 201, made.text
    dest = {"name": "hook", "url": hook.url, "subscriptions": [{"segment": "signed"}]}
    made = api.post("/api/v1/destinations", json=dest)
    assert made.status_code == 201, made.text

    serve.track({"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m1"})

    def members() -> list[Any]:
        return list(api.get("/api/v1/segments/signed/members").json()["members"])

    assert until(members, what="the processor woken by the log's commit")
    delivered = until(hook.ok, what="delivery woken by the processor's commit")
    change = json.loads(delivered[0].body)
    assert change["data"]["segment"] == "signed" and change["data"]["kind"] == "entered"


class _Processor:
    def __init__(self) -> None:
        self.listeners: list[Callable[[], None]] = []

    def wake(self) -> None:
        return None

    def on_changes(self, listener: Callable[[], None]) -> None:
        self.listeners.append(listener)


class _Delivery:
    def __init__(self, woken: list[str], how: str) -> None:
        self.woken, self.how = woken, how
        self.feed_interval_ms = 5

    def notify(self) -> None:
        self.woken.append(self.how)


def test_only_the_process_that_runs_the_processor_takes_the_logs_bell(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=2)
    state = tmp_path / "state"
    parts: list[wakeups.Wakeups] = []
    http, pipeline = frozenset({"collect", "api"}), frozenset({"process", "load"})
    try:
        # the supervisor starts its HTTP workers first: they must leave the bell to the pipeline
        parts.append(wakeups.wire(http, log, _Processor(), _Delivery([], ""), state))
        free = Bell(tmp_path / "log.sqlite")
        assert free.listen(lambda: None)
        free.close()
        parts.append(wakeups.wire(pipeline, log, _Processor(), _Delivery([], ""), state))
        assert not Bell(tmp_path / "log.sqlite").listen(lambda: None)  # the processor's now
    finally:
        for part in parts:
            part.stop()
        log.close()


def test_the_processor_rings_delivery_in_another_process_and_its_own_directly(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    woken: list[str] = []
    pipeline, activate, both = _Processor(), _Processor(), _Processor()
    apart, together = _Delivery(woken, "bell"), _Delivery(woken, "direct")
    rung = [
        wakeups.wire(frozenset({"activate"}), None, activate, apart, state),
        wakeups.wire(frozenset({"process", "load"}), None, pipeline, _Delivery([], ""), state),
        wakeups.wire(frozenset(ROLES), None, both, together, state),
    ]
    try:
        assert activate.listeners == [] and len(pipeline.listeners) == 1
        pipeline.listeners[0]()  # a commit with changes in the pipeline child
        until(lambda: "bell" in woken, what="delivery hearing the pipeline's bell")
        both.listeners[0]()  # one process: the listener is delivery's own
        assert "direct" in woken
        # woken, delivery polls its feed only as the bound on a lost wake-up
        assert apart.feed_interval_ms == together.feed_interval_ms == 200
    finally:
        for part in rung:
            part.stop()


COLLECTOR = textwrap.dedent(
    """
    import sys
    from segflow.log.sqlite import SqliteEventLog
    from segflow.server import wakeups
    from segflow.spec.events import Event
    log = SqliteEventLog(sys.argv[1], partitions=2)
    # what an HTTP worker wires (its processor is never started)
    wakeups.wire(frozenset({"collect", "api"}), log, None, None, sys.argv[2])
    e = Event(type="track", message_id="m1", source_id="s", timestamp_ms=1, received_at_ms=1,
              user_id="u1", event="Signed Up")
    log.append([e])
    log.close()
    """
)


def test_an_event_another_process_appends_is_processed_without_the_poll_interval(
    tmp_path: Path,
) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite", partitions=2)
    hourly = ProcessorSettings(poll_interval_ms=3_600_000)
    processor = Processor(log, MemoryStateStore(), settings=hourly)
    pipeline = frozenset({"process", "load"})
    part = wakeups.wire(pipeline, log, processor, None, tmp_path / "state")
    processor.start()
    try:
        until(lambda: processor.stages["events"] == 0 and not processor.backfill_pending)
        subprocess.run(
            [sys.executable, "-c", COLLECTOR, str(tmp_path / "log.sqlite"), str(tmp_path)],
            check=True,
            timeout=120,
        )
        until(lambda: processor.stages["events"] == 1, what="the processor woken by the bell")
    finally:
        processor.stop()
        part.stop()
        log.close()
