"""``segflow serve``'s supervisor as real processes on real ports: the children it runs, their
restarts after SIGKILL with no acknowledged event lost or counted twice, a clean stop on
SIGINT/SIGTERM, children that die with it, and a busy port refused before anything is made."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.cli import SEGFLOW
from tests.support.serve import Serve, gone
from tests.support.traffic import Traffic
from tests.support.wait import until


def test_supervised_serve_runs_each_role_in_its_own_process_and_events_become_memberships(
    serve_factory: Callable[..., Serve],
) -> None:
    serve = serve_factory("--workers", "2", supervised=True)
    api = serve.api
    made = api.post("/api/v1/segments", json={"name": "buyers", "rule": 'did "Order Completed"'})
    assert made.status_code == 201, made.text
    batch = [{"type": "track", "userId": f"u{n}", "event": "Order Completed",
              "messageId": f"o{n}"} for n in range(3)]  # fmt: skip
    answer = serve.collector.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 200 and answer.json()["success"] is True, answer.text

    members = until(lambda: len(api.get("/api/v1/segments/buyers/members").json()["members"]) == 3)
    assert members
    profile = api.get("/api/v1/profiles/user_id:u1").json()
    assert profile["segments"] == ["buyers"]
    children = serve.children()
    assert {name: c["role"] for name, c in children.items()} == {
        "http-1": "collect,api", "http-2": "collect,api",
        "pipeline": "process,load", "activate": "activate",
    }  # fmt: skip
    running = all(c["state"] == "running" and c["restarts"] == 0 for c in children.values())
    assert running, f"{children}\n{serve.logs()[-6000:]}"  # which child left, its last words
    pids = {c["pid"] for c in children.values()}
    assert len(pids) == 4 and serve.proc.pid not in pids and not any(map(gone, pids))
    until(lambda: serve.status()["parts"]["processor"]["lag"] == 0)
    banner = serve.logs()
    assert f"supervisor pid {serve.proc.pid}" in banner and f"{serve.url}/api/v1" in banner
    assert str(serve.data.resolve()) in banner
    assert "  rules      compiled rule kernel" in banner or "  rules      pure-Python" in banner


def test_killed_children_are_restarted_and_every_acknowledged_event_counts_once(
    serve_factory: Callable[..., Serve],
) -> None:
    serve = serve_factory(supervised=True)
    api = serve.api
    made = api.post("/api/v1/traits", json={"name": "pings", "rule": 'sum(n of "Ping")'})
    assert made.status_code == 201, made.text
    first = serve.children()
    traffic = Traffic(serve.collector)
    try:
        until(lambda: traffic.acked >= 50, what="traffic flows")
        for name in ("http-1", "pipeline"):
            os.kill(first[name]["pid"], signal.SIGKILL)
            seen = traffic.acked
            until(lambda n=name: serve.children()[n]["restarts"] >= 1, what=f"{name} restarted")
            until(lambda s=seen: traffic.acked >= s + 50, what=f"acks after {name}'s restart")
    finally:
        acked = traffic.finish()

    now = serve.children()
    for name in ("http-1", "pipeline"):
        assert now[name]["state"] == "running" and now[name]["pid"] != first[name]["pid"]
        assert now[name]["last_exit_code"] == -signal.SIGKILL
    assert now["activate"]["restarts"] == 0
    assert f'"exit_code": {-signal.SIGKILL}' in serve.logs()  # the restart is logged

    def settled() -> bool:
        parts = serve.status()["parts"]
        return bool(parts["processor"]["lag"] == 0)

    until(settled, what="the processor caught up")
    assert serve.status()["events"] == acked  # duplicates of retried batches were not stored

    def pings() -> int:
        total = 0
        for k in range(7):
            found = api.get(f"/api/v1/profiles/user_id:u{k}")
            if found.status_code == 200:
                total += found.json()["computed_traits"].get("pings", 0)
        return total

    until(lambda: pings() == acked, what="every acknowledged event counted")
    assert pings() == acked  # and not more


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.long)]
)
def test_a_stop_signal_stops_every_child_and_exits_cleanly(
    serve_factory: Callable[..., Serve], signum: signal.Signals
) -> None:
    serve = serve_factory(supervised=True)
    pids = [c["pid"] for c in serve.children().values()]
    assert len(pids) == 3
    serve.proc.send_signal(signum)
    assert serve.proc.wait(90) == 0, serve.logs()
    assert all(map(gone, pids))
    assert "Traceback" not in serve.logs()
    assert "did not stop in time" not in serve.logs()  # each child stopped on its SIGTERM
    assert not (serve.data / "supervisor.json").exists()


def test_children_die_with_a_killed_supervisor(serve_factory: Callable[..., Serve]) -> None:
    serve = serve_factory(supervised=True)
    pids = [c["pid"] for c in serve.children().values()]
    serve.proc.kill()
    serve.proc.wait(30)
    until(lambda: all(map(gone, pids)), deadline_s=30, what="the children died too")
    # a file left behind by a killed supervisor is not shown as a live one
    from segflow.serving.status import supervised as read_supervised

    assert (serve.data / "supervisor.json").exists() and read_supervised(serve.data) is None


@pytest.mark.parametrize("mode", [[], ["--single-process"]], ids=["supervised", "single-process"])
def test_a_busy_port_is_refused_before_the_data_directory_is_made(
    tmp_path: Path, mode: list[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tmp_path / "never"
        out = subprocess.run(
            [*SEGFLOW, "serve", *mode, "--data-dir", str(data), "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    error = json.loads(lines[0])
    assert error["code"] == "port_in_use" and error["details"]["port"] == port
    assert f"127.0.0.1:{port} is already in use" in error["message"]
    assert not data.exists()
