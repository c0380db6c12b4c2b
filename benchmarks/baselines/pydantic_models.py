"""The Segment message as a pydantic v2 model, with the same rules segflow checks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Message(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    type: str | None = None
    message_id: str | None = Field(None, alias="messageId", max_length=100)
    user_id: str | int | None = Field(None, alias="userId")
    anonymous_id: str | int | None = Field(None, alias="anonymousId")
    event: str | None = None
    name: str | None = None
    category: str | None = None
    group_id: str | int | None = Field(None, alias="groupId")
    previous_id: str | int | None = Field(None, alias="previousId")
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    timestamp: str | None = None
    sent_at: str | None = Field(None, alias="sentAt")
    original_timestamp: str | None = Field(None, alias="originalTimestamp")

    @model_validator(mode="after")
    def spec_rules(self) -> Message:
        if self.type not in ("track", "identify", "page", "screen", "group", "alias"):
            raise ValueError("unknown type")
        if self.user_id in (None, "") and self.anonymous_id in (None, ""):
            raise ValueError("userId or anonymousId is required")
        if self.type == "track" and not self.event:
            raise ValueError("event is required for track")
        if self.type == "alias" and (not self.previous_id or not self.user_id):
            raise ValueError("alias needs previousId and userId")
        if self.type == "group" and not self.group_id:
            raise ValueError("group needs groupId")
        return self


class Batch(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    batch: list[Message]
    write_key: str | None = Field(None, alias="writeKey")
    sent_at: str | None = Field(None, alias="sentAt")
