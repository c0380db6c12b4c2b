"""Console sessions: a signed cookie naming an API token (never its secret) and a CSRF token.

The cookie is ``base64url(json).base64url(hmac_sha256(secret, json))``; the secret is 32
random bytes kept in ``console_secret`` in the data directory (mode 0600, made on first use),
so sessions survive restarts and die with the data directory. Each request re-checks that the
token is not revoked, so revoking a token ends its sessions, and that the session itself was
not ended: logging out records the session's random ``session_id`` in the catalog
(:meth:`~segflow.catalog.tokens.TokenStore.end_session`), so a copy of the cookie taken before the
logout no longer works (the browser's copy is deleted too).

>>> import tempfile
>>> signer = Signer(load_secret(tempfile.mkdtemp()))
>>> s = Session.new("abc", "editor", now_ms=0)
>>> signer.load(signer.dump(s), now_ms=1) == s
True
>>> signer.load(signer.dump(s) + "x", now_ms=1) is None
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import msgspec

COOKIE = "segflow_console"
LOGIN_COOKIE = "segflow_login_csrf"
SECRET_FILE = "console_secret"
LIFETIME_MS = 12 * 3_600_000


@dataclass(frozen=True)
class Session:
    """Who is logged in: the token's id and role, the CSRF token, when it ends, and the
    session's own random id (what a logout revokes)."""

    token_id: str
    role: str
    csrf: str
    expires_ms: int
    session_id: str

    @classmethod
    def new(cls, token_id: str, role: str, *, now_ms: int) -> Session:
        return cls(
            token_id,
            role,
            secrets.token_urlsafe(24),
            now_ms + LIFETIME_MS,
            secrets.token_urlsafe(18),
        )


def load_secret(data_dir: str | Path) -> bytes:
    """The data directory's session secret (created, 0600, on first use)."""
    path = Path(data_dir) / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and checks session cookies with HMAC-SHA256."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self.secret, payload, hashlib.sha256).digest())

    def dump(self, session: Session) -> str:
        payload = msgspec.json.encode(session)
        return f"{_b64(payload)}.{self.sign(payload)}"

    def load(self, cookie: str | None, *, now_ms: int) -> Session | None:
        """The session of a cookie when its signature holds and it has not expired."""
        if not cookie or "." not in cookie:
            return None
        body, _, mac = cookie.partition(".")
        try:
            payload = _unb64(body)
            if not hmac.compare_digest(self.sign(payload), mac):
                return None
            session = msgspec.json.decode(payload, type=Session)
        except (ValueError, msgspec.DecodeError):
            return None
        return session if session.expires_ms > now_ms else None
