"""Queue and worker behaviour with an in-memory request pool and a manual clock."""

from __future__ import annotations

from pathlib import Path

import httpcore
import httpx
import msgspec
import pytest
from tests.unit.activate.harness import Harness, mc, ok

from segflow.activate.exceptions import DestinationExistsError, InvalidDestinationError
from segflow.activate.payloads import DictProfiles
from segflow.clock import HOUR_MS


def test_rejected_change_is_dead_lettered_at_once_and_replayable(tmp_path: Path) -> None:
    answers = iter([400, 200, 200])
    h = Harness(tmp_path, lambda r: httpx.Response(next(answers)))
    h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})
    h.service.subscribe("d", "vip")
    h.service.subscribe("d", "other")
    h.feed.add(mc("p1", "entered", 1), mc("p1", "entered", 2, "other"))
    h.passes(2)
    assert [d["delivery"].status for d in h.service.deliveries("d")] == ["delivered", "dead"]
    dead = h.service.dead_letters("d")[0]
    assert dead["attempts"][0].status == 400
    assert h.service.replay("d") == {"replayed": 1, "superseded": 0}
    h.passes(1)
    ids = [r.headers["webhook-id"] for r in h.requests]
    assert ids[0] == ids[2]  # the replay keeps the idempotency key
    assert h.store.stats("d").dead == 0


def test_later_change_waits_for_the_earlier_one(tmp_path: Path) -> None:
    answers = iter([503, 503, 200, 200, 200])
    h = Harness(tmp_path, lambda r: httpx.Response(next(answers)))
    h.service.create_destination(
        {"name": "d", "url": "https://hooks.example/x", "backoff_base_ms": 100}
    )
    h.service.subscribe("d", "vip")
    h.feed.add(mc("p1", "entered", 1), mc("p1", "exited", 2), mc("p1", "entered", 3))
    h.passes(10, advance_ms=1_000)
    seqs = [b["data"]["sequence"] for b in h.bodies()]
    assert seqs == [1, 1, 1, 2, 3]


def test_horizon_moves_the_change_to_dead_letters_with_every_attempt(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda r: httpx.Response(500))
    h.service.create_destination(
        {
            "name": "d",
            "url": "https://hooks.example/x",
            "horizon_ms": HOUR_MS,
            "backoff_base_ms": 60_000,
            "backoff_max_ms": 600_000,
        }
    )
    h.service.subscribe("d", "vip")
    h.feed.add(mc("p1", "entered", 1))
    h.passes(40, advance_ms=5 * 60_000)
    [dead] = h.service.dead_letters("d")
    assert dead["delivery"].attempts == len(dead["attempts"]) >= 3
    assert all(a.status == 500 for a in dead["attempts"])


def test_410_disables_the_destination_and_keeps_its_queue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(tmp_path, lambda r: httpx.Response(410 if len(h.requests) == 1 else 200))
    h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})
    h.service.subscribe("d", "vip")
    h.feed.add(mc("p1", "entered", 1))
    h.passes(3)
    shown = h.service.show("d")
    assert shown["destination"].enabled is False and "410" in (
        shown["destination"].disabled_reason or ""
    )
    assert shown["stats"].pending == 1 and "410" in shown["notices"][0]["message"]
    assert len(h.requests) == 1
    assert any(r.levelname == "ERROR" and "410 Gone" in r.getMessage() for r in caplog.records)
    h.service.update_destination("d", {"enabled": True})  # the operator re-enables it
    h.passes(1)
    assert h.store.stats("d").delivered == 1 and h.service.show("d")["destination"].enabled


