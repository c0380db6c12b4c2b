"""The CLI's contract, checked by walking the real Typer app: every listing and show command
takes ``--json`` and prints one JSON document; every command and parameter documents itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from segflow.cli import main

main._register_all()  # once: each call adds every area again

# listings that are not named list/show
LISTINGS = {("status",), ("audit",), ("sources", "violations"), ("deliveries", "dead-letters")}
# the arguments each listing needs on the fixture's data directory
ARGS: dict[tuple[str, ...], list[str]] = {
    ("status",): [],
    ("audit",): [],
    ("dead-letters", "list"): [],
    ("deliveries", "list"): ["--destination", "crm"],
    ("deliveries", "dead-letters"): ["--destination", "crm"],
    ("destinations", "list"): [],
    ("destinations", "show"): ["crm"],
    ("models", "list"): [],
    ("models", "show"): ["segs"],
    ("profiles", "show"): ["user_id:u1"],
    ("segments", "list"): [],
    ("segments", "show"): ["buyers"],
    ("traits", "list"): [],
    ("traits", "show"): ["orders"],
    ("sources", "list"): [],
    ("sources", "violations"): ["web"],
    ("sources", "sync", "list"): [],
    ("tokens", "list"): [],
}
# nothing refused and nothing dead on the fixture's data directory
NOTHING_TO_LIST = {
    ("dead-letters", "list"),
    ("deliveries", "dead-letters"),
    ("sources", "violations"),
    ("sources", "sync", "list"),
}
# modules other areas own, whose parameters are documented there (not checked here)
ELSEWHERE = {"segflow.cli.destinations", "segflow.cli.deliveries", "segflow.cli.dead_letters"}


def commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    root = typer.main.get_command(main.app)

    def walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, (*path, name))
        else:
            yield path, cmd

    yield from walk(root, ())


def is_listing(path: tuple[str, ...]) -> bool:
    return path[-1] in ("list", "show") or path in LISTINGS


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("cli") / "data"
    d = ["--data-dir", str(data)]
    for args in (
        ["sources", "create", "web"],
        ["tokens", "create", "--role", "admin", "--name", "ops"],
        ["segments", "create", "buyers", 'did "Order Completed"'],
        ["traits", "create", "orders", 'count("Order Completed")'],
        ["destinations", "create", "crm", "--directory", "files"],
    ):
        done = cli(*args, *d)
        assert done.exit_code == 0, (args, done.output, done.stderr)
    from segflow.log.sqlite import open_log
    from segflow.ml.registry import ModelSpec, Registry
    from segflow.spec import Event
    from segflow.warehouse.connection import connect, warehouse_path

    log = open_log(data, partitions=8)
    log.append([Event(type="track", message_id="m1", source_id="web", timestamp_ms=1_000,
                      received_at_ms=1_000, user_id="u1", event="Order Completed")])  # fmt: skip
    log.close()
    assert cli("process", "--until-idle", *d).exit_code == 0
    synced = cli("destinations", "subscribe", "crm", "buyers", "--initial-sync", *d)
    assert synced.exit_code == 0, synced.stderr
    con = connect(warehouse_path(data))
    try:
        Registry(con).put_model(ModelSpec(name="segs", kind="cluster", k=3), now_ms=0)
    finally:
        con.close()
    return data


def cli(*args: str) -> Any:
    return CliRunner().invoke(main.app, list(args))


def test_every_listing_takes_json_and_prints_one_document(data_dir: Path) -> None:
    found = [(path, cmd) for path, cmd in commands() if is_listing(path)]
    assert {path for path, _ in found} == set(ARGS), "give ARGS the arguments of new listings"
    for path, cmd in found:
        options = {o for p in cmd.params for o in p.opts}
        assert "--json" in options, f"segflow {' '.join(path)} has no --json"
        done = cli(*path, *ARGS[path], "--json", "--data-dir", str(data_dir))
        assert done.exit_code == 0, (path, done.stdout, done.stderr)
        parsed = json.loads(done.stdout)  # exactly one document, nothing else on stdout
        assert parsed not in (None, [], {}) or path in NOTHING_TO_LIST, path
        table = cli(*path, *ARGS[path], "--data-dir", str(data_dir))
        assert table.exit_code == 0 and table.stdout.strip(), (path, table.stderr)


def test_every_command_documents_itself() -> None:
    for path, cmd in commands():
        assert cmd.help and len(cmd.help.split()) >= 3, f"segflow {' '.join(path)}: no help"
        if cmd.callback.__module__ in ELSEWHERE:
            continue
        for param in cmd.params:
            assert getattr(param, "help", None), f"segflow {' '.join(path)} {param.name}: no help"
    root = cli("--help")
    assert root.exit_code == 0 and "segflow demo" in root.stdout and "--json" in root.stdout
