"""Bounded fuzzing of a real ``segflow serve`` on loopback: Schemathesis against the admin
API's own OpenAPI document (with an admin token), Hypothesis-generated payloads against the
collection endpoints. No answer may be a 5xx; the server must be healthy afterwards.

``SEGFLOW_FUZZ_EXAMPLES`` raises the number of examples per operation (default: bounded for
CI); examples are derandomised (the same every run) unless ``SEGFLOW_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.net import free_port
from tests.support.serve import make_source, make_token
from tests.support.wait import until

EXAMPLES = int(os.environ.get("SEGFLOW_FUZZ_EXAMPLES", "8"))
RANDOM = os.environ.get("SEGFLOW_FUZZ_RANDOM") == "1"
# writes a directory wherever the body says: exercised by tests/integration/ops/test_backup.py
SKIP = {("POST", "/api/v1/backups")}


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=not RANDOM,
        suppress_health_check=list(HealthCheck),
    )


def _healthy(url: str, key: str) -> None:
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    event = {"userId": "after-fuzz", "event": "Still Works", "messageId": os.urandom(8).hex()}
    answer = httpx.post(f"{url}/v1/track", json=event, auth=(key, ""), timeout=10)
    assert answer.status_code == 200 and answer.json() == {"success": True}


KNOWN = {
    "name": ["buyers", "spent", "crm", "files", "churn"],
    "segment": ["buyers", "spent"],
    "ident": ["user_id:u1", "email:u1@example.com", "anonymous_id:a1", "profile_id:p_0", "u1"],
    "cluster": ["0", "1", "-1", "x"],
}


def _fields(operation: Any) -> list[str]:
    """The body fields an operation's document names (``name, rule, description``)."""
    body = operation.definition.raw.get("requestBody", {})
    described = body.get("content", {}).get("application/json", {}).get("schema", {})
    text = described.get("description", "")
    return [f.strip() for f in text.split(",") if f.strip() and "." not in f]


def _seed(url: str, key: str, headers: dict[str, str]) -> None:
    api = httpx.Client(base_url=url, headers=headers, timeout=30)
    assert api.post("/api/v1/segments", json={"name": "buyers", "rule": 'did "Order Completed"'}).status_code == 201  # fmt: skip
    assert api.post("/api/v1/traits", json={"name": "spent", "rule": 'sum(revenue of "Order Completed")'}).status_code == 201  # fmt: skip
    hook = {"name": "crm", "url": f"http://127.0.0.1:{free_port()}/h", "subscriptions": [{"segment": "buyers"}]}  # fmt: skip
    assert api.post("/api/v1/destinations", json=hook).status_code == 201
    files = {"name": "files", "kind": "file", "directory": "exports", "subscriptions": [{"segment": "buyers"}]}  # fmt: skip
    assert api.post("/api/v1/destinations", json=files).status_code == 201
    events = [{"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"email": "u1@example.com"}},
              {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 5}}]  # fmt: skip
    assert httpx.post(f"{url}/v1/batch", json={"batch": events}, auth=(key, "")).status_code == 200
    until(lambda: api.get("/api/v1/profiles/user_id:u1").status_code == 200)
    api.close()


def _fuzz_operation(operation: Any, url: str, headers: dict[str, str], failures: list[str]) -> int:
    """Call one operation ``EXAMPLES`` times; 5xx answers go to ``failures``."""
    fields = _fields(operation)
    values = finite_json_values
    shaped = st.dictionaries(st.sampled_from(fields), values, max_size=len(fields)) if fields else st.none()  # fmt: skip
    done = 0

    @fuzz_settings(EXAMPLES)
    @given(case=operation.as_strategy(), data=st.data())
    def call(case: Any, data: Any) -> None:
        nonlocal done
        # real names half of the time, so requests get past the 404s
        for name in list(case.path_parameters or {}):
            if name in KNOWN and data.draw(st.booleans()):
                case.path_parameters[name] = data.draw(st.sampled_from(KNOWN[name]))
        if fields and data.draw(st.booleans()):
            case.body = data.draw(shaped)
        answer = case.call(base_url=url, session=session, headers=headers, timeout=60)
        done += 1
        if os.environ.get("SEGFLOW_FUZZ_DEBUG"):
            print("FUZZ", case.method, case.path, answer.status_code, answer.text[:80])
        if answer.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} body={case.body!r:.200} -> "
                f"{answer.status_code} {answer.text[:200]}"
            )

    # one session per operation, closed here: a session per call left sockets for the garbage
    # collector, whose ResourceWarning could land in any later test (warnings are errors)
    with requests.Session() as session:
        call()
    return done


