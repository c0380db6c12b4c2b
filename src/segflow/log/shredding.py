"""Crypto-shredding: Kafka records readable only while their person's key exists.

A Kafka topic cannot delete one record (docs/privacy.md, "Kafka"). The Kafka driver therefore
writes every event **sealed**: encrypted with AES-256-GCM under a data key of the event's
primary identifier (``userId``, else ``anonymousId``), kept in the key table
(:mod:`segflow.log.keys`). A deletion regulation deletes the keys of every identifier of the
person, and every record of theirs, in every partition and every replica, becomes noise.

The envelope (a record's value)::

    0xC1 | version 0x01 | key id (16 bytes) | nonce (12 bytes) | AES-GCM ciphertext + tag

``0xC1`` is the one byte msgpack never writes, so a record written before this feature (a
plain msgpack event, which starts with a map) is told apart and still read, as it is
(:func:`is_sealed`); such records are erased only by the topic's retention. The header is the
cipher's associated data. A record whose key is gone (or that does not open under its key:
the person was deleted and came back with a new key) is **erased**: readers skip it and count
it, never an error.

Dead letters are sealed too, each under a key of its own (a refused payload names nobody
reliably); a regulation opens the dead letters that are still readable, and deletes the keys
of those holding one of the person's identifiers.

>>> import os, tempfile
>>> from segflow.log.keys import SqliteKeyTable
>>> from segflow.spec.events import Event, encode_event
>>> shredder = Shredder(SqliteKeyTable(os.path.join(tempfile.mkdtemp(), "keys.sqlite")))
>>> e = Event(type="track", message_id="m", source_id="s", timestamp_ms=1, received_at_ms=1,
...           user_id="ann", event="Paid")
>>> sealed = shredder.seal_events([e], [encode_event(e)])[0]
>>> b"ann" in sealed, shredder.open_many([sealed]) == [encode_event(e)]
(False, True)
>>> shredder.forget([("user_id", "ann")]), shredder.open_many([sealed])
(1, [None])
>>> shredder.table.close()
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from segflow.log.keys import ID_BYTES, KeyTable
from segflow.spec.events import Event

logger = logging.getLogger(__name__)
MARKER = 0xC1  # never used by msgpack
VERSION = 0x01
_HEADER = 2 + ID_BYTES
_NONCE = 12
NAME_BYTES = 16
NAMES_CACHED = 200_000  # identifiers whose key name a process remembers


def is_sealed(value: bytes) -> bool:
    """Is ``value`` an envelope (else a plain record written before sealing)?

    >>> is_sealed(bytes([0xC1, 1]) + bytes(40)), is_sealed(b"\\x88\\xa4type")
    (True, False)
    """
    return len(value) > _HEADER + _NONCE and value[0] == MARKER


def normalise(value: object) -> str | None:
    """An id's text as the identity graph keeps it (``segflow.identity.normalise`` for ids
    that are not emails: trimmed; numbers as text), without importing ``identity``.

    >>> normalise(" u1 "), normalise(42), normalise(None)
    ('u1', '42', None)
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    return value.strip() if isinstance(value, str) else None


def primary_identifier(event: Event) -> tuple[str, str] | None:
    """The identifier whose key seals ``event``: ``userId``, else ``anonymousId`` (normalised
    as the identity graph normalises them, so a regulation names the same key)."""
    for id_type, raw in (("user_id", event.user_id), ("anonymous_id", event.anonymous_id)):
        value = normalise(raw)
        if value:
            return id_type, value
    return None


