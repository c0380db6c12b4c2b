"""Bad input always gets a 4xx with a reason, never a 5xx, and the server keeps serving."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CASES: dict[str, tuple[bytes, dict[str, str]]] = {
    "malformed json": (b'{"userId": "u", "event": ', {}),
    "not an object": (b"[1, 2, 3]", {}),
    "empty body": (b"", {}),
    "wrong types": (json.dumps({"userId": {"a": 1}, "event": ["x"]}).encode(), {}),
    "string timestamp garbage": (
        json.dumps({"userId": "u", "event": "E", "timestamp": "not a date"}).encode(),
        {},
    ),
    "huge string": (json.dumps({"userId": "u", "event": "E" * 1_000_000}).encode(), {}),
    "deeply nested": (
        b'{"userId": "u", "event": "E", "properties": ' + b'{"a":' * 5000 + b"1" + b"}" * 5001,
        {},
    ),
    "deep arrays": (
        b'{"userId": "u", "event": "E", "properties": {"a": ' + b"[" * 20000 + b"]" * 20000 + b"}}",
        {},
    ),
    "integer over 64 bits": (
        b'{"userId": "u", "event": "E", "properties": {"n": 123456789012345678901234567890}}',
        {},
    ),
    "invalid utf-8": (b'{"userId": "\xff\xfe", "event": "E"}', {}),
    "gzip bomb": (gzip.compress(b"{" * 50_000_000), {"content-encoding": "gzip"}),
    "corrupt gzip": (b"\x1f\x8b\x08\x00garbage", {"content-encoding": "gzip"}),
    "unknown encoding": (b"{}", {"content-encoding": "br"}),
    "xml content type": (b"<track/>", {"content-type": "application/xml"}),
    "form content type": (
        b"userId=u&event=E",
        {"content-type": "application/x-www-form-urlencoded"},
    ),
    "deflate bomb": (zlib.compress(b"0" * 50_000_000), {"content-encoding": "deflate"}),
}


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_4xx(case: str, path: str, client: httpx.Client, write_key: str) -> None:
    body, headers = CASES[case]
    r = client.post(path, auth=(write_key, ""), content=body, headers=headers)
    assert 400 <= r.status_code < 500, r.text
    payload = r.json()
    assert payload.get("reason") or payload.get("message") or payload.get("refused")
    assert client.get("/health").status_code == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=15,
)
keys = st.sampled_from(
    [
        "type",
        "userId",
        "anonymousId",
        "event",
        "messageId",
        "properties",
        "timestamp",
        "sentAt",
        "batch",
        "context",
        "traits",
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.dictionaries(keys, json_values) | st.binary(max_size=200))
def test_generated_bodies_never_5xx(body: Any, client: httpx.Client, write_key: str) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    for path in ("/v1/track", "/v1/batch", "/v1/i"):
        r = client.post(path, auth=(write_key, ""), content=content)
        assert r.status_code < 500, r.text
