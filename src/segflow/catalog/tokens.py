"""API tokens and the service over them (``issue``, ``revoke``: what ``/api/v1/tokens``,
the console's Tokens page and ``segflow tokens`` share). Roles ``read`` < ``editor`` < ``admin``, stored hashed in the catalog
(``catalog.sqlite``, or the shared PostgreSQL catalog with ``shared.dsn``).

A token is ``sft_<id>_<secret>``: the id finds the row, the secret is checked against its
SHA-256 digest with a constant-time compare. Secrets are 32 random bytes, so a fast hash is
enough (no password-grade KDF needed); the plain token is shown once, at creation.

>>> import tempfile, os
>>> tokens = TokenStore(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"))
>>> token = tokens.create("editor", name="ci")
>>> tokens.verify(token).role, tokens.verify(token + "x")
('editor', None)
>>> tokens.verify(token).allows("read"), tokens.verify(token).allows("admin")
(True, False)
>>> info, token = issue(tokens, None, "ops", {"role": "read", "name": "grafana"})
>>> (info.role, info.name, token.startswith("sft_" + info.token_id + "_"))
('read', 'grafana', True)
>>> revoke(tokens, None, "ops", info.token_id).revoked_ms is not None
True
>>> tokens.close()
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from typing import Any

import msgspec

from segflow.catalog.audit import AuditLog
from segflow.catalog.db import CatalogTarget, open_catalog_db
from segflow.errors import NotFoundError, ValidationError

ROLES = ("read", "editor", "admin")
PREFIX = "sft_"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    token_id TEXT PRIMARY KEY,
    secret_sha256 BLOB NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS console_sessions_ended (
    session_id TEXT PRIMARY KEY,
    expires_ms INTEGER NOT NULL
);
"""
_SCHEMA_POSTGRES = (
    """CREATE TABLE IF NOT EXISTS api_tokens (
    token_id TEXT PRIMARY KEY,
    secret_sha256 BYTEA NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
)""",
    """CREATE TABLE IF NOT EXISTS console_sessions_ended (
    session_id TEXT PRIMARY KEY,
    expires_ms BIGINT NOT NULL
)""",
)


