"""``segflow segments|traits|status|process`` on a real data directory, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run


def test_segments_are_checked_versioned_and_evaluated_by_process(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path / "data")]
    bad = run("segments", "create", "buyers", 'did "Order Completed', *d)
    assert bad.returncode == 2  # the line, a caret under the column, the message
    assert bad.stderr.splitlines()[-1] == "      ^" and "1:5: error" in bad.stderr
    bad = run("segments", "create", "buyers", 'did "Order Completed', "--json", *d)
    assert bad.returncode == 2
    error = json.loads(bad.stderr)
    assert error["field"] == "rule" and error["details"]["errors"][0]["column"] == 5

    assert run("segments", "create", "buyers", 'did "Order Completed"', *d).returncode == 0
    again = run("segments", "create", "buyers", 'did "Order Completed" at least 2 times', *d)
    assert "version 2" in again.stdout
    listed = json.loads(run("segments", "list", "--json", *d).stdout)
    assert [(x["name"], x["version"]) for x in listed] == [("buyers", 2)]
    cycle = run("segments", "create", "loop", 'in segment "loop"', *d)
    assert cycle.returncode == 2 and "cycle" in cycle.stderr

    key = run("sources", "create", "web", *d).stdout.strip().splitlines()[-1]
    assert key
    from segflow.log.sqlite import open_log
    from segflow.spec import Event

    log = open_log(tmp_path / "data", partitions=8)
    log.append(
        [
            Event(
                type="track",
                message_id=f"m{n}",
                source_id="web",
                timestamp_ms=1_000 + n,
                received_at_ms=1_000 + n,
                user_id="u1",
                event="Order Completed",
            )
            for n in range(2)
        ]
    )
    log.close()
    assert "processed 2 events" in run("process", "--until-idle", *d).stdout
    shown = run("profiles", "show", "user_id:u1", *d)
    assert shown.returncode == 0 and "buyers" in shown.stdout, shown.stdout + shown.stderr
    files = tmp_path / "data" / "exports" / "files"  # inside the export root
    made = run("destinations", "create", "crm", "--directory", str(files), *d)
    assert made.returncode == 0, made.stderr
    synced = run("destinations", "subscribe", "crm", "buyers", "--initial-sync", *d)
    assert synced.returncode == 0, synced.stderr
    assert '"queued": 1' in synced.stdout  # the current member, from the processor's state
    snap = run("destinations", "snapshot", "crm", "buyers", *d)
    assert snap.returncode == 0, snap.stderr
    written = json.loads(snap.stdout)["written"]
    assert sorted(Path(w).suffix for w in written) == [".csv", ".parquet"]
    csv = next(w for w in written if w.endswith(".csv"))  # relative to the directory
    assert "user_id" in (files / csv).read_text()

    audit = json.loads(run("audit", "--json", *d).stdout)
    assert [e["action"] for e in audit] == [
        "source.create", "segment.update", "segment.create"
    ]  # fmt: skip
    assert all(e["actor"].startswith("cli:") for e in audit)
    assert "loaded 2 events" in run("load", *d).stdout
    rows = run("sql", "SELECT segment FROM memberships", "--format", "csv", *d).stdout
    assert rows.replace('"', "").split() == [
        "segment",
        "buyers",
    ]  # the processor's changes were loaded too
    status = json.loads(run("status", "--json", *d).stdout)
    assert status["events"] == 2 and status["parts"]["processor"]["lag"] == 0
    assert status["parts"]["warehouse_loader"]["lag"] == 0
