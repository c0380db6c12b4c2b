"""Webhook signing secrets at rest: encrypted with Fernet (AES-128-CBC + HMAC-SHA256).

segflow needs each secret in clear to sign, so it cannot keep only a hash. It keeps them
encrypted in ``delivery.sqlite`` with a key that lives elsewhere:

- ``activate.secrets_key`` (env ``SEGFLOW_ACTIVATE__SECRETS_KEY``): a Fernet key, for
  operators who keep keys in a secrets manager; or else
- ``DATA_DIR/secrets.key``, created on first use with mode 0600.

A copy of ``delivery.sqlite`` alone (a backup, a file attached to a bug report) then holds no
usable secret. A fingerprint (``sha256`` of the secret, 12 hex digits) identifies a secret in
listings; the secret itself is shown once, when it is created or rotated.

>>> import tempfile
>>> box = SecretBox.open(tempfile.mkdtemp())
>>> token = box.encrypt("whsec_abc")
>>> token.startswith("gAAAAA"), box.decrypt(token)
(True, 'whsec_abc')
>>> fingerprint("whsec_abc")
'e1ac16da4cac'
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from segflow.errors import ConfigError

KEY_FILE = "secrets.key"


class SecretsKeyError(ConfigError):
    """The configured key cannot decrypt the stored secrets (or is not a Fernet key)."""

    code = "secrets_key"


def fingerprint(secret: str) -> str:
    """A short, non-reversible name for a secret (safe to show and log)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def _fernet(key: str | bytes) -> Fernet:
    try:
        return Fernet(key)
    except (ValueError, TypeError) as exc:
        raise SecretsKeyError(
            "activate.secrets_key is not a Fernet key (32 url-safe base64 bytes)"
        ) from exc


class SecretBox:
    """Encrypts and decrypts secrets with one Fernet key: ``key``, or the one in ``key_file``
    (read, or made, at the first use: a store that never holds a secret makes no key file)."""

    def __init__(self, key: str | bytes | None = None, *, key_file: Path | None = None) -> None:
        if key is None and key_file is None:
            raise SecretsKeyError("a SecretBox needs a key or a key file")
        self._fernet = None if key is None else _fernet(key)
        self._key_file = key_file

    @classmethod
    def open(cls, data_dir: str | Path, key: str | None = None) -> SecretBox:
        """The box of ``key`` when given, else of ``DATA_DIR/secrets.key`` (made, 0600, once)."""
        return cls(key) if key else cls(key_file=Path(data_dir) / KEY_FILE)

    def _box(self) -> Fernet:
        if self._fernet is None:
            assert self._key_file is not None
            self._fernet = _fernet(load_key(self._key_file))
        return self._fernet

    def encrypt(self, secret: str) -> str:
        return self._box().encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._box().decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretsKeyError(
                f"cannot decrypt the destination secrets: wrong activate.secrets_key or {KEY_FILE}?"
            ) from exc


def load_key(path: Path) -> bytes:
    """The key in ``path``; when missing, a new one is written to a private (0600) temporary
    file and linked into place, so a concurrent reader never sees a half-written key."""
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.link(tmp, path)
    finally:
        tmp.unlink()
    return path.read_bytes().strip()
