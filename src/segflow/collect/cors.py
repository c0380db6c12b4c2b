"""CORS for browsers (analytics.js posts cross-origin).

>>> policy = CorsPolicy(("*",))
>>> dict(policy.headers(b"https://shop.example"))[b"access-control-allow-origin"]
b'https://shop.example'
>>> CorsPolicy(("https://a.example",)).headers(b"https://b.example")
[]
"""

from __future__ import annotations

from collections.abc import Sequence

_METHODS = b"GET, POST, OPTIONS"
_DEFAULT_HEADERS = b"Content-Type, Authorization, Content-Encoding"


class CorsPolicy:
    """Which origins may call the collector (``*`` for any); the allowed origin is echoed."""

    def __init__(self, origins: Sequence[str]) -> None:
        self._any = "*" in origins
        self._origins = {o.encode() for o in origins}

    def allows(self, origin: bytes | None) -> bool:
        return origin is not None and (self._any or origin in self._origins)

    def headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """Headers for an actual (non-preflight) response."""
        if not self.allows(origin):
            return []
        assert origin is not None
        return [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]

    def preflight(self, origin: bytes | None, requested: bytes | None) -> list[tuple[bytes, bytes]]:
        """Headers answering an ``OPTIONS`` preflight."""
        base = self.headers(origin)
        if not base:
            return []
        return [
            *base,
            (b"access-control-allow-methods", _METHODS),
            (b"access-control-allow-headers", requested or _DEFAULT_HEADERS),
            (b"access-control-max-age", b"86400"),
        ]
