"""The in-memory suppression list the collector, the processor and the loader consult.

Two sets of keyed identifier hashes (:mod:`segflow.privacy.identifiers`):

- **suppressed**: the stored suppressions (the catalog), reloaded when their version
  changes (another process, the CLI, may have added or removed one);
- **held**: the identifiers of regulations running now. While a deletion runs, new events
  of the person are dropped like suppressed ones, so nothing re-creates what is being
  erased; a plain ``delete`` releases them when it finishes.

An event is *blocked* when any of its identifiers (userId, anonymousId, email from its traits,
an alias's previousId, configured external ids: ``segflow.identity.extract_identifiers``) is
in either set. Checking costs nothing while both sets are empty, one HMAC per identifier
otherwise. Reads take no lock (the sets are replaced, never mutated).

>>> from segflow.identity import Identifier, IdentityRules
>>> from segflow.privacy.identifiers import identifier_hash
>>> s = SuppressionList(b"k", IdentityRules())
>>> s.blocks([Identifier("user_id", "u1")])
False
>>> s.add([identifier_hash(b"k", Identifier("user_id", "u1"))])
>>> s.blocks([Identifier("anonymous_id", "a"), Identifier("user_id", "u1")])
True
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from segflow.identity import Identifier, IdentityRules, extract_identifiers
from segflow.privacy.identifiers import identifier_hash
from segflow.spec.events import Event


class SuppressionList:
    """See the module docstring."""

    def __init__(self, key: bytes, rules: IdentityRules, suppressed: Iterable[str] = ()) -> None:
        self.key = key
        self.rules = rules
        self._lock = threading.Lock()
        self._suppressed: frozenset[str] = frozenset(suppressed)
        self._held: dict[str, frozenset[str]] = {}
        self._blocked: frozenset[str] = self._suppressed
        self.version = -1

    def __len__(self) -> int:
        return len(self._blocked)

    # -- checks (any thread, no lock) --------------------------------------------------------
    def blocks(self, idents: Sequence[Identifier]) -> bool:
        """True when one of ``idents`` is suppressed or held."""
        blocked = self._blocked
        if not blocked:
            return False
        return any(identifier_hash(self.key, i) in blocked for i in idents)

    def blocks_event(self, event: Event) -> bool:
        """True when one of the event's identifiers is suppressed or held."""
        if not self._blocked:
            return False
        return self.blocks(extract_identifiers(event, self.rules))

    # -- changes ----------------------------------------------------------------------------
    def replace(self, suppressed: Iterable[str], version: int) -> None:
        """The stored suppressions changed: take the new set."""
        with self._lock:
            self._suppressed = frozenset(suppressed)
            self.version = version
            self._rebuild()

    def add(self, hashes: Iterable[str]) -> None:
        with self._lock:
            self._suppressed = self._suppressed | set(hashes)
            self._rebuild()

    def hold(self, regulation_id: str, hashes: Iterable[str]) -> None:
        """Block ``hashes`` while regulation ``regulation_id`` runs (adds to what it holds)."""
        with self._lock:
            self._held[regulation_id] = self._held.get(regulation_id, frozenset()) | set(hashes)
            self._rebuild()

    def release(self, regulation_id: str) -> None:
        with self._lock:
            self._held.pop(regulation_id, None)
            self._rebuild()

    def _rebuild(self) -> None:
        self._blocked = self._suppressed.union(*self._held.values())
