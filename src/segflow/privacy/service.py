"""Regulations and suppressions as a service: what the API and the CLI call.

:meth:`PrivacyService.submit` validates a request, stores it ``pending`` in the catalog
(with its identifiers in clear in the working data, which the job empties when it ends) and
records it in the audit log with the identifiers **hashed**. The serve process runs it
(:mod:`segflow.privacy.runner`); the API wakes the runner at once, the CLI's requests are
picked up at the next poll.

>>> import tempfile, os
>>> from segflow.privacy.store import PrivacyStore
>>> svc = PrivacyService(PrivacyStore(os.path.join(tempfile.mkdtemp(), "catalog.sqlite")))
>>> reg = svc.submit("delete", [{"type": "email", "value": "Ann@Example.com"}], actor="cli:ann")
>>> reg.status, reg.identifiers[0].type
('pending', 'email')
>>> svc.store.close()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from segflow.audit import AuditLog
from segflow.errors import ValidationError
from segflow.identity import Identifier, IdentityRules
from segflow.privacy.exceptions import RegulationNotFound, RegulationsUnsupported
from segflow.privacy.identifiers import hashes, parse_identifiers
from segflow.privacy.store import (
    TYPES,
    HashedIdentifier,
    PrivacyStore,
    Regulation,
    Suppression,
    Work,
)


class PrivacyService:
    """See the module docstring. ``on_submit`` wakes the runner of this process, if any."""

    def __init__(
        self,
        store: PrivacyStore,
        *,
        rules: IdentityRules | None = None,
        audit: AuditLog | None = None,
        on_submit: Callable[[], None] | None = None,
        unsupported: str | None = None,
    ) -> None:
        self.store = store
        self.rules = rules or IdentityRules()
        self.audit = audit
        self.on_submit = on_submit
        self.unsupported = unsupported  # why no regulation would ever run here (refused)

    @property
    def id_types(self) -> tuple[str, ...]:
        return self.rules.id_types()  # builtin, declared and vendor ids

    def identifiers(self, raw: Any) -> list[Identifier]:
        """Validated identifiers of a request (``ValidationError`` naming the field)."""
        return parse_identifiers(raw, self.id_types)

    def hashed(self, idents: Sequence[Identifier]) -> list[HashedIdentifier]:
        key = self.store.key()
        return [
            HashedIdentifier(i.type, h) for i, h in zip(idents, hashes(key, idents), strict=True)
        ]

    # -- regulations -------------------------------------------------------------------------
    def submit(self, kind: Any, identifiers: Any, *, actor: str) -> Regulation:
        """Queue a regulation (``delete``, ``suppress`` or ``suppress_and_delete``)."""
        if kind not in TYPES:
            raise ValidationError("type", f"must be one of {', '.join(TYPES)}")
        if self.unsupported is not None:  # refused, not queued to wait forever
            raise RegulationsUnsupported(self.unsupported)
        idents = self.identifiers(identifiers)
        hashed = self.hashed(idents)
        work = Work(identifiers=[(i.type, i.value) for i in idents])
        reg = self.store.create(kind, hashed, work, actor=actor)
        if self.audit is not None:
            after = {"type": kind, "identifiers": hashed}
            self.audit.record(actor, "regulation.create", reg.id, None, after)
        if self.on_submit is not None:
            self.on_submit()
        return reg

    def get(self, regulation_id: str) -> Regulation:
        return self.store.get(regulation_id)

    def regulations(self, *, limit: int = 100, status: str | None = None) -> list[Regulation]:
        if status is not None and status not in ("pending", "running", "finished", "failed"):
            raise ValidationError("status", "must be pending, running, finished or failed")
        return self.store.recent(limit=limit, status=status)

    # -- suppressions ------------------------------------------------------------------------
    def suppressions(self, *, limit: int = 100, after: str = "") -> list[Suppression]:
        return self.store.suppressions(limit=limit, after=after)

    def unsuppress(self, hash_hex: str, *, actor: str) -> None:
        """Lift one suppression (by its hash): later events are collected again."""
        if not self.store.unsuppress(hash_hex):
            raise RegulationNotFound(f"no suppression {hash_hex}", details={"hash": hash_hex})
        if self.audit is not None:
            self.audit.record(actor, "suppression.delete", hash_hex, {"hash": hash_hex}, None)
        if self.on_submit is not None:
            self.on_submit()

    def unsuppress_identifiers(self, identifiers: Any, *, actor: str) -> list[str]:
        """Lift the suppressions of these identifiers; returns the hashes lifted."""
        lifted = []
        for h in self.hashed(self.identifiers(identifiers)):
            if self.store.unsuppress(h.hash):
                lifted.append(h.hash)
                if self.audit is not None:
                    self.audit.record(actor, "suppression.delete", h.hash, {"hash": h.hash}, None)
        if lifted and self.on_submit is not None:
            self.on_submit()
        return lifted
