"""dlt paginators for the vendors' documented pagination (this module imports dlt).

HubSpot and Salesforce use dlt's own paginators; Zendesk's incremental export (a cursor until
``end_of_stream``, and no ``start_time`` beside a cursor) and Stripe's ``starting_after`` (the
id of the page's last object, while ``has_more``) need a small subclass each.
"""

from __future__ import annotations

from typing import Any

from dlt.sources.helpers.rest_client.paginators import (
    BaseReferencePaginator,
    JSONLinkPaginator,
    JSONResponseCursorPaginator,
)
from requests import Request, Response


class ZendeskCursorPaginator(BaseReferencePaginator):
    """``after_cursor`` until ``end_of_stream`` (Zendesk's cursor-based incremental export)."""

    after_cursor: str | None = None  # the last page's, kept at the end of the stream too

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        body = response.json()
        more = not body.get("end_of_stream", True)
        self.after_cursor = body.get("after_cursor") or self.after_cursor
        self._next_reference = self.after_cursor if more else None

    def update_request(self, request: Request) -> None:
        params: dict[str, Any] = dict(request.params or {})  # type: ignore[arg-type]
        params.pop("start_time", None)
        params["cursor"] = self._next_reference
        request.params = params


class StripeCursorPaginator(BaseReferencePaginator):
    """``starting_after`` = the last object's id, while ``has_more`` (Stripe's list API)."""

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        more = bool(response.json().get("has_more"))
        self._next_reference = data[-1]["id"] if more and data else None

    def update_request(self, request: Request) -> None:
        params: dict[str, Any] = dict(request.params or {})  # type: ignore[arg-type]
        request.params = {**params, "starting_after": self._next_reference}


def hubspot() -> JSONResponseCursorPaginator:
    return JSONResponseCursorPaginator(cursor_path="paging.next.after", cursor_body_path="after")


def hubspot_list() -> JSONResponseCursorPaginator:
    """HubSpot's list API (``GET /crm/v3/objects/{type}``): ``after`` in the query."""
    return JSONResponseCursorPaginator(cursor_path="paging.next.after", cursor_param="after")


def zendesk() -> ZendeskCursorPaginator:
    return ZendeskCursorPaginator()


def stripe() -> StripeCursorPaginator:
    return StripeCursorPaginator()


def salesforce() -> JSONLinkPaginator:
    return JSONLinkPaginator(next_url_path="nextRecordsUrl")
