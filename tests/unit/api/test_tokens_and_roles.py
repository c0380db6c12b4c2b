"""Tokens over the API (secret shown once, stored hashed, audited) and what each role may do."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segflow.config import load_settings
from segflow.server.compose import Assembly, assemble
from segflow.serving.runtime import Runtime

Api = tuple[Any, dict[str, str], Assembly, Runtime]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    runtime = Runtime.open(load_settings(overrides={"server": {"data_dir": str(tmp_path)}}))
    parts = assemble(runtime)
    try:
        tokens = {
            role: parts.tokens.create(role, name=role) for role in ("read", "editor", "admin")
        }
        yield parts.mounts["/api"], tokens, parts, runtime
    finally:
        parts.services[0].stop()
        runtime.close()


def test_an_admin_creates_lists_and_revokes_tokens(call: Any, api: Api) -> None:
    app, tok, parts, runtime = api
    data = runtime.settings.data_path
    made = call(app, "POST", "/api/v1/tokens", tok["admin"], json={"role": "editor", "name": "ci"})
    assert made.status_code == 201, made.text
    token, info = made.json()["token"], made.json()["info"]
    assert info["role"] == "editor" and info["name"] == "ci" and token.startswith("sft_")
    assert call(app, "GET", "/api/v1/segments", token).status_code == 200  # it works at once
    secret = token.split("_", 2)[2]
    stored = b"".join(p.read_bytes() for p in data.glob("catalog.sqlite*"))
    assert secret.encode() not in stored
    assert hashlib.sha256(secret.encode()).digest() in stored
    listed = call(app, "GET", "/api/v1/tokens", tok["admin"])
    assert secret not in listed.text
    assert info["token_id"] in {t["token_id"] for t in listed.json()["tokens"]}
    gone = call(app, "DELETE", f"/api/v1/tokens/{info['token_id']}", tok["admin"])
    assert gone.status_code == 200 and gone.json()["revoked"]["revoked_ms"] is not None
    assert call(app, "GET", "/api/v1/segments", token).status_code == 401
    again = call(app, "DELETE", f"/api/v1/tokens/{info['token_id']}", tok["admin"])
    assert again.status_code == 404
    actions = [(e.action, e.target) for e in parts.segments.audit.list()]  # type: ignore[union-attr]
    assert ("token.create", info["token_id"]) in actions
    assert ("token.revoke", info["token_id"]) in actions
    audit = call(app, "GET", "/api/v1/audit?action=token.", tok["admin"]).json()["entries"]
    assert all(secret not in str(e) for e in audit) and audit[0]["actor"].endswith("(admin)")


def test_bad_token_requests_are_400(call: Any, api: Api) -> None:
    app, tok, _, _ = api
    bad = call(app, "POST", "/api/v1/tokens", tok["admin"], json={"role": "root"})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "role"
    long = call(app, "POST", "/api/v1/tokens", tok["admin"], json={"role": "read", "name": "x" * 101})  # fmt: skip
    assert long.status_code == 400 and long.json()["error"]["details"]["field"] == "name"


# (method, path, body, lowest role that may)
ACTIONS: tuple[tuple[str, str, Any, str], ...] = (
    ("GET", "/api/v1/segments", None, "read"),
    ("POST", "/api/v1/segments/check", {"rule": "true"}, "read"),
    ("POST", "/api/v1/segments", {"name": "everyone", "rule": "true"}, "editor"),
    ("POST", "/api/v1/traits", {"name": "orders", "rule": 'count("Order Completed")'}, "editor"),
    ("PUT", "/api/v1/models/segs", {"kind": "cluster", "k": 3}, "editor"),
    ("GET", "/api/v1/tokens", None, "admin"),
    ("POST", "/api/v1/tokens", {"role": "read"}, "admin"),
    ("POST", "/api/v1/sources", {"name": "ios"}, "admin"),
    ("PUT", "/api/v1/sources/ios/config", {}, "admin"),
    ("GET", "/api/v1/sources/ios/dead-letters", None, "admin"),
    ("GET", "/api/v1/audit", None, "admin"),
    ("DELETE", "/api/v1/traits/orders", None, "admin"),
    ("DELETE", "/api/v1/segments/everyone", None, "admin"),
)


def test_each_role_does_what_it_may_and_nothing_more(call: Any, api: Api) -> None:
    app, tok, parts, runtime = api
    order = ("read", "editor", "admin")
    for method, path, body, lowest in ACTIONS:
        kw = {} if body is None else {"json": body}
        for role in order[: order.index(lowest)]:
            refused = call(app, method, path, tok[role], **kw)
            assert refused.status_code == 403, (role, method, path, refused.text)
            assert refused.json()["error"]["details"] == {"role": role, "needs": lowest}
        done = call(app, method, path, tok[lowest], **kw)
        assert done.status_code < 300, (lowest, method, path, done.text)
    assert "everyone" not in parts.segments.segments()
    assert [s.name for s in runtime.catalog.list()] == ["ios"]


def test_a_new_source_gives_its_write_key_once(call: Any, api: Api) -> None:
    app, tok, _, runtime = api
    made = call(app, "POST", "/api/v1/sources", tok["admin"], json={"name": "ios"})
    assert made.status_code == 201, made.text
    key = made.json()["write_key"]
    source = runtime.catalog.authenticate(key)
    assert source is not None and source.name == "ios"
    assert key not in call(app, "GET", "/api/v1/sources", tok["read"]).text
    assert key not in call(app, "GET", "/api/v1/sources/ios", tok["read"]).text
    taken = call(app, "POST", "/api/v1/sources", tok["admin"], json={"name": "ios"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "source_exists"
