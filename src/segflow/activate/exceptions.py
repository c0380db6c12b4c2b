"""Errors of ``segflow.activate``.

::

    SegflowError
    ├── ValidationError
    │   ├── InvalidDestinationError     a destination or subscription that cannot work
    │   └── UnsafeUrlError              SSRF guard: the URL resolves to a refused address
    ├── NotFoundError
    │   └── DestinationNotFoundError
    ├── ConflictError
    │   └── DestinationExistsError
    ├── TransientError
    │   └── RetryableDeliveryError      5xx, 408, 429, timeouts, connection errors, redirects
    └── TerminalError
        ├── RejectedDeliveryError       4xx other than 408/429 (not retried)
        └── DestinationGoneError        410 Gone: the destination is disabled

Retry decisions come from these types (see :mod:`segflow.activate.policy`).
"""

from __future__ import annotations

from typing import Any

from segflow.errors import (
    ConflictError,
    NotFoundError,
    TerminalError,
    TransientError,
    ValidationError,
)


class InvalidDestinationError(ValidationError):
    code = "invalid_destination"


class UnsafeUrlError(ValidationError):
    """The destination URL resolves to a loopback/private/link-local/metadata address.

    >>> UnsafeUrlError("http://10.0.0.1/", "10.0.0.1", "private").field
    'url'
    """

    code = "unsafe_url"

    def __init__(self, url: str, address: str, reason: str) -> None:
        super().__init__(
            "url",
            f"{url} resolves to {address} ({reason}); add it to activate.allow_list to permit it",
            details={"url": url, "address": address, "why": reason},
        )
        self.url = url
        self.address = address


class DestinationNotFoundError(NotFoundError):
    code = "destination_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no destination named {name!r}", details={"name": name})
        self.name = name


class DestinationExistsError(ConflictError):
    code = "destination_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"a destination named {name!r} already exists", details={"name": name})
        self.name = name


class RetryableDeliveryError(TransientError):
    """A delivery attempt failed in a way worth retrying."""

    code = "delivery_retryable"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s or 0.0, details=details)
        self.status = status
        self.has_retry_after = retry_after_s is not None


class RejectedDeliveryError(TerminalError):
    """The receiver refused the change (4xx other than 408/429): retrying will not help."""

    code = "delivery_rejected"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, details={"status": status})
        self.status = status


class DestinationGoneError(RejectedDeliveryError):
    """410 Gone: the receiver asks never to be called again; the destination is disabled."""

    code = "destination_gone"