def test_retry_after_is_honoured_over_a_shorter_backoff(tmp_path: Path) -> None:
    h = Harness(
        tmp_path,
        lambda r: (
            httpx.Response(429, headers={"retry-after": "120"})
            if len(h.requests) == 1
            else httpx.Response(200)
        ),
    )
    h.service.create_destination(
        {"name": "d", "url": "https://hooks.example/x", "backoff_base_ms": 1_000}
    )
    h.service.subscribe("d", "vip")
    h.feed.add(mc("p1", "entered", 1))
    h.passes(12, advance_ms=10_000)  # 110 s: the backoff (<= 1 s) alone would have retried
    assert len(h.requests) == 1
    [attempt] = h.service.deliveries("d")[0]["attempts"]
    assert attempt.status == 429 and attempt.next_attempt_ms == attempt.at_ms + 120_000
    h.passes(2, advance_ms=10_000)
    assert len(h.requests) == 2 and h.store.stats("d").delivered == 1


def test_a_retry_after_beyond_the_horizon_dead_letters_the_change(tmp_path: Path) -> None:
    h = Harness(tmp_path, lambda r: httpx.Response(503, headers={"retry-after": str(2 * 86_400)}))
    h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})
    h.service.subscribe("d", "vip")
    h.feed.add(mc("p1", "entered", 1))
    h.passes(1)
    [dead] = h.service.dead_letters("d")
    assert [a.status for a in dead["attempts"]] == [503]


def test_timeouts_408_and_connection_errors_are_retried_other_4xx_are_not(
    tmp_path: Path,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        segment = msgspec.json.decode(request.content)["data"]["segment"]
        if segment == "timeout":
            raise httpcore.ReadTimeout("slow")
        if segment == "refused":
            raise httpcore.ConnectError("refused")
        return httpx.Response({"s408": 408, "s404": 404, "s422": 422}[segment])

    h = Harness(tmp_path, answer)
    h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})
    segments = ("timeout", "refused", "s408", "s404", "s422")
    for n, segment in enumerate(segments):
        h.service.subscribe("d", segment)
        h.feed.add(mc(f"p{n}", "entered", 1, segment))
    h.passes(2)  # concurrency 4: five requests take two passes (no time passes: no retries)
    status = {d["delivery"].segment: d["delivery"].status for d in h.service.deliveries("d")}
    assert status == {
        "timeout": "pending", "refused": "pending", "s408": "pending",
        "s404": "dead", "s422": "dead",
    }  # fmt: skip
    errors = {d["delivery"].segment: d["delivery"].last_error for d in h.service.deliveries("d")}
    assert "timeout" in (errors["timeout"] or "") and "ConnectError" in (errors["refused"] or "")


def test_change_files_roll_over_per_period(tmp_path: Path) -> None:
    h = Harness(tmp_path, ok)
    out = tmp_path / "exports"
    h.service.create_destination(
        {"name": "f", "kind": "file", "directory": str(out), "file_period_ms": 60_000}
    )
    h.service.subscribe("f", "vip")
    h.feed.add(mc("p1", "entered", 1))
    h.passes(1, advance_ms=60_000)
    h.feed.add(mc("p1", "exited", 2))
    h.passes(1)
    files = sorted((out / "changes").iterdir())
    assert len(files) == 2
    assert [f.read_text().splitlines()[1].split(",")[3] for f in files] == ["entered", "exited"]


def test_destination_options_are_validated(tmp_path: Path) -> None:
    h = Harness(tmp_path, ok)
    for field, value in (("phone_country_code", "UK"), ("concurrency", 0), ("batch_max", 0)):
        with pytest.raises(InvalidDestinationError) as info:
            h.service.create_destination({"name": "d", "url": "https://x.example/", field: value})
        assert info.value.field == field


def test_redirects_are_not_followed(tmp_path: Path) -> None:
    h = Harness(
        tmp_path, lambda r: httpx.Response(302, headers={"location": "http://169.254.169.254/"})
    )
    h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})
    h.service.subscribe("d", "vip")
    h.feed.add(mc("p1", "entered", 1))
    h.passes(1)
    assert len(h.requests) == 1
    assert "redirect" in (h.service.deliveries("d")[0]["delivery"].last_error or "")


