"""Regulations on the real stores, wired as ``segflow serve`` wires them (in this process):
suppression semantics, deletion, and resuming after a crash at every step."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from segflow.identity import Identifier
from segflow.privacy import job as job_module
from segflow.spec import Event


def person(tag: str) -> dict[str, str]:
    return {"user": f"u-{tag}", "anon": f"a-{tag}", "email": f"{tag}@example.org"}


def identify(p: dict[str, str], **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": p["user"],
        "anonymousId": p["anon"],
        "messageId": uuid.uuid4().hex,
        "traits": {"email": p["email"], **traits},
    }


def order(user: str, revenue: int = 10) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": "Order Completed",
        "messageId": uuid.uuid4().hex,
        "properties": {"revenue": revenue},
    }


def events_of(parts: Any, user: str) -> int:
    return int(parts.warehouse("SELECT count(*) FROM events WHERE user_id = ?", user)[0][0])


def test_suppress_acknowledges_and_drops_and_a_later_link_does_not_resurrect(
    composed: Callable[..., Any],
) -> None:
    parts = composed()
    ann, bob = person("ann"), person("bob")
    parts.ingest(identify(ann), order(ann["user"]), identify(bob))
    parts.settled()
    before = parts.profile("user_id", ann["user"])

    reg = parts.regulate("suppress", ("user_id", ann["user"]))
    assert reg.status == "finished" and reg.result["profiles"] == 1
    # every identifier of the profile is suppressed, as keyed hashes only
    listed = parts.privacy.service.suppressions()
    assert sorted(s.type for s in listed) == ["anonymous_id", "email", "user_id"]
    assert all(ann["email"] not in s.hash for s in listed)

    end = parts.runtime.log.end_offsets()
    result = parts.ingest(
        order(ann["user"]),
        {"type": "page", "anonymousId": ann["anon"], "messageId": uuid.uuid4().hex},
    )
    assert (result.accepted, result.suppressed, result.refused) == (2, 2, [])
    assert parts.runtime.log.end_offsets() == end  # acknowledged, not stored

    # a new anonymousId: collected; the identify that would link it to Ann is dropped
    fresh = {"type": "page", "anonymousId": "a-new", "messageId": uuid.uuid4().hex}
    linking = {
        "type": "identify",
        "userId": ann["user"],
        "anonymousId": "a-new",
        "messageId": uuid.uuid4().hex,
    }
    assert parts.ingest(fresh, linking).suppressed == 1
    parts.settled()
    anonymous = parts.profile("anonymous_id", "a-new")
    assert anonymous is not None and anonymous.user_id is None
    assert anonymous.profile_id != before.profile_id
    after = parts.profile("user_id", ann["user"])
    assert after.event_counts == before.event_counts  # suppression keeps what was stored
    assert parts.profile("user_id", bob["user"]) is not None


def test_events_in_the_log_before_a_suppression_are_dropped_by_the_processor_and_the_loader(
    composed: Callable[..., Any],
) -> None:
    parts = composed()
    ann = person("ann2")
    parts.ingest(identify(ann))
    parts.settled()
    for service in parts.started:  # stop consumers: the next events wait in the log
        if service.name in ("processor", "warehouse-loader"):
            service.stop()
    late = Event(
        type="track",
        message_id="late-1",
        source_id=parts.source.id,
        timestamp_ms=1,
        received_at_ms=1,
        user_id=ann["user"],
        event="Order Completed",
    )
    [position] = parts.runtime.log.append([late])
    assert position is not None
    held = parts.privacy.service.hashed([Identifier("user_id", ann["user"])])
    parts.privacy.suppressions.hold("reg_test", [h.hash for h in held])  # a regulation's hold
    parts.parts.processor.run_once()
    parts.parts.loader.run_until_idle()
    assert [r.offset for r in parts.runtime.log.read(position[0], position[1], 1)] != [position[1]]
    assert parts.profile("user_id", ann["user"]).event_counts.get("Order Completed") is None
    assert parts.warehouse("SELECT count(*) FROM events WHERE message_id = 'late-1'") == [(0,)]


def test_delete_erases_everywhere_and_then_lets_the_person_come_back(
    composed: Callable[..., Any],
) -> None:
    parts = composed()
    assert parts.parts.segments.put_segment("buyers", 'did "Order Completed"').version == 1
    ann, bob = person("ann3"), person("bob3")
    parts.ingest(identify(ann), order(ann["user"]), identify(bob), order(bob["user"]))
    parts.settled()
    parts.wait(lambda: parts.profile("user_id", ann["user"]).members == ["buyers"])
    assert events_of(parts, ann["user"]) == 2
    ann_id = parts.profile("user_id", ann["user"]).profile_id

    reg = parts.regulate("delete", ("email", ann["email"]))
    assert reg.status == "finished", reg.error
    counts = reg.result["counts"]
    assert counts["exits"] == 1 and counts["log.records"] == 2 and counts["state.profiles"] == 1
    assert counts["warehouse.events"] == 2 and counts["warehouse.memberships"] == 1
    assert parts.profile("user_id", ann["user"]) is None
    assert parts.profile("anonymous_id", ann["anon"]) is None
    for table, column in (
        ("events", "user_id"),
        ("identities", "id_value"),
        ("changes", "profile_id"),
        ("memberships", "profile_id"),
        ("profiles", "profile_id"),
    ):
        value = ann["user"] if column in ("user_id", "id_value") else ann_id
        assert parts.warehouse(f"SELECT count(*) FROM {table} WHERE {column} = ?", value) == [(0,)]
    assert events_of(parts, bob["user"]) == 2  # others untouched
    assert parts.profile("user_id", bob["user"]).members == ["buyers"]

    # a plain delete does not suppress: the person's next events start a new profile
    assert parts.ingest(order(ann["user"])).suppressed == 0
    parts.settled()
    back = parts.wait(lambda: parts.profile("user_id", ann["user"]))
    assert back.profile_id != ann_id
    parts.wait(lambda: parts.profile("user_id", ann["user"]).members == ["buyers"])


def test_suppress_and_delete_keeps_refusing(composed: Callable[..., Any]) -> None:
    parts = composed()
    ann = person("ann4")
    parts.ingest(identify(ann), order(ann["user"]))
    parts.settled()
    reg = parts.regulate("suppress_and_delete", ("anonymous_id", ann["anon"]))
    assert reg.status == "finished", reg.error
    assert parts.profile("user_id", ann["user"]) is None
    assert parts.ingest(order(ann["user"])).suppressed == 1
    # lifting the suppression lets events in again
    lifted = parts.privacy.service.unsuppress_identifiers(
        [{"type": "user_id", "value": ann["user"]}], actor="t"
    )
    assert len(lifted) == 1
    parts.privacy.runner.refresh()
    assert parts.ingest(order(ann["user"])).suppressed == 0


def test_a_regulation_fails_with_the_reason_when_an_owner_does_not_answer(
    composed: Callable[..., Any],
) -> None:
    parts = composed(privacy={"step_timeout_s": 0.5})
    ann = person("ann5")
    parts.ingest(identify(ann))
    parts.settled()
    for service in parts.started:
        if service.name == "processor":
            service.stop()
    reg = parts.regulate("delete", ("user_id", ann["user"]))
    assert reg.status == "failed"
    assert reg.error.startswith("retire: the processor did not confirm")
    assert not parts.privacy.suppressions.blocks_event(
        Event(
            type="track",
            message_id="x",
            source_id="s",
            timestamp_ms=1,
            received_at_ms=1,
            user_id=ann["user"],
            event="E",
        )
    )  # a failed delete releases its hold


class Crash(BaseException):
    """Stands for the process dying: not an ``Exception``, so nothing records a failure."""


STEPS = {
    "retire": "_retire",
    "notify": "_notify",
    "warehouse": "_erase_warehouse",
    "log": "_erase_log",
    "delivery": "_erase_delivery",
    "state": "_erase_state",
}


@pytest.mark.slow
@pytest.mark.parametrize("step", [*STEPS, "compact"])
def test_a_regulation_interrupted_after_any_step_resumes_and_finishes(
    composed: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    parts = composed()
    assert parts.parts.segments.put_segment("buyers", 'did "Order Completed"').version == 1
    ann, bob = person(f"c-{step}"), person(f"d-{step}")
    parts.ingest(identify(ann), order(ann["user"]), identify(bob), order(bob["user"]))
    parts.settled()
    parts.wait(lambda: parts.profile("user_id", ann["user"]).members == ["buyers"])
    crashed = _crash_after(monkeypatch, parts, step)
    reg = parts.privacy.service.submit(
        "delete", [{"type": "user_id", "value": ann["user"]}], actor="t"
    )
    with pytest.raises(Crash):
        parts.privacy.runner.run_once()
    assert crashed and parts.privacy.service.get(reg.id).status == "running"
    monkeypatch.undo()
    parts.privacy.runner.run_once()  # as after a restart: open regulations resume
    done = parts.privacy.service.get(reg.id)
    assert done.status == "finished", done.error
    assert parts.profile("user_id", ann["user"]) is None
    assert events_of(parts, ann["user"]) == 0 and events_of(parts, bob["user"]) == 2
    assert parts.warehouse("SELECT count(*) FROM identities WHERE id_value = ?", ann["email"]) == [
        (0,)
    ]
    assert parts.profile("user_id", bob["user"]).members == ["buyers"]
    assert parts.privacy.store.work(reg.id).identifiers == []  # clear identifiers forgotten


def _crash_after(monkeypatch: pytest.MonkeyPatch, parts: Any, step: str) -> list[str]:
    crashed: list[str] = []
    if step == "compact":
        original_compact = parts.privacy.runner.compact

        def compact_then_crash() -> Any:
            original_compact()
            crashed.append(step)
            raise Crash

        monkeypatch.setattr(parts.privacy.runner, "compact", compact_then_crash)
        return crashed
    name = STEPS[step]
    if name == "_erase_state":
        original = job_module._erase_state

        def state_then_crash(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            crashed.append(step)
            return out

        monkeypatch.setattr(job_module, "_erase_state", state_then_crash)
        original_save = job_module.RegulationJob._save

        def save(self: Any, reg: Any, work: Any, at: str) -> None:
            original_save(self, reg, work, at)
            if at == "sweep" and crashed:
                raise Crash

        monkeypatch.setattr(job_module.RegulationJob, "_save", save)
        return crashed
    method = getattr(job_module.RegulationJob, name)

    def then_crash(self: Any, *args: Any, **kwargs: Any) -> Any:
        method(self, *args, **kwargs)
        crashed.append(step)
        raise Crash

    monkeypatch.setattr(job_module.RegulationJob, name, then_crash)
    return crashed