class Shredder:
    """Seals and opens records with the keys of a :class:`~segflow.log.keys.KeyTable`, cached
    in memory; a process sees another's deletions within ``recheck_s`` (the table's
    generation), its own at once. Thread-safe. ``erased`` counts the records that did not open.
    """

    def __init__(self, table: KeyTable, *, recheck_s: float = 1.0) -> None:
        self.table = table
        self.recheck_s = recheck_s
        self.erased = 0
        self._lock = threading.Lock()
        self._by_name: dict[bytes, tuple[bytes, AESGCM]] = {}
        self._by_id: dict[bytes, AESGCM] = {}
        self._generation = -1
        self._checked = 0.0
        self._secret: bytes | None = None
        self._names: dict[str, bytes] = {}

    # -- names -----------------------------------------------------------------------------
    def name(self, id_type: str, value: str) -> bytes:
        """The key name of an identifier: HMAC-SHA256 of ``type:value`` with the table's
        secret, cut to 16 bytes (remembered: the produce path names every event)."""
        text = f"{id_type}:{value}"
        found = self._names.get(text)
        if found is None:
            if self._secret is None:
                self._secret = self.table.secret()
            if len(self._names) >= NAMES_CACHED:
                self._names.clear()
            found = hmac.digest(self._secret, text.encode(), "sha256")[:NAME_BYTES]
            self._names[text] = found
        return found

    # -- caches ----------------------------------------------------------------------------
    def _fresh(self) -> None:
        """Drop the caches when another process deleted keys (checked every ``recheck_s``);
        the caller holds the lock."""
        now = time.monotonic()
        if now - self._checked < self.recheck_s:
            return
        self._checked = now
        generation = self.table.generation()
        if generation != self._generation:
            self._by_name.clear()
            self._by_id.clear()
            self._generation = generation

    def _for_names(self, names: Iterable[bytes]) -> dict[bytes, tuple[bytes, AESGCM]]:
        with self._lock:
            self._fresh()
            missing = [n for n in set(names) if n not in self._by_name]
            if missing:
                for name, (key_id, key) in self.table.keys_for(missing).items():
                    cipher = AESGCM(key)
                    self._by_name[name] = (key_id, cipher)
                    self._by_id[key_id] = cipher
            return self._by_name

    def _for_ids(self, ids: Iterable[bytes]) -> dict[bytes, AESGCM]:
        with self._lock:
            self._fresh()
            missing = [i for i in set(ids) if i not in self._by_id]
            if missing:  # a deleted key stays missing: looked up again next time
                for key_id, key in self.table.keys_by_id(missing).items():
                    self._by_id[key_id] = AESGCM(key)
            return self._by_id

    # -- sealing ---------------------------------------------------------------------------
    def seal_events(self, events: Sequence[Event], payloads: Sequence[bytes]) -> list[bytes]:
        """The envelopes of ``payloads`` (the encoded ``events``), each under its person's key
        (an event with no usable identifier: under a key of its own)."""
        names = []
        for event in events:
            ident = primary_identifier(event)
            names.append(os.urandom(NAME_BYTES) if ident is None else self.name(*ident))
        keys = self._for_names(names)
        return [_seal(*keys[n], p) for n, p in zip(names, payloads, strict=True)]

    def seal_alone(self, payload: bytes) -> bytes:
        """``payload`` under a key of its own (a dead letter)."""
        name = os.urandom(NAME_BYTES)
        return _seal(*self._for_names([name])[name], payload)

    def open_many(self, values: Sequence[bytes], *, count: bool = True) -> list[bytes | None]:
        """The plain payloads; ``None`` for a record erased (its key is gone), counted in
        ``erased`` when ``count``. Plain records (written before sealing) are returned as
        they are."""
        ids = [bytes(v[2:_HEADER]) for v in values if is_sealed(v)]
        ciphers = self._for_ids(ids) if ids else {}
        out: list[bytes | None] = []
        for value in values:
            if not is_sealed(value):
                out.append(value)
                continue
            opened = _open(ciphers.get(bytes(value[2:_HEADER])), value)
            if opened is None and count:
                self.erased += 1
            out.append(opened)
        return out

    def sealed_id(self, value: bytes) -> bytes | None:
        """The key id an envelope names (None for a plain record)."""
        return bytes(value[2:_HEADER]) if is_sealed(value) else None

    # -- shredding -------------------------------------------------------------------------
    def forget(self, identifiers: Iterable[tuple[str, str]]) -> int:
        """Delete the keys of ``identifiers`` (``(type, value)``; only ``user_id`` and
        ``anonymous_id`` name keys): every record sealed under them is erased. Returns how
        many keys existed."""
        names = [
            self.name(t, value)
            for t, raw in identifiers
            if t in ("user_id", "anonymous_id") and (value := normalise(raw))
        ]
        return self.forget_names(names)

    def forget_ids(self, ids: Iterable[bytes]) -> int:
        """Delete keys by id (the dead letters': their names are random)."""
        wanted = sorted(set(ids))
        deleted = self.table.delete_ids(wanted) if wanted else 0
        self._dropped()
        return deleted

    def forget_names(self, names: Sequence[bytes]) -> int:
        deleted = self.table.delete(names) if names else 0
        self._dropped()
        return deleted

    def _dropped(self) -> None:
        with self._lock:  # this process sees its own deletion at once
            self._by_name.clear()
            self._by_id.clear()
            self._checked = 0.0


def _seal(key_id: bytes, cipher: AESGCM, payload: bytes) -> bytes:
    header = bytes((MARKER, VERSION)) + key_id
    nonce = os.urandom(_NONCE)
    return header + nonce + cipher.encrypt(nonce, payload, header)


def _open(cipher: AESGCM | None, value: bytes) -> bytes | None:
    if cipher is None or value[1] != VERSION:
        return None
    nonce = value[_HEADER : _HEADER + _NONCE]
    try:
        return cipher.decrypt(nonce, value[_HEADER + _NONCE :], value[:_HEADER])
    except InvalidTag:  # altered, or sealed under another key: unreadable all the same
        return None


__all__ = ["MARKER", "Shredder", "is_sealed", "primary_identifier"]
