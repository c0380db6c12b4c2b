"""The root of segflow's exception tree.

Every package defines its own ``exceptions.py`` with subclasses of these roots::

    SegflowError
    ├── ConfigError                  bad settings (startup refuses to run)
    ├── ValidationError              bad input from a user or an SDK (HTTP 4xx)
    │   └── spec.exceptions.*        field-level event errors
    ├── NotFoundError                unknown identifier, segment, destination (HTTP 404)
    ├── ConflictError                already exists / version conflict (HTTP 409)
    ├── TransientError               retry later: disk full, store busy (HTTP 503 + Retry-After)
    └── TerminalError                will not succeed on retry (HTTP 4xx or dead letter)

Retry decisions come from these marker types, never from parsing messages.
Exceptions carry fields (``field``, ``reason``, ``details``), not only text.
"""

from __future__ import annotations

from typing import Any


class SegflowError(Exception):
    """Root of every error segflow raises on purpose.

    >>> err = SegflowError("boom", details={"k": 1})
    >>> err.details
    {'k': 1}
    """

    code = "segflow_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of an error: ``{"code", "message", "details"}``."""
        return {"code": self.code, "message": self.message, "details": self.details}


class ConfigError(SegflowError):
    code = "config_error"


class ValidationError(SegflowError):
    """Bad input. ``field`` names the offending field (dotted path), ``reason`` says why."""

    code = "validation_error"

    def __init__(self, field: str, reason: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason, details=details)
        self.field = field
        self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["field"] = self.field
        out["reason"] = self.reason
        return out


class NotFoundError(SegflowError):
    code = "not_found"


class ConflictError(SegflowError):
    code = "conflict"


class TransientError(SegflowError):
    """Worth retrying later (disk full, store locked, backpressure)."""

    code = "unavailable"

    def __init__(
        self, message: str, *, retry_after_s: float = 1.0, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class TerminalError(SegflowError):
    """Will not succeed on retry."""

    code = "terminal_error"
