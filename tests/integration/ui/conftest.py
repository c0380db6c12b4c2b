"""A real serve app (collector + admin API + console) on a loopback port, with data in it.

The background services are not started: tests drive the processor and the loader with
:meth:`Served.settle`, so what the pages show is decided by the test, not by timing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from tests.support.net import free_port

from segflow.config import load_settings
from segflow.ml.registry import ModelSpec, Registry, RunRecord
from segflow.server.app import KeepPath, build_app
from segflow.server.compose import Assembly, assemble
from segflow.serving.deps import ApiDeps
from segflow.serving.runtime import Runtime
from segflow.serving.snapshots import LocalFigures
from segflow.stream.compose import build_reader
from segflow.ui import build_console
from segflow.warehouse.connection import connect, warehouse_path


@dataclass
class Served:
    """The running server and its parts."""

    url: str
    runtime: Runtime
    parts: Assembly
    deps: ApiDeps
    write_key: str
    tokens: dict[str, str]  # role -> plain token

    def send(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        """Events through the collector's ``/v1/batch`` (the way an SDK sends them)."""
        answer = httpx.post(
            f"{self.url}/v1/batch", json={"batch": batch}, auth=(self.write_key, ""), timeout=30
        )
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def settle(self) -> None:
        """Apply the current segments, process every event, load the warehouse."""
        self.parts.processor.set_evaluator(self.parts.segments.program())
        while self.parts.processor.run_once() or self.parts.processor.backfill_step():
            pass
        self.parts.loader.run_until_idle()


def _deps(rt: Runtime, parts: Assembly) -> ApiDeps:
    data = rt.settings.data_path
    return ApiDeps(
        runtime=rt,
        reader=build_reader(rt.settings, rt.log),
        figures=LocalFigures(parts.processor, parts.loader),
        sink=parts.processor,
        splitter=parts.processor,
        loader=parts.loader,
        activation=parts.activation,
        segments=parts.segments,
        tokens=parts.tokens,
        warehouse=lambda: connect(warehouse_path(data)),
        catalog_path=data / "catalog.sqlite",
        audit=parts.segments.audit,
    )


