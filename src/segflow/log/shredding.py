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

**Nonces.** AES-GCM is safe as long as no (key, nonce) pair is used twice; the format only
asks for 12 bytes, and the records written with ``os.urandom(12)`` nonces still open. A nonce
is now drawn from one source per process (:class:`NonceSource`): a random 64-bit prefix
followed by a 32-bit counter, the prefix drawn again when the counter has run through (every
2**32 records) and in a forked child (``os.register_at_fork``; a child never continues its
parent's counter). Within a prefix the counter never repeats, so two records can share a
nonce only if two of the prefixes ever drawn by the processes that sealed under one key are
equal: with P such prefixes the chance is below P**2 / 2**65 — 2**-33 for P = 65,536
process lifetimes, under the 2**-32 that NIST SP 800-38D allows random nonces (which bounds
them to 2**32 records per key: a person never has that many events). What the counter gives
away — records sealed by one process share the prefix, and the counter orders them — Kafka's
own record batches already tell (the idempotent producer's id and sequence numbers).

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
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from segflow.log.keys import ID_BYTES, KeyTable
from segflow.spec.events import Event

logger = logging.getLogger(__name__)
MARKER = 0xC1  # never used by msgpack
VERSION = 0x01
_HEADER = 2 + ID_BYTES
_NONCE = 12
_MIN_SEALED = _HEADER + _NONCE  # an envelope is longer (the tag alone is 16 bytes)
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


_Decrypt = Callable[[bytes, bytes, bytes], bytes]


class _Sealer(NamedTuple):
    """What sealing under one key needs: the envelope's header (also the associated data) and
    the cipher's ``encrypt``."""

    header: bytes
    encrypt: Callable[[bytes, bytes, bytes], bytes]


class NonceSource:
    """Unique 96-bit AES-GCM nonces for one process: a random 64-bit prefix and a 32-bit
    counter (see the module docstring). Thread-safe; :meth:`take` reserves a run of ``n``.

    >>> source = NonceSource()
    >>> first = source.take(3)
    >>> source.take(1) == first + 3, first >> 32 == (first + 2) >> 32
    (True, True)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._end = 0  # no prefix drawn yet

    def take(self, n: int) -> int:
        """The first of ``n`` consecutive nonces (as integers: ``.to_bytes(12, "big")``), all
        under one prefix."""
        with self._lock:
            if self._next + n > self._end:
                self._next = int.from_bytes(os.urandom(8), "big") << 32
                self._end = self._next + (1 << 32)
            first = self._next
            self._next += n
            return first

    def reset(self) -> None:
        """Forget the prefix (a forked child must not continue its parent's counter)."""
        self._lock = threading.Lock()  # the parent may have held it at the fork
        self._next = self._end = 0


_NONCES = NonceSource()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_NONCES.reset)


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
        self._by_name: dict[bytes, _Sealer] = {}
        self._by_id: dict[bytes, _Decrypt] = {}
        self._generation = -1
        self._checked = 0.0
        self._secret: bytes | None = None
        self._names: dict[str, bytes] = {}
        self._user_names: dict[str, bytes] = {}  # raw userId -> key name
        self._anon_names: dict[str, bytes] = {}  # raw anonymousId (no userId) -> key name

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

    def _names_of(self, events: Sequence[Event]) -> list[bytes]:
        """The key name of each event's person: looked up by the raw ``userId`` (else
        ``anonymousId``) string, so a warm collector neither normalises nor formats."""
        by_user, by_anon = self._user_names, self._anon_names
        names: list[bytes] = []
        for event in events:
            user = event.user_id
            if user.__class__ is str:
                found = by_user.get(user)
            elif user is None and event.anonymous_id.__class__ is str:
                found = by_anon.get(event.anonymous_id)
            else:
                found = None
            names.append(found or self._name_of(event))
        return names

    def _name_of(self, event: Event) -> bytes:
        """The slow path of :meth:`_names_of`: normalise, name, remember by the raw string
        (only a ``str``: ``True == 1`` and ``1.0 == 1`` as dictionary keys)."""
        ident = primary_identifier(event)
        if ident is None:
            return os.urandom(NAME_BYTES)
        found = self.name(*ident)
        user, anon = event.user_id, event.anonymous_id
        if ident[0] == "user_id" and user.__class__ is str:
            _remember(self._user_names, user, found)
        elif user is None and anon.__class__ is str:
            _remember(self._anon_names, anon, found)
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
            self._by_name, self._by_id = {}, {}  # replaced: see _decrypts
            self._generation = generation

    def _sealers(self, names: Sequence[bytes]) -> list[_Sealer]:
        """The sealer of each name (keys made for the new ones), resolved under the lock: a
        deletion that empties the cache meanwhile cannot leave a name without its key."""
        with self._lock:
            self._fresh()
            by_name = self._by_name
            found = [by_name.get(n) for n in names]
            if None not in found:
                return found  # type: ignore[return-value]
            missing = {n for n, f in zip(names, found, strict=True) if f is None}
            for name, (key_id, key) in self.table.keys_for(sorted(missing)).items():
                cipher = AESGCM(key)
                by_name[name] = _Sealer(bytes((MARKER, VERSION)) + key_id, cipher.encrypt)
                self._by_id[key_id] = cipher.decrypt
            return [by_name[n] for n in names]

    def _decrypts(self, ids: Iterable[bytes] = ()) -> dict[bytes, _Decrypt]:
        """The cache ``key id -> decrypt``, after loading the keys of ``ids`` that exist (a
        deleted key stays missing: looked up again next time). The caller may read it
        without the lock: caches are replaced, never emptied, so a deletion meanwhile leaves
        it as it was (as if the read came first) instead of making other people's records
        look erased."""
        with self._lock:
            self._fresh()
            by_id = self._by_id
            missing = {i for i in ids if i not in by_id}
            if missing:
                for key_id, key in self.table.keys_by_id(sorted(missing)).items():
                    by_id[key_id] = AESGCM(key).decrypt
            return by_id

    # -- sealing ---------------------------------------------------------------------------
    def seal_events(self, events: Sequence[Event], payloads: Sequence[bytes]) -> list[bytes]:
        """The envelopes of ``payloads`` (the encoded ``events``), each under its person's key
        (an event with no usable identifier: under a key of its own).

        >>> import os, tempfile
        >>> from segflow.log.keys import SqliteKeyTable
        >>> shredder = Shredder(SqliteKeyTable(os.path.join(tempfile.mkdtemp(), "k.sqlite")))
        >>> e = Event(type="track", message_id="m", source_id="s", timestamp_ms=1,
        ...           received_at_ms=1, anonymous_id="a1")
        >>> one, two = shredder.seal_events([e, e], [b"\\x80", b"\\x80"])
        >>> one[:18] == two[:18], one[18:30] != two[18:30]  # one key, two nonces
        (True, True)
        >>> shredder.table.close()
        """
        return self.seal(events, payloads)[0]

    def seal_alone(self, payload: bytes) -> bytes:
        """``payload`` under a key of its own (a dead letter)."""
        return self.seal((), (), [payload])[1][0]

    def seal(
        self, events: Sequence[Event], payloads: Sequence[bytes], alone: Sequence[bytes] = ()
    ) -> tuple[list[bytes], list[bytes]]:
        """The envelopes of ``payloads`` (as :meth:`seal_events`) and of ``alone`` (each under
        a key of its own, as :meth:`seal_alone`), with **one** write to the key table for every
        key they need: a collector seals a whole group of appends (and its dead letters) in
        one call, so a batch of new people costs one commit. The keys are durable when this
        returns (a commit of the table, fsynced), before the caller can produce a record
        naming them.

        >>> import os, tempfile
        >>> from segflow.log.keys import SqliteKeyTable
        >>> shredder = Shredder(SqliteKeyTable(os.path.join(tempfile.mkdtemp(), "k.sqlite")))
        >>> people = [Event(type="track", message_id=f"m{i}", source_id="s", timestamp_ms=1,
        ...                 received_at_ms=1, user_id=f"u{i}") for i in range(3)]
        >>> records, letters = shredder.seal(people, [b"\\x80"] * 3, [b"refused"])
        >>> shredder.open_many(records + letters)
        [b'\\x80', b'\\x80', b'\\x80', b'refused']
        >>> shredder.table.close()
        """
        if len(events) != len(payloads):
            raise ValueError(f"{len(events)} events but {len(payloads)} payloads")
        names = self._names_of(events) if events else []
        names += [os.urandom(NAME_BYTES) for _ in alone]
        if not names:
            return [], []
        sealers = self._sealers(names)
        first = _NONCES.take(len(names))
        join = b"".join
        sealed = [
            join((header, nonce := n.to_bytes(_NONCE, "big"), encrypt(nonce, payload, header)))
            for n, (header, encrypt), payload in zip(
                range(first, first + len(names)), sealers, [*payloads, *alone], strict=True
            )
        ]
        return sealed[: len(payloads)], sealed[len(payloads) :]

    def open_many(self, values: Sequence[bytes], *, count: bool = True) -> list[bytes | None]:
        """The plain payloads; ``None`` for a record erased (its key is gone), counted in
        ``erased`` when ``count``. Plain records (written before sealing) are returned as
        they are.

        One pass over the cached keys; the records whose key is not cached are opened after
        it, with one look-up in the key table for all of them.
        """
        by_id = self._decrypts()
        out: list[bytes | None] = []
        later: list[int] = []  # the records whose key is not cached
        for value in values:
            if len(value) <= _MIN_SEALED or value[0] != MARKER:
                out.append(value)  # plain: written before sealing
                continue
            decrypt = by_id.get(value[2:_HEADER])
            if decrypt is None:
                later.append(len(out))
            elif value[1] == VERSION:  # _open, inlined (the reader's hot loop)
                try:
                    out.append(
                        decrypt(value[_HEADER:_MIN_SEALED], value[_MIN_SEALED:], value[:_HEADER])
                    )
                    continue
                except InvalidTag:
                    pass
            out.append(None)
        if later:
            by_id = self._decrypts(bytes(values[i][2:_HEADER]) for i in later)
            for i in later:
                decrypt = by_id.get(values[i][2:_HEADER])
                out[i] = None if decrypt is None else _open(decrypt, values[i])
        if count:
            erased = out.count(None)
            if erased:
                with self._lock:
                    self.erased += erased
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
            self._by_name, self._by_id = {}, {}  # replaced: see _decrypts
            self._checked = 0.0


def _open(decrypt: _Decrypt, value: bytes) -> bytes | None:
    if value[1] != VERSION:
        return None
    try:
        return decrypt(value[_HEADER:_MIN_SEALED], value[_MIN_SEALED:], value[:_HEADER])
    except InvalidTag:  # altered, or sealed under another key: unreadable all the same
        return None


def _remember(cache: dict[str, bytes], raw: str, name: bytes) -> None:
    if len(cache) >= NAMES_CACHED:
        cache.clear()
    cache[raw] = name


__all__ = ["MARKER", "NonceSource", "Shredder", "is_sealed", "primary_identifier"]
