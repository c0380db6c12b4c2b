"""Errors of the event model: a message that cannot become an :class:`~segflow.spec.Event`.

::

    ValidationError (segflow.errors)
    └── InvalidMessage            one message is refused; ``field`` and ``reason`` say why
        └── MalformedPayload      the bytes are not JSON (or not UTF-8, or nested too deep)

>>> err = InvalidMessage("event", "required for track", message_id="m1")
>>> (err.field, err.reason, err.message_id)
('event', 'required for track', 'm1')
"""

from __future__ import annotations

from typing import Any

from segflow.errors import ValidationError


class InvalidMessage(ValidationError):
    """A message that breaks the Segment spec (missing or mistyped field)."""

    code = "invalid_message"

    def __init__(
        self,
        field: str,
        reason: str,
        *,
        message_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(field, reason, details=details)
        self.message_id = message_id

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.message_id is not None:
            out["messageId"] = self.message_id
        return out


class MalformedPayload(InvalidMessage):
    """The payload is not a JSON object segflow can read."""

    code = "malformed_payload"