def test_initial_sync_then_live_changes_without_duplicates(tmp_path: Path) -> None:
    lookup = DictProfiles(
        identities={"p1": [("email", "a@b.co")]},
        traits={"p1": {"plan": "pro"}},
        members={"vip": ["p1", "p2"]},
    )
    h = Harness(tmp_path, ok, lookup)
    h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})
    _, queued = h.service.subscribe("d", "vip", traits=["plan"], initial_sync=True)
    assert queued == 2
    h.feed.add(mc("p1", "entered", 5), mc("p1", "exited", 6))
    h.passes(3)
    got = [(b["data"]["profile_id"], b["data"]["kind"]) for b in h.bodies()]
    assert sorted(got) == [("p1", "entered"), ("p1", "exited"), ("p2", "entered")]
    # in order per profile; p2's request may go out before p1's (one profile does not wait
    # for another), so p1's body is looked up, not taken first
    assert [kind for pid, kind in got if pid == "p1"] == ["entered", "exited"]
    first_p1 = next(b for b in h.bodies() if b["data"]["profile_id"] == "p1")
    assert first_p1["data"]["traits"] == {"plan": "pro"}


def test_unsubscribed_kinds_and_segments_are_not_sent(tmp_path: Path) -> None:
    h = Harness(tmp_path, ok)
    h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})
    h.service.subscribe("d", "vip", kinds=["entered"])
    h.feed.add(
        mc("p1", "entered", 1),
        mc("p1", "exited", 2),
        mc("p1", "entered", 3),
        mc("p1", "entered", 4, "other"),
    )
    h.passes(4)
    assert [b["data"]["sequence"] for b in h.bodies()] == [1, 3]
    with pytest.raises(DestinationExistsError):
        h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})


def test_file_destination_writes_change_files_and_snapshots(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    lookup = DictProfiles(identities={"p1": [("email", "a@b.co")]}, members={"vip": ["p1"]})
    h = Harness(tmp_path, ok, lookup)
    out = tmp_path / "exports"
    h.service.create_destination(
        {"name": "f", "kind": "file", "directory": str(out), "identifiers": "hashed"}
    )
    h.service.subscribe("f", "vip")
    h.feed.add(mc("p1", "entered", 1), mc("p1", "exited", 2))
    h.passes(3)
    [change_file] = list((out / "changes").iterdir())
    lines = change_file.read_text().splitlines()
    assert lines[0].startswith("webhook_id,profile_id") and len(lines) == 3
    paths = h.service.snapshot("f", "vip")
    table = pq.read_table(out / paths[0])
    assert table.column("profile_id").to_pylist() == ["p1"] and "email_sha256" in table.column_names


def test_secret_rotation_signs_with_both_secrets_then_only_the_new(tmp_path: Path) -> None:
    from standardwebhooks import Webhook

    h = Harness(tmp_path, ok)
    _, old = h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})
    h.service.secret_overlap_ms = 0
    new = h.service.rotate_secret("d")
    h.service.subscribe("d", "vip")
    h.feed.add(mc("p1", "entered", 1))
    h.passes(1)
    request = h.requests[0]
    headers = dict(request.headers)
    Webhook(new).verify(request.content, headers)
    assert len(headers["webhook-signature"].split(" ")) == 1  # overlap 0: the old one expired
    assert old != new


def test_delivered_rows_are_pruned(tmp_path: Path) -> None:
    h = Harness(tmp_path, ok)
    h.service.create_destination({"name": "d", "url": "https://hooks.example/x"})
    h.service.subscribe("d", "vip")
    h.feed.add(mc("p1", "entered", 1), mc("p2", "entered", 1))
    h.passes(1)
    assert h.store.stats("d").delivered == 2
    assert h.store.prune(h.clock.now_ms() + 1) == 2
    assert h.store.stats("d").delivered == 0