@pytest.mark.slow
def test_admin_api_answers_no_5xx_to_generated_requests(
    tmp_path: Path, serve_factory: Callable[..., Any]
) -> None:
    server, key, token = _server(tmp_path, serve_factory)
    headers = {"Authorization": f"Bearer {token}"}
    _seed(server.url, key, headers)
    doc = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    done = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in SKIP:
            done += _fuzz_operation(operation, server.url, headers, failures)
    assert done > 100
    assert failures == [], "\n".join(failures)
    _healthy(server.url, key)
    assert "Traceback" not in server.logs()


# -- collection ------------------------------------------------------------------------------

SINGLE = ["track", "identify", "page", "screen", "group", "alias", "t", "i", "p", "s", "g", "a"]
BATCH = ["batch", "import", "b"]


def _json(finite: bool) -> st.SearchStrategy[Any]:
    floats = st.floats(allow_nan=not finite, allow_infinity=not finite)
    scalars = (
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | floats | st.text(max_size=30)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=20,
    )


json_values = _json(finite=False)
finite_json_values = _json(finite=True)
FIELDS = ["type", "messageId", "userId", "anonymousId", "event", "name", "category", "groupId",
          "previousId", "properties", "traits", "context", "integrations", "timestamp", "sentAt",
          "originalTimestamp", "writeKey"]  # fmt: skip
messages = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8) | json_values


def _nested(depth: int) -> bytes:
    return b'{"userId": "u", "event": "E", "properties": ' + b"[" * depth + b"]" * depth + b"}"


bodies = st.one_of(
    messages.map(lambda m: json.dumps(m).encode()),
    st.lists(messages, max_size=5).map(lambda b: json.dumps({"batch": b}).encode()),
    st.dictionaries(st.sampled_from(["batch", "writeKey", "sentAt", "context"]), json_values).map(
        lambda b: json.dumps(b).encode()
    ),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=5000).map(_nested),
    st.integers(min_value=1, max_value=50_000).map(
        lambda n: json.dumps({"userId": "u", "event": "E" * n}).encode()
    ),
    st.sampled_from([b"", b"null", b"[]", b'{"batch": null}', b'{"batch": {}}', b"\xff\xfe{"]),
)
encodings = st.sampled_from([None, "gzip", "gzip-corrupt", "deflate", "br", "gzip-bomb"])


def _encode(body: bytes, encoding: str | None) -> tuple[bytes, dict[str, str]]:
    if encoding is None:
        return body, {}
    if encoding == "gzip":
        return gzip.compress(body), {"content-encoding": "gzip"}
    if encoding == "gzip-corrupt":
        return gzip.compress(body)[:-6] + b"garbage", {"content-encoding": "gzip"}
    if encoding == "gzip-bomb":
        return gzip.compress(b"{" + b" " * 5_000_000), {"content-encoding": "gzip"}
    return body, {"content-encoding": encoding}


@pytest.mark.slow
def test_collection_answers_no_5xx_to_generated_payloads(
    tmp_path: Path, serve_factory: Callable[..., Any]
) -> None:
    server, key, _ = _server(tmp_path, serve_factory)
    failures: list[str] = []
    client = httpx.Client(base_url=server.url, timeout=60)

    @fuzz_settings(EXAMPLES * 25)
    @given(
        path=st.sampled_from(SINGLE + BATCH),
        prefix=st.sampled_from(["/v1/", "/", "/beacon/v1/"]),
        body=bodies,
        encoding=encodings,
        auth=st.sampled_from(["basic", "body", "none", "query"]),
    )
    def post(path: str, prefix: str, body: bytes, encoding: str | None, auth: str) -> None:
        content, headers = _encode(body, encoding)
        params = {"writeKey": key} if auth == "query" else None
        basic = (key, "") if auth == "basic" else None
        if auth == "body" and content.startswith(b"{"):
            content = b'{"writeKey": "' + key.encode() + b'", ' + content[1:]
        answer = client.post(
            prefix + path, content=content, headers=headers, params=params, auth=basic
        )
        if answer.status_code >= 500:
            failures.append(f"POST {prefix}{path} {encoding} {content[:120]!r} -> {answer.status_code} {answer.text[:200]}")  # fmt: skip
        else:
            assert answer.headers["content-type"] == "application/json"
            assert isinstance(answer.json(), dict)

    post()
    client.close()
    assert failures == [], "\n".join(failures)
    _healthy(server.url, key)
    assert "Traceback" not in server.logs()


def _server(tmp_path: Path, serve_factory: Callable[..., Any]) -> tuple[Any, str, str]:
    data = tmp_path / "data"
    key = make_source(data, "web")
    token = make_token(data, "admin")
    env = {
        "SEGFLOW_ML__SCHEDULE_ENABLED": "false",
        "SEGFLOW_ACTIVATE__ALLOW_LIST": '["127.0.0.1/32"]',
    }
    return serve_factory(data=data, env=env, source=None, role=None), key, token
