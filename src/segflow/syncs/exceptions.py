"""Errors of pulled syncs::

SegflowError
├── ValidationError
│   └── SyncInvalid            a sync definition with a bad field (HTTP 400)
├── NotFoundError
│   └── UnknownSync            no sync of that name (HTTP 404)
├── ConflictError
│   └── SyncExists             a sync of that name exists (HTTP 409)
├── ConfigError
│   └── DltMissing             the ``sources`` extra is not installed
└── TerminalError
    └── VendorError            the vendor's API refused (401, 403, 404, 4xx after retries)
"""

from __future__ import annotations

from typing import Any

from segflow.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    TerminalError,
    TransientError,
    ValidationError,
)

__all__ = [
    "DltMissing",
    "SyncExists",
    "SyncInvalid",
    "TransientError",
    "UnknownSync",
    "VendorError",
]


class SyncInvalid(ValidationError):
    code = "sync_invalid"


class UnknownSync(NotFoundError):
    code = "unknown_sync"


class SyncExists(ConflictError):
    code = "sync_exists"


class DltMissing(ConfigError):
    """Pulled syncs need dlt: ``pip install 'segflow[sources]'``."""

    code = "dlt_missing"

    def __init__(self, cause: Exception) -> None:
        super().__init__(
            "pulled syncs need dlt, which is not installed: pip install 'segflow[sources]'",
            details={"cause": str(cause)},
        )


class VendorError(TerminalError):
    """The vendor's API answered with an error that retrying will not fix."""

    code = "vendor_error"

    def __init__(self, vendor: str, status: int | None, message: str, **details: Any) -> None:
        super().__init__(
            f"{vendor}: {message}", details={"vendor": vendor, "status": status, **details}
        )
        self.vendor = vendor
        self.status = status
