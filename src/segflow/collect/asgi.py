"""Small ASGI helpers for the collector: reading bodies within limits, JSON responses.

The collector is a plain ASGI app (no framework on the hot path): one request reads its
body once, bounded, and answers with one JSON document.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from segflow.collect.exceptions import PayloadTooLarge
from segflow.errors import ValidationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_json = msgspec.json.Encoder()
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_INFLATE_STEP = 64 * 1024


class UnsupportedEncoding(ValidationError):
    code = "unsupported_content_encoding"


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (``name`` in lower case)."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def declared_length(scope: Scope) -> int | None:
    raw = header(scope, b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


async def read_body(
    scope: Scope, receive: Receive, limit: int, name: str = "max_body_bytes"
) -> bytes:
    """The request body, decompressed, refusing anything over ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before reading; a gzip body is
    inflated in steps that never go past ``limit + 1`` bytes.

    >>> import asyncio, gzip
    >>> scope = {"headers": [(b"content-encoding", b"gzip")]}
    >>> async def receive():
    ...     return {"type": "http.request", "body": gzip.compress(b"x" * 10_000), "more_body": False}
    >>> try:
    ...     asyncio.run(read_body(scope, receive, 1000))
    ... except PayloadTooLarge as exc:
    ...     print(exc.reason)
    over the max_body_bytes limit of 1000
    """
    declared = declared_length(scope)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(name, limit, actual=declared)
    body = await _receive_all(receive, limit, name)
    encoding = (header(scope, b"content-encoding") or b"identity").strip().lower()
    if encoding in (b"identity", b""):
        return body
    if encoding in (b"gzip", b"x-gzip"):
        return inflate(body, limit, _GZIP_WBITS, name)
    if encoding == b"deflate":
        return inflate(body, limit, zlib.MAX_WBITS, name)
    raise UnsupportedEncoding(
        "Content-Encoding", f"unsupported encoding {encoding.decode('latin-1')!r}"
    )


async def _receive_all(receive: Receive, limit: int, name: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(name, limit, actual=size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def inflate(
    data: bytes, limit: int, wbits: int = _GZIP_WBITS, name: str = "max_body_bytes"
) -> bytes:
    """Decompress ``data``, never producing more than ``limit + 1`` bytes (gzip bombs)."""
    inflater = zlib.decompressobj(wbits)
    out: list[bytes] = []
    size = 0
    pending = data
    try:
        while pending and not inflater.eof:
            piece = inflater.decompress(pending, min(_INFLATE_STEP, limit + 1 - size))
            size += len(piece)
            if size > limit:
                raise PayloadTooLarge(name, limit)
            out.append(piece)
            pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise ValidationError("Content-Encoding", f"corrupt compressed body: {exc}") from exc
    if not inflater.eof:
        raise ValidationError("Content-Encoding", "truncated compressed body")
    return b"".join(out)


async def send_json(send: Send, status: int, body: Any, headers: Headers | None = None) -> None:
    """Answer with a JSON document."""
    payload = _json.encode(body)
    out: Headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if headers:
        out.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": payload})


async def send_empty(send: Send, status: int, headers: Headers) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})
