"""Errors of the identity package.

::

    SegflowError
    └── ConfigError
        └── IdentityConfigError     a bad identity rule (unknown type, limit < 1)
"""

from __future__ import annotations

from segflow.errors import ConfigError


class IdentityConfigError(ConfigError):
    """A bad identity rule; ``field`` names the offending setting."""

    code = "identity_config_error"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"identity.{field}: {reason}", details={"field": field, "reason": reason})
        self.field = field
        self.reason = reason
