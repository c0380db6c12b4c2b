"""The ML CLI (real subprocesses) and /api/v1/models (a real server on loopback)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from tests.support.cli import run
from tests.support.net import free_port

from segflow.api.auth import authorizer
from segflow.api.models import ModelsDeps, build_model_routes
from segflow.catalog.tokens import TokenStore
from segflow.clock import DAY_MS, ManualClock
from segflow.segments.store import DefinitionStore

NOW = 120 * DAY_MS


def segflow(*args: str) -> subprocess.CompletedProcess[str]:
    return run(*args, env={"OMP_NUM_THREADS": "1"}, timeout_s=300)


@pytest.fixture
def data_dir(tmp_path: Path, warehouse: Callable[..., duckdb.DuckDBPyConnection]) -> Path:
    con = warehouse(150)
    con.close()
    (tmp_path / "warehouse-0.duckdb").rename(tmp_path / "warehouse.duckdb")
    return tmp_path


def test_cli_train_cluster_models(data_dir: Path) -> None:
    trained = segflow("train", "purchase_7d", "--data-dir", str(data_dir), "--as-of-ms", str(NOW))
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["status"] == "succeeded"
    clustered = segflow("cluster", "--data-dir", str(data_dir), "--as-of-ms", str(NOW))
    assert clustered.returncode == 0, clustered.stderr
    listed = json.loads(segflow("models", "list", "--data-dir", str(data_dir), "--json").stdout)
    by_name = {m["name"]: m for m in listed}
    assert by_name["purchase_7d"]["last_run"]["status"] == "succeeded"
    assert by_name["customer_segments"]["last_run"]["job"] == "cluster"
    shown = json.loads(
        segflow("models", "show", "customer_segments", "--data-dir", str(data_dir)).stdout
    )
    cluster = next(iter(shown["clusters"]))
    saved = segflow(
        "models",
        "save-cluster",
        "customer_segments",
        cluster,
        "--segment",
        "discovered",
        "--data-dir",
        str(data_dir),
    )
    assert saved.returncode == 0, saved.stderr
    store = DefinitionStore(data_dir / "catalog.sqlite")
    assert (
        store.get("segment", "discovered").rule
        == f"cluster id of model customer_segments = {cluster}"
    )
    old_name = shown["clusters"][cluster]
    store.put("segment", "by_hand", f"cluster of model customer_segments = {json.dumps(old_name)}")
    store.close()
    renamed = segflow("models", "rename-cluster", "customer_segments", cluster, "Regulars",
                      "--data-dir", str(data_dir))  # fmt: skip
    assert renamed.returncode == 0, renamed.stderr
    assert renamed.stdout.strip() == f"customer_segments/{cluster}: {old_name} -> Regulars"
    assert f"segment by_hand names the cluster {old_name!r}" in renamed.stderr
    missing = segflow("models", "show", "nope", "--data-dir", str(data_dir))
    assert missing.returncode == 2 and json.loads(missing.stderr)["code"] == "model_not_found"


def test_cli_ltv_on_a_csv_with_iso_dates(tmp_path: Path) -> None:
    lines = ["cust,day,value"]
    for c in range(40):
        for d in range(0, 300, 10 + c % 7 * 15):
            lines.append(f"c{c},2024-{1 + d // 31 % 12:02d}-{1 + d % 28:02d},{10 + c % 5}")
    path = tmp_path / "tx.csv"
    path.write_text("\n".join(lines) + "\n")
    out = segflow(
        "ltv",
        "fit",
        str(path),
        "--customer-col",
        "cust",
        "--date-col",
        "day",
        "--amount-col",
        "value",
        "--calibration-end",
        "2024-06-30",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result["bgnbd"]) == {"r", "alpha", "a", "b"} and set(result["gamma_gamma"]) == {
        "p",
        "q",
        "v",
    }
    assert result["holdout"]["actual_repeat_purchases"] > 0
    bad = segflow(
        "ltv",
        "fit",
        str(path),
        "--customer-col",
        "nope",
        "--date-col",
        "day",
        "--calibration-end",
        "2024-06-30",
    )
    assert bad.returncode == 2 and json.loads(bad.stderr)["field"] == "customer_col"


@pytest.fixture
def api(
    tmp_path: Path, warehouse: Callable[..., duckdb.DuckDBPyConnection]
) -> Iterator[tuple[str, str, str]]:
    con = warehouse(150)

    tokens = TokenStore(tmp_path / "catalog.sqlite")
    editor, reader = tokens.create("editor", name="ml"), tokens.create("read", name="viewer")
    deps = ModelsDeps(
        connect=con.cursor,
        clock=ManualClock(NOW),
        catalog_path=tmp_path / "catalog.sqlite",
        authorize=authorizer(tokens),
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=build_model_routes(deps)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.01)
    yield f"http://127.0.0.1:{port}", editor, reader
    server.should_exit = True
    thread.join()


def test_models_api(api: tuple[str, str, str]) -> None:
    base_url, editor, reader = api
    admin = {"authorization": f"Bearer {editor}"}
    with httpx.Client(base_url=base_url, timeout=120) as client:
        assert client.get("/api/v1/models").status_code == 401
        client.headers["authorization"] = f"Bearer {reader}"
        models = client.get("/api/v1/models").json()["models"]
        assert {m["spec"]["name"] for m in models} >= {"churn", "customer_segments", "ltv"}
        assert client.post("/api/v1/models/segs/runs", json={}).status_code == 403  # read role
        put = client.put("/api/v1/models/segs", json={"kind": "cluster", "k": 3}, headers=admin)
        assert put.status_code == 200, put.text
        bad = client.put(
            "/api/v1/models/x", json={"kind": "propensity", "target": "whatever"}, headers=admin
        )
        assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "target"
        not_a_number = client.put(
            "/api/v1/models/live",
            json={
                "kind": "cluster",
                "feature_traits": {"fav": "most_frequent(category of any event)"},
            },
            headers=admin,
        )
        assert not_a_number.status_code == 400, not_a_number.text
        error = not_a_number.json()["error"]
        assert error["details"]["field"] == "feature_traits" and "fav" in error["message"]
        run = client.post("/api/v1/models/segs/runs", json={}, headers=admin)
        assert run.status_code == 200, run.text
        assert run.json()["run"]["status"] == "succeeded"
        clusters = client.get("/api/v1/models/segs/clusters").json()
        assert len(clusters["clusters"]) == 3 and clusters["projection"]["points"]
        cid = clusters["clusters"][0]["cluster"]
        renamed = client.patch(
            f"/api/v1/models/segs/clusters/{cid}", json={"name": "Loyal core"}, headers=admin
        )
        assert renamed.status_code == 200
        assert renamed.json()["name"] == "Loyal core" and renamed.json()["previous_name"]
        other = clusters["clusters"][1]["cluster"]
        taken = client.patch(
            f"/api/v1/models/segs/clusters/{other}", json={"name": "Loyal core"}, headers=admin
        )
        assert taken.status_code == 400 and taken.json()["error"]["details"]["field"] == "name"
        saved = client.post(
            f"/api/v1/models/segs/clusters/{cid}/segment", json={"segment": "loyal"}, headers=admin
        )
        assert saved.json()["rule"] == f"cluster id of model segs = {cid}"
        assert client.get("/api/v1/models/segs/runs").json()["runs"][0]["job"] == "cluster"
        assert client.get("/api/v1/models/nope").status_code == 404