class TokenInfo(msgspec.Struct, frozen=True):
    """A stored token (never its secret)."""

    token_id: str
    role: str
    name: str
    created_ms: int
    revoked_ms: int | None = None

    def allows(self, role: str) -> bool:
        """True when this token's role is at least ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class TokenStore:
    """Create, verify, list and revoke API tokens in the catalog."""

    def __init__(self, catalog: CatalogTarget) -> None:
        self.con = open_catalog_db(catalog, sqlite=_SCHEMA, postgres=_SCHEMA_POSTGRES)
        self.lock = threading.Lock()

    def create(self, role: str, *, name: str = "") -> str:
        """A new token with ``role``; returns the plain token (shown once)."""
        return self.issue(role, name=name)[1]

    def issue(self, role: str, *, name: str = "") -> tuple[TokenInfo, str]:
        """A new token with ``role``: its stored info and the plain token (shown once)."""
        if role not in ROLES:
            raise ValidationError("role", f"must be one of {', '.join(ROLES)}")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        info = TokenInfo(token_id, role, name, time.time_ns() // 1_000_000)
        with self.lock:
            self.con.execute(
                "INSERT INTO api_tokens (token_id, secret_sha256, role, name, created_ms) VALUES (?, ?, ?, ?, ?)",
                (token_id, _digest(secret), role, name, info.created_ms),
            )
        return info, f"{PREFIX}{token_id}_{secret}"

    def get(self, token_id: str) -> TokenInfo | None:
        """A token's info by id (revoked ones too), or None."""
        with self.lock:
            row = self.con.execute(
                "SELECT token_id, role, name, created_ms, revoked_ms FROM api_tokens WHERE token_id = ?",
                (token_id,),
            ).fetchone()
        return None if row is None else TokenInfo(*row)

    def verify(self, token: str) -> TokenInfo | None:
        """The token's info when it is valid and not revoked, else None."""
        if not token.startswith(PREFIX):
            return None
        token_id, sep, secret = token[len(PREFIX) :].partition("_")
        if not sep:
            return None
        with self.lock:
            row = self.con.execute(
                "SELECT secret_sha256, role, name, created_ms, revoked_ms FROM api_tokens WHERE token_id = ?",
                (token_id,),
            ).fetchone()
        if row is None or row[4] is not None:
            return None
        if not hmac.compare_digest(bytes(row[0]), _digest(secret)):
            return None
        return TokenInfo(token_id, row[1], row[2], row[3])

    def list(self) -> list[TokenInfo]:
        """Every token, oldest first (never a secret)."""
        with self.lock:
            rows = self.con.execute(
                "SELECT token_id, role, name, created_ms, revoked_ms FROM api_tokens ORDER BY created_ms"
            ).fetchall()
        return [TokenInfo(*r) for r in rows]

    def revoke(self, token_id: str) -> bool:
        """Revoke an active token; False when there is none with that id."""
        with self.lock:
            cur = self.con.execute(
                "UPDATE api_tokens SET revoked_ms = ? WHERE token_id = ? AND revoked_ms IS NULL",
                (time.time_ns() // 1_000_000, token_id),
            )
        return cur.rowcount > 0

    def end_session(self, session_id: str, expires_ms: int) -> None:
        """Record that a console session ended (logout) before ``expires_ms``, when its cookie
        would have; rows of sessions that have expired anyway are dropped on the way.

        >>> import tempfile, os
        >>> tokens = TokenStore(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"))
        >>> tokens.end_session("s1", expires_ms=2**40)
        >>> tokens.session_ended("s1"), tokens.session_ended("s2")
        (True, False)
        """
        now = time.time_ns() // 1_000_000
        with self.lock, self.con.write("console_sessions_ended"):
            self.con.execute("DELETE FROM console_sessions_ended WHERE expires_ms <= ?", (now,))
            self.con.execute(
                "INSERT INTO console_sessions_ended (session_id, expires_ms) VALUES (?, ?)"
                " ON CONFLICT(session_id) DO NOTHING",
                (session_id, expires_ms),
            )

    def session_ended(self, session_id: str) -> bool:
        """Whether the console session ``session_id`` was ended by a logout."""
        with self.lock:
            row = self.con.execute(
                "SELECT 1 FROM console_sessions_ended WHERE session_id = ?", (session_id,)
            ).fetchone()
        return row is not None

    def close(self) -> None:
        self.con.close()


MAX_NAME = 100


def issue(
    store: TokenStore, audit: AuditLog | None, who: str, body: dict[str, Any]
) -> tuple[TokenInfo, str]:
    """A new token from ``{"role", "name"?}``, recorded in ``audit`` (never its secret)."""
    role, name = body.get("role"), body.get("name", "")
    if role not in ROLES:
        raise ValidationError("role", f"must be one of {', '.join(ROLES)}")
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise ValidationError("name", f"must be text of at most {MAX_NAME} characters")
    info, token = store.issue(role, name=name.strip())
    if audit is not None:
        audit.record(who, "token.create", info.token_id, None, msgspec.to_builtins(info))
    return info, token


def revoke(store: TokenStore, audit: AuditLog | None, who: str, token_id: str) -> TokenInfo:
    """Revoke an active token; :class:`NotFoundError` when there is none with that id."""
    before = store.get(token_id)
    if before is None or before.revoked_ms is not None or not store.revoke(token_id):
        raise NotFoundError(f"no active token {token_id}", details={"token_id": token_id})
    after = store.get(token_id)
    assert after is not None
    if audit is not None:
        audit.record(
            who, "token.revoke", token_id, msgspec.to_builtins(before), msgspec.to_builtins(after)
        )
    return after