def shop_events(now_ms: int) -> list[dict[str, Any]]:
    """Ada buys twice, Grace once, an anonymous visitor only browses."""
    iso = lambda ms: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + "Z"  # noqa: E731
    events: list[dict[str, Any]] = []
    for i, (user, email) in enumerate((("ada", "ada@example.com"), ("grace", "grace@example.com"))):
        at = now_ms - 3_600_000 * (i + 2)
        events.append({"type": "identify", "userId": user, "anonymousId": f"anon-{user}",
                       "traits": {"email": email, "plan": "pro" if i == 0 else "free"},
                       "messageId": f"id-{user}", "timestamp": iso(at)})  # fmt: skip
    for n, user in enumerate(("ada", "ada", "grace")):
        events.append({"type": "track", "userId": user, "event": "Order Completed",
                       "properties": {"revenue": 40 + n}, "messageId": f"order-{n}",
                       "timestamp": iso(now_ms - 60_000 * (n + 1))})  # fmt: skip
    events.append({"type": "page", "anonymousId": "visitor-1", "name": "Pricing",
                   "messageId": "page-1", "timestamp": iso(now_ms - 30_000)})  # fmt: skip
    return events


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp: Path = tmp_path_factory.mktemp("console")
    rt = Runtime.open(load_settings(overrides={"server": {"data_dir": str(tmp)}}))
    parts = assemble(rt)
    deps = _deps(rt, parts)
    app = build_app(
        rt, services=[], mounts={**parts.mounts, "/console": KeepPath(build_console(deps))}
    )
    _, write_key = rt.catalog.create("web")
    tokens = {
        role: parts.tokens.create(role, name=f"ui-{role}") for role in ("read", "editor", "admin")
    }
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.01)
    served = Served(f"http://127.0.0.1:{port}", rt, parts, deps, write_key, tokens)
    served.send(shop_events(time.time_ns() // 1_000_000))
    parts.segments.put_segment("pro_users", 'trait plan = "pro"', "paying on the pro plan")
    served.settle()
    seed_cluster_run(served)
    seed_propensity_run(served)
    seed_dead_letter(served)
    try:
        yield served
    finally:
        server.should_exit = True
        thread.join()
        parts.services[0].stop()  # the stores (services never started; shutdown closed the log)


def seed_cluster_run(served: Served, model: str = "customer_segments") -> None:
    """A stored clustering run (cards and map) as ``segflow ml run`` leaves it."""
    cards = [
        {"cluster": c, "name": name, "size": size, "share": size / 3, "centroid": {},
         "distinguishing": [["monetary_value_90d", z]]}
        for c, name, size, z in ((0, "High spend", 2, 1.2), (1, "Low spend", 1, -0.9))
    ]  # fmt: skip
    points = [[0.1, 0.2, 0], [0.3, 0.1, 0], [-1.0, -0.8, 1]]
    metrics = {"k": 2, "cards": cards, "changed_share": None,
               "projection": {"points": points, "centroids": [[0.2, 0.15, 0], [-1.0, -0.8, 1]]}}  # fmt: skip
    now = time.time_ns() // 1_000_000
    con = served.deps.warehouse()
    try:
        registry = Registry(con)
        registry.record_run(RunRecord(run_id="run-1", model=model, kind="cluster", job="cluster",
                                      status="succeeded", started_at_ms=now, finished_at_ms=now + 900,
                                      duration_ms=900, metrics=metrics))  # fmt: skip
        for card in cards:
            con.execute(
                "INSERT INTO ml_cluster_names VALUES (?, ?, ?, false)",
                [model, card["cluster"], card["name"]],
            )
    finally:
        con.close()


def seed_propensity_run(served: Served, model: str = "purchase_7d") -> None:
    """A trained propensity run with its validation report, as ``segflow train`` leaves it,
    and Ada's score with its reasons in the stored format (``[[feature, contribution]]``)."""
    bins = [
        {"bin_low": 0.0, "bin_high": 0.1, "count": 70, "mean_predicted": 0.04, "observed_rate": 0.05},
        {"bin_low": 0.3, "bin_high": 0.4, "count": 20, "mean_predicted": 0.35, "observed_rate": 0.3},
        {"bin_low": 0.8, "bin_high": 0.9, "count": 10, "mean_predicted": 0.85, "observed_rate": 0.8},
    ]  # fmt: skip
    validation = {"roc_auc": 0.81, "pr_auc": 0.52, "lift_top_decile": 4.2, "base_rate": 0.175,
                  "n": 100, "calibration": bins}  # fmt: skip
    now = time.time_ns() // 1_000_000
    ada = served.deps.reader.lookup("user_id", "ada")
    assert ada is not None
    con = served.deps.warehouse()
    try:
        registry = Registry(con)
        registry.put_model(ModelSpec(name=model, kind="propensity",
                                     target='performs "Order Completed" within 7 days'), now_ms=now)  # fmt: skip
        registry.record_run(RunRecord(run_id="run-p", model=model, kind="propensity", job="train",
                                      status="succeeded", started_at_ms=now, finished_at_ms=now + 500,
                                      duration_ms=500, metrics={"validation": validation,
                                      "baseline": {"roc_auc": 0.66}, "train_rows": 300}))  # fmt: skip
        con.execute("INSERT INTO ml_score_reasons VALUES (?, ?, ?)",
                    [ada.profile_id, model, '[["orders_90d", 0.31], ["recency_days", -0.12]]'])  # fmt: skip
    finally:
        con.close()
    served.parts.processor.put_scores(model, [(ada.profile_id, 0.72)], at_ms=now)
    served.settle()


def seed_dead_letter(served: Served, destination: str = "crm") -> None:
    """A destination for ``pro_users`` whose first delivery died."""
    activation = served.parts.activation
    exports = served.runtime.settings.data_path / "exports"
    activation.create_destination({"name": destination, "kind": "file", "directory": str(exports)})
    activation.subscribe(destination, "pro_users", initial_sync=True)
    now = time.time_ns() // 1_000_000
    due = activation.store.ready(destination, now + 1, 10)
    assert due, "the initial sync queued nothing"
    activation.store.record(due, now, status=500, error="disk full at the CRM",
                            latency_ms=12.0, outcome="dead")  # fmt: skip


def seed_long_profile(served: Served) -> str:
    """A profile whose identifiers, traits and score reasons are long unbroken strings (what
    real anonymous ids, emails and generated feature names look like); returns its id."""
    user = "user-" + "7f3a9c2e" * 8
    served.send([{"type": "identify", "userId": user, "anonymousId": "anon-" + "b4d1e8" * 10,
                  "traits": {"email": "a.very.long.mailbox.name.for.testing@" + "sub" * 12 + ".example.com",
                             "note": "x" * 120},
                  "messageId": "long-1"}])  # fmt: skip
    served.settle()
    found = served.deps.reader.lookup("user_id", user)
    assert found is not None
    reasons = [["days_since_last_order_completed_in_the_last_365_days_ratio", 0.4512],
               ["count_of_product_viewed_events_where_category_is_outdoor_90d", -0.2231]]  # fmt: skip
    con = served.deps.warehouse()
    try:
        con.execute(
            "INSERT INTO ml_score_reasons VALUES (?, ?, ?)",
            [found.profile_id, "purchase_7d", msgspec.json.encode(reasons).decode()],
        )
    finally:
        con.close()
    served.parts.processor.put_scores("purchase_7d", [(found.profile_id, 0.5)], at_ms=time.time_ns() // 1_000_000)  # fmt: skip
    served.settle()
    return found.profile_id
