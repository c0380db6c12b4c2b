"""Every admin API error has one shape, ``{"error": {"code", "message", "details"}}``, and bad
input is a 400 naming the field, never a 500: checked on the real app, route by route."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from segflow.api.openapi import OPERATIONS
from segflow.config import load_settings
from segflow.server.compose import Assembly, assemble
from segflow.serving.runtime import Runtime


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("errors")
    runtime = Runtime.open(load_settings(overrides={"server": {"data_dir": str(tmp)}}))
    parts: Assembly = assemble(runtime)
    try:
        tokens = {role: parts.tokens.create(role) for role in ("read", "editor", "admin")}
        restore(parts)
        yield parts.mounts["/api"], tokens, parts
    finally:
        parts.services[0].stop()
        runtime.close()


def restore(parts: Assembly) -> None:
    """A segment and a destination named ``buyers``, so routes get past their lookups."""
    if "buyers" not in parts.segments.segments():
        parts.segments.put_segment("buyers", 'did "Order Completed"')
    if "buyers" not in {d.name for d in parts.activation.list_destinations()}:
        exports = str(parts.activation.store.path.parent / "exports")
        parts.activation.create_destination(
            {"name": "buyers", "kind": "file", "directory": exports}
        )


Api = tuple[Any, dict[str, str], Assembly]


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    assert isinstance(error["details"], dict)
    return error


def test_validation_errors_name_the_field_and_reason(call: Any, api: Api) -> None:
    app, tok, _ = api
    bad = call(app, "POST", "/api/v1/segments", tok["editor"], json={"name": "Bad Name", "rule": "true"})  # fmt: skip
    assert bad.status_code == 400
    assert error_of(bad)["details"]["field"] == "name" and error_of(bad)["details"]["reason"]
    limit = call(app, "GET", "/api/v1/segments/buyers/members?limit=x", tok["read"])
    assert limit.status_code == 400
    assert error_of(limit)["details"] == {"field": "limit", "reason": "expected an integer"}
    body = call(app, "POST", "/api/v1/segments", tok["editor"], content=b"{not json")
    assert body.status_code == 400 and error_of(body)["details"]["field"] == "body"


def test_a_rule_error_carries_every_diagnostic(call: Any, api: Api) -> None:
    app, tok, _ = api
    rule = 'did "Order Completed" in last 3 parsecs and trait plan =='
    bad = call(app, "POST", "/api/v1/segments", tok["editor"], json={"name": "x", "rule": rule})
    error = error_of(bad)
    assert bad.status_code == 400 and error["code"] == "rule_syntax_error"
    assert error["details"]["field"] == "rule"
    found = error["details"]["errors"]
    assert len(found) >= 2 and all({"line", "column", "message"} <= set(d) for d in found)
    assert any("parsecs" in d["message"] for d in found)


def test_auth_errors(call: Any, api: Api) -> None:
    app, tok, _ = api
    anonymous = call(app, "GET", "/api/v1/segments")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert error_of(anonymous)["code"] == "unauthorized"
    low = call(app, "PUT", "/api/v1/segments/buyers", tok["read"], json={"rule": "true"})
    assert low.status_code == 403
    assert error_of(low)["details"] == {"role": "read", "needs": "editor"}


def test_unknown_routes_and_methods_answer_json(call: Any, api: Api) -> None:
    app, tok, _ = api
    missing = call(app, "GET", "/api/v1/nothing-here", tok["read"])
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong = call(app, "PATCH", "/api/v1/segments", tok["admin"])
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"
    assert set(error_of(wrong)["details"]["allowed"]) >= {"GET", "POST"}
    nothing = call(app, "GET", "/api/v1/segments/nope", tok["read"])
    assert nothing.status_code == 404 and error_of(nothing)["code"] == "not_found"


def test_the_models_and_destinations_routes_answer_400_for_bad_input(
    call: Any,
    api: Api,
) -> None:
    app, tok, _ = api
    model = call(app, "PUT", "/api/v1/models/m", tok["editor"], json={"kind": "nonsense"})
    assert model.status_code == 400 and error_of(model)["details"]["field"] == "body"
    job = call(app, "POST", "/api/v1/models/m/runs", tok["editor"], json={"job": "dance"})
    assert job.status_code in (400, 404)
    dest = call(app, "POST", "/api/v1/destinations", tok["admin"], json={"name": "x", "url": "ftp://x"})  # fmt: skip
    assert dest.status_code == 400 and error_of(dest)["details"]["field"]


BODIES: tuple[Any, ...] = (
    None,
    [],
    "text",
    {"x": 1},
    {"name": 5, "rule": [], "ids": ["a"], "role": 5, "identifiers": "x", "kind": 5},
    {"kinds": 5, "traits": 5, "since_ms": "x", "subscriptions": [5], "sample": "x", "at_ms": "x",
     "job": 5, "segment": 5, "url": 5, "resync": "x", "initial_sync": "x"},
)  # fmt: skip


@pytest.mark.parametrize(("method", "path"), sorted(OPERATIONS))
def test_no_route_answers_500_to_bad_input(call: Any, api: Api, method: str, path: str) -> None:
    app, tok, parts = api
    restore(parts)
    concrete = path.replace("{cluster}", "7")
    names, queries = ("nope", "buyers", "user_id:nobody"), ("", "?limit=abc&at_ms=-1&since_ms=x")
    for name, body, query in itertools.product(names, BODIES, queries):
        target = concrete.format(
            name=name, ident=name, segment=name, token_id=name, id=name, hash=name
        )
        kw: dict[str, Any] = {} if body is None else {"json": body}
        answer = call(app, method, target + query, tok["admin"], **kw)
        assert answer.status_code < 500, (method, target, body, answer.text)
        if answer.status_code >= 400:
            error_of(answer)


def test_openapi_documents_the_error_shape(call: Any, api: Api) -> None:
    app, _, _ = api
    doc = call(app, "GET", "/api/v1/openapi.json").json()
    schema = doc["components"]["schemas"]["Error"]
    assert schema["properties"]["error"]["required"] == ["code", "message", "details"]
    segments = doc["paths"]["/api/v1/segments"]["post"]["responses"]
    assert segments["400"] == {"$ref": "#/components/responses/E400"} and "403" in segments
