"""Pulled syncs: objects/s and events/s of a sync of N Zendesk users (100,000 by default) from
a loopback stand-in of Zendesk's incremental export (1,000 objects a page, as Zendesk serves
them), into a real SQLite log through the Ingestor; peak RSS of the syncing process.

    python -m benchmarks.syncs [--objects 100000] [--rounds 3]

segflow: ``SyncRunner`` (dlt's RESTClient, paginator and retrying session; mapping; durable
append; cursor committed per page). Baseline: what a competent user writes instead, doing the
same work: an ``httpx`` loop over the same cursor, the same mapping and the same Ingestor, the
cursor kept in a file after each durable page. The ratio is what dlt's client costs.

The vendor server runs in its own process on core 1, each sync in a fresh process on core 0
(``taskset``), so peak RSS is the sync's own (and each starts cold, as a ``segflow sources
sync run`` does; dlt's import is not timed); rounds alternate which goes first.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import commit, machine, median

T0 = 1_700_000_000_000


def serve(objects: int, port_file: Path) -> None:
    """The vendor server (a child process): Zendesk users, 1,000 a page."""
    from tests.support.vendors import VendorApi, iso

    api = VendorApi(token="bench", page_size=1000)
    users = [
        {"id": n, "email": f"user{n}@example.com", "name": f"User {n}", "role": "end-user",
         "created_at": iso(T0 + n), "updated_at": iso(T0 + n), "phone": None,
         "time_zone": "Europe/Paris", "locale": "en-US", "verified": True, "active": True,
         "organization_id": n % 500, "tags": ["a", "b"], "user_fields": {"plan": "pro"}}
        for n in range(1, objects + 1)
    ]  # fmt: skip
    api.load("zendesk", "users", users)
    port_file.write_text(api.url)
    while True:
        time.sleep(3600)


def _data(root: Path) -> tuple[object, object, object]:
    from segflow.collect.catalog import SourceCatalog
    from segflow.collect.ingest import Ingestor
    from segflow.log.sqlite import SqliteEventLog

    root.mkdir(parents=True)
    log = SqliteEventLog(root / "log.sqlite")
    catalog = SourceCatalog(root / "catalog.sqlite")
    catalog.create("support")
    return log, catalog, Ingestor(log, catalog)


def run_segflow(root: Path, url: str) -> tuple[int, float]:
    from segflow.syncs import fetch
    from segflow.syncs.runner import SyncRunner
    from segflow.syncs.store import SyncDefinition, open_store

    fetch._dlt()  # dlt's import (~0.7 s, once per process) is not part of the sync
    log, _catalog, ingestor = _data(root)
    store = open_store(root)
    store.create(SyncDefinition(name="zd", vendor="zendesk", source="support", base_url=url,
                                objects=("users",)), "bench")  # fmt: skip
    t0 = time.perf_counter()
    result = SyncRunner(store, ingestor).run("zd")  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t0
    log.close()  # type: ignore[attr-defined]
    return result.stored, elapsed


def run_baseline(root: Path, url: str) -> tuple[int, float]:
    """httpx over Zendesk's cursor, the same mapping and Ingestor, a cursor file fsynced after
    each durable page."""
    import httpx

    from segflow.syncs.mapping import to_messages
    from segflow.syncs.vendors import VENDORS

    log, _catalog, ingestor = _data(root)
    vendor = VENDORS["zendesk"]
    spec = vendor.objects["users"]
    source = ingestor.source("support")  # type: ignore[attr-defined]
    stored = 0
    params: dict[str, object] = {"start_time": 0}
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer bench"}) as client:
        while True:
            body = client.get("/api/v2/incremental/users/cursor.json", params=params).json()
            messages = [m for r in body["users"] for m in to_messages(vendor, spec, r)]
            out = ingestor.ingest(source, messages, received_at_ms=time.time_ns() // 1_000_000)  # type: ignore[attr-defined]
            stored += out.accepted - out.duplicates
            with (root / "cursor").open("w") as cursor_file:  # durable, as segflow's cursor
                cursor_file.write(body["after_cursor"])
                cursor_file.flush()
                os.fsync(cursor_file.fileno())
            if body["end_of_stream"]:
                break
            params = {"cursor": body["after_cursor"]}
    elapsed = time.perf_counter() - t0
    log.close()  # type: ignore[attr-defined]
    return stored, elapsed


def child(kind: str, root: str, url: str) -> None:
    stored, elapsed = (run_segflow if kind == "segflow" else run_baseline)(Path(root), url)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"stored": stored, "elapsed": elapsed, "peak_mb": peak_kb / 1024}))


def _pinned(core: int) -> list[str]:
    return (
        ["taskset", "-c", str(core)]
        if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1
        else []
    )  # type: ignore[operator]


def one(kind: str, root: Path, url: str) -> dict[str, float]:
    out = subprocess.run(
        [*_pinned(0), sys.executable, "-m", "benchmarks.syncs", "--child", kind, str(root), url],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _warm(url: str) -> None:
    """The server sorts its objects at the first request: not part of either sync."""
    import httpx

    headers = {"Authorization": "Bearer bench"}
    path = "/api/v2/incremental/users/cursor.json?start_time=0"
    httpx.get(url + path, headers=headers, timeout=120).raise_for_status()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", nargs=3, metavar=("KIND", "ROOT", "URL"))
    ap.add_argument("--serve", nargs=2, metavar=("OBJECTS", "PORT_FILE"))
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
        return
    with tempfile.TemporaryDirectory() as d:
        port_file = Path(d) / "url"
        server = subprocess.Popen(
            [*_pinned(1), sys.executable, "-m", "benchmarks.syncs", "--serve",
             str(args.objects), str(port_file)],
        )  # fmt: skip
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.1)
            url = port_file.read_text()
            _warm(url)
            rows: dict[str, list[dict[str, float]]] = {"segflow": [], "baseline": []}
            for rnd in range(args.rounds):
                order = ("segflow", "baseline") if rnd % 2 == 0 else ("baseline", "segflow")
                for kind in order:
                    got = one(kind, Path(d) / f"{kind}{rnd}", url)
                    assert got["stored"] == 2 * args.objects, got
                    rows[kind].append(got)
        finally:
            server.terminate()
            server.wait()
    rate = {k: [2 * args.objects / r["elapsed"] for r in v] for k, v in rows.items()}
    ratios = [s / b for s, b in zip(rate["segflow"], rate["baseline"], strict=True)]
    peak = {k: median([r["peak_mb"] for r in v]) for k, v in rows.items()}
    print(f"commit {commit()}; {machine()}; objects={args.objects}; rounds={args.rounds}")
    print(
        "| segflow events/s (objects/s) | baseline events/s | ratio | segflow peak RSS | baseline peak RSS |"
    )
    print("| --- | --- | --- | --- | --- |")
    s, b = median(rate["segflow"]), median(rate["baseline"])
    print(f"| {s:,.0f} ({s / 2:,.0f}) | {b:,.0f} | {median(ratios):.2f}x | "
          f"{peak['segflow']:.0f} MB | {peak['baseline']:.0f} MB |")  # fmt: skip


if __name__ == "__main__":
    main()
