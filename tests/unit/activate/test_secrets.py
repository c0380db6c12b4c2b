"""Signing secrets are encrypted at rest, migrated when stored in clear, shown only once."""

from __future__ import annotations

import logging
import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from segflow.activate.secretbox import KEY_FILE, SecretBox, SecretsKeyError, fingerprint
from segflow.activate.service import ActivationService
from segflow.activate.signing import new_secret
from segflow.activate.ssrf import UrlGuard
from segflow.activate.store import DeliveryStore

PUBLIC = UrlGuard(resolver=lambda host: ["93.184.216.34"])


def file_bytes(data: Path) -> bytes:
    """Every byte segflow wrote for the store: the database, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in sorted(data.glob("delivery.sqlite*")))


def test_secrets_are_stored_encrypted_and_the_key_file_is_private(tmp_path: Path) -> None:
    svc = ActivationService(DeliveryStore(tmp_path / "delivery.sqlite"), guard=PUBLIC)
    assert not (tmp_path / KEY_FILE).exists()  # made when the first secret is stored
    _, secret = svc.create_destination({"name": "d", "url": "https://hooks.example/x"})
    rotated = svc.rotate_secret("d")
    assert svc.store.live_secrets("d", svc._wall_ms()) == [rotated, secret]
    for clear in (secret, rotated):
        assert clear.encode() not in file_bytes(tmp_path)
        assert clear.split("_", 1)[1].encode() not in file_bytes(tmp_path)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    shown = [s.fingerprint for s in svc.show("d")["secrets"]]
    assert shown == [fingerprint(rotated), fingerprint(secret)]
    assert secret not in str(svc.show("d"))
    svc.store.close()


def test_secrets_stored_in_clear_are_encrypted_when_the_store_opens(tmp_path: Path) -> None:
    secret = new_secret()
    legacy = sqlite3.connect(tmp_path / "delivery.sqlite")  # what an earlier release wrote
    legacy.execute("PRAGMA journal_mode=WAL")
    legacy.execute(
        "CREATE TABLE secrets (id INTEGER PRIMARY KEY, destination TEXT NOT NULL,"
        " secret TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER)"
    )
    legacy.execute(
        "INSERT INTO secrets (destination, secret, created_ms) VALUES ('d', ?, 1)", (secret,)
    )
    legacy.commit()
    legacy.close()
    assert secret.encode() in file_bytes(tmp_path)
    store = DeliveryStore(tmp_path / "delivery.sqlite")
    assert store.live_secrets("d", 2) == [secret]
    assert secret.encode() not in file_bytes(tmp_path)
    store.close()
    assert secret.encode() not in file_bytes(tmp_path)


def test_a_configured_key_is_used_and_a_wrong_key_is_a_clear_error(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    svc = ActivationService.open(tmp_path, allow_list=["127.0.0.1/32"], secrets_key=key)
    _, secret = svc.create_destination({"name": "d", "url": "http://127.0.0.1:9/"})
    svc.store.close()
    assert not (tmp_path / KEY_FILE).exists()
    assert ActivationService.open(tmp_path, secrets_key=key).store.live_secrets("d", 0) == [secret]
    wrong = DeliveryStore(tmp_path / "delivery.sqlite", box=SecretBox(Fernet.generate_key()))
    with pytest.raises(SecretsKeyError, match="secrets_key"):
        wrong.live_secrets("d", 0)
    wrong.close()
    with pytest.raises(SecretsKeyError):
        SecretBox("not-a-key")


def test_secrets_never_reach_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    svc = ActivationService(DeliveryStore(tmp_path / "delivery.sqlite"), guard=PUBLIC)
    _, secret = svc.create_destination({"name": "d", "url": "https://hooks.example/x"})
    rotated = svc.rotate_secret("d")
    svc.store.live_secrets("d", svc._wall_ms())
    svc.store.close()
    assert secret not in caplog.text and rotated not in caplog.text
