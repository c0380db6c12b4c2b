"""Bounded body reading, auth parsing, CORS."""

from __future__ import annotations

import asyncio
import base64
import gzip
import zlib

import pytest

from segflow.collect.asgi import UnsupportedEncoding, inflate, read_body
from segflow.collect.auth import basic_user
from segflow.collect.cors import CorsPolicy
from segflow.collect.exceptions import PayloadTooLarge
from segflow.errors import ValidationError


def _read(
    body: bytes, limit: int, headers: list[tuple[bytes, bytes]] | None = None, chunk: int = 1000
) -> bytes:
    parts = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]

    async def receive() -> dict[str, object]:
        part = parts.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(parts)}

    return asyncio.run(read_body({"headers": headers or []}, receive, limit, "max_batch_bytes"))


def test_reads_chunked_body() -> None:
    assert _read(b"x" * 5000, 5000) == b"x" * 5000


def test_refuses_declared_length_before_reading() -> None:
    async def receive() -> dict[str, object]:
        raise AssertionError("the body must not be read")

    with pytest.raises(PayloadTooLarge) as info:
        asyncio.run(
            read_body(
                {"headers": [(b"content-length", b"999999")]}, receive, 1000, "max_batch_bytes"
            )
        )
    assert info.value.limit == "max_batch_bytes"


def test_refuses_undeclared_oversized_body() -> None:
    with pytest.raises(PayloadTooLarge):
        _read(b"x" * 5001, 5000)


def test_gzip_and_deflate() -> None:
    assert _read(gzip.compress(b"hello"), 100, [(b"content-encoding", b"gzip")]) == b"hello"
    assert _read(zlib.compress(b"hello"), 100, [(b"content-encoding", b"deflate")]) == b"hello"
    with pytest.raises(UnsupportedEncoding):
        _read(b"hello", 100, [(b"content-encoding", b"br")])


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge):
        inflate(bomb, 500_000)


@pytest.mark.parametrize("body", [b"not gzip", gzip.compress(b"x" * 1000)[:20]])
def test_corrupt_or_truncated_gzip(body: bytes) -> None:
    with pytest.raises(ValidationError):
        inflate(body, 10_000)


@pytest.mark.parametrize(
    ("header", "user"),
    [
        (b"Basic " + base64.b64encode(b"key:"), "key"),
        (b"basic " + base64.b64encode(b"key"), "key"),
        (b"Basic " + base64.b64encode(b"key:secret"), "key"),
        (b"Basic !!!", None),
        (b"Basic " + base64.b64encode(b":"), None),
        (b"Bearer key", None),
        (None, None),
    ],
)
def test_basic_user(header: bytes | None, user: str | None) -> None:
    assert basic_user(header) == user


def test_cors_policy() -> None:
    allow_all = CorsPolicy(["*"])
    assert allow_all.headers(None) == []
    pre = dict(allow_all.preflight(b"https://a", b"content-type"))
    assert pre[b"access-control-allow-origin"] == b"https://a"
    assert pre[b"access-control-allow-headers"] == b"content-type"
    assert CorsPolicy(["https://a"]).preflight(b"https://b", None) == []
