"""The supervisor's decisions without processes: worker counts, restart delays, the status
file shown only while its supervisor lives."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from segflow.config import load_settings
from segflow.errors import ConfigError
from segflow.server.supervisor import (
    Child,
    ChildSpec,
    Supervisor,
    banner,
    child_command,
    layout,
    resolve_api_workers,
    resolve_workers,
)
from segflow.serving.status import SUPERVISOR_FILE, supervised


@pytest.mark.parametrize(
    ("value", "cpus", "workers"),
    [("auto", 1, 1), ("auto", 2, 1), ("auto", 4, 3), ("AUTO", 100, 8), ("2", 1, 2), (16, 2, 16)],
)
def test_workers_are_one_per_core_but_the_processors_or_as_given(
    value: str | int, cpus: int, workers: int
) -> None:
    assert resolve_workers(value, cpus=cpus) == workers


@pytest.mark.parametrize("value", ["0", "many", -1])
def test_a_worker_count_that_is_not_auto_or_positive_is_refused(value: str | int) -> None:
    with pytest.raises(ConfigError, match=r"server\.workers"):
        resolve_workers(value)


@pytest.fixture
def supervisor(tmp_path: Path) -> Supervisor:
    settings = load_settings(overrides={"server": {"data_dir": str(tmp_path)}})
    listener = socket.socket()
    sup = Supervisor(settings, listener, lambda spec: ["true"], workers=1)
    listener.close()
    return sup


def test_restart_delays_double_up_to_the_cap_and_reset_after_a_steady_minute(
    supervisor: Supervisor,
) -> None:
    child = Child(ChildSpec("pipeline", "process,load"), state="running")
    waits = []
    for now in range(0, 80, 10):  # crashes 10 s apart: never steady
        child.started_at, child.state = now - 1, "running"
        supervisor._exited(child, 1, float(now))
        waits.append(child.restart_at - now)
    assert waits == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert child.state == "restarting" and child.last_exit_code == 1
    child.started_at = 1000.0
    supervisor._exited(child, -9, 1061.0)  # up for a minute: a fresh start
    assert child.restart_at - 1061.0 == 0.5


def test_a_child_that_exits_is_restarted_once_its_delay_passed(
    supervisor: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[str] = []
    monkeypatch.setattr(supervisor, "_spawn", lambda c: spawned.append(c.spec.name))
    child = supervisor.children[1]
    child.proc = subprocess.Popen(["true"])
    child.proc.wait()
    child.state, child.started_at = "running", 100.0
    assert supervisor._tick(101.0) and child.state == "restarting"
    assert not supervisor._tick(101.2) and spawned == []
    assert supervisor._tick(101.5) and spawned == ["pipeline"] and child.restarts == 1


def test_the_status_file_is_shown_while_its_supervisor_lives(tmp_path: Path) -> None:
    path = tmp_path / SUPERVISOR_FILE
    path.write_text(json.dumps({"pid": 1, "children": []}))  # init: alive
    assert supervised(tmp_path) == {"pid": 1, "children": []}
    dead = subprocess.Popen(["true"])
    dead.wait()
    path.write_text(json.dumps({"pid": dead.pid, "children": []}))
    assert supervised(tmp_path) is None
    path.write_text("{half")
    assert supervised(tmp_path) is None


def test_the_banner_names_each_child_and_the_urls(supervisor: Supervisor) -> None:
    text = banner(supervisor.settings, supervisor.children)
    assert "http-1     collect,api" in text and "pipeline   process,load" in text
    assert "http://127.0.0.1:8080/v1" in text and "http://127.0.0.1:8080/console" in text
    assert str(supervisor.settings.data_path.resolve()) in text


@pytest.mark.parametrize(
    ("built", "enabled", "line"),
    [
        (True, True, "rules      compiled rule kernel (_kernel"),
        (True, False, "rules      pure-Python evaluator (the compiled rule kernel is turned off"),
        (False, False, "rules      pure-Python evaluator (the compiled rule kernel is not built"),
    ],
)
def test_the_banner_says_which_rule_evaluator_runs(
    supervisor: Supervisor,
    monkeypatch: pytest.MonkeyPatch,
    built: bool,
    enabled: bool,
    line: str,
) -> None:
    from types import SimpleNamespace

    from segflow.rules.incremental import kernel

    extension = SimpleNamespace(__file__="/x/_kernel.cpython-311-x86_64-linux-gnu.so")
    monkeypatch.setattr(kernel, "_kernel", extension if built else None)
    monkeypatch.setattr(kernel, "AVAILABLE", built and enabled)
    assert line in banner(supervisor.settings, supervisor.children)
    server = {"data_dir": str(supervisor.settings.data_path)}
    off = load_settings(overrides={"server": server, "stream": {"kernel": False}})
    assert "rules      pure-Python evaluator ([stream] kernel = false)" in banner(off, [])


def test_with_an_api_port_the_http_workers_collect_and_api_workers_serve_the_api_there(
    tmp_path: Path,
) -> None:
    server = {"data_dir": str(tmp_path), "port": 8080, "api_port": 8081}
    settings = load_settings(overrides={"server": server})
    children = layout(2, api_workers=2)
    assert [(c.name, c.roles, c.http, c.listener) for c in children] == [
        ("http-1", "collect", True, "main"),
        ("http-2", "collect", True, "main"),
        ("api-1", "api", True, "api"),
        ("api-2", "api", True, "api"),
        ("pipeline", "process,load", False, "main"),
        ("activate", "activate", False, "main"),
    ]
    command = child_command(settings)
    api, http = command(children[2]), command(children[0])
    assert api[api.index("--role") + 1] == "api" and api[api.index("--port") + 1] == "8081"
    assert http[http.index("--role") + 1] == "collect" and http[http.index("--port") + 1] == "8080"
    text = banner(settings, [Child(c) for c in children])
    assert "api-1      api" in text and "http://127.0.0.1:8080/v1" in text
    assert "http://127.0.0.1:8081/api/v1" in text and "http://127.0.0.1:8081/console" in text


def test_without_an_api_port_the_supervisor_keeps_one_port_for_everything(
    supervisor: Supervisor,
) -> None:
    assert [c.spec.name for c in supervisor.children] == ["http-1", "pipeline", "activate"]
    assert supervisor.children[0].spec.roles == "collect,api"


def test_an_api_worker_count_below_one_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"server\.api_workers"):
        resolve_api_workers(0)
