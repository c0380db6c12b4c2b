"""A loopback stand-in for the vendors' APIs that pulled syncs read (segflow.syncs): HubSpot's
CRM search (``after`` cursors), Zendesk's cursor-based incremental export (``after_cursor``,
``end_of_stream``), Stripe's lists (``starting_after`` + ``has_more``, newest first) and
Salesforce's SOQL query (``nextRecordsUrl``, ``SystemModstamp``), each as documented, with a
bearer token, and answers queued by a test (429 + Retry-After, 500, 401). Also: Salesforce's
OAuth 2.0 refresh-token flow (``/services/oauth2/token``; an unknown access token is a 401
``INVALID_SESSION_ID``), Zendesk's API token auth (basic ``email/token:TOKEN``), HubSpot's v4
associations (batch read) and archived objects (``archived=true``).

>>> api = VendorApi(token="t")
>>> api.add("stripe", "customers", {"id": "cus_1", "created": 1, "email": "a@b.c"})
>>> api.close()
"""

from __future__ import annotations

import base64
import bisect
import json
import re
import threading
import time
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


def iso(ms: int, salesforce: bool = False) -> str:
    at = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}"
    return text + ("+0000" if salesforce else "Z")


def _ms(text: str) -> int:
    text = text.replace("Z", "+00:00")
    if text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    return int(datetime.fromisoformat(text).timestamp() * 1000)


class VendorApi:
    """The server. ``objects[vendor][object]`` are dicts as the vendor returns them; ``queue``
    holds ``(status, headers)`` answers to give to the next requests instead of data."""

    def __init__(self, token: str = "secret-token", page_size: int | None = None) -> None:
        self.token = token
        self.page_size = page_size
        self.hubspot_window = 10_000
        self.objects: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.queue: deque[tuple[int, dict[str, str]]] = deque()
        self.requests: list[tuple[float, str, int]] = []  # (monotonic time, path, status)
        self.lock = threading.Lock()
        # Salesforce's connected app: (client_id, client_secret, refresh_token); each refresh
        # makes a new access token the only one accepted
        self.salesforce_app: tuple[str, str, str] | None = None
        self.refreshes = 0
        self.zendesk_api_token: tuple[str, str] | None = None  # (email, API token)
        # HubSpot associations: (from type, to type) -> from id -> to ids
        self.associations: dict[tuple[str, str], dict[str, list[str]]] = {}
        self._queries: dict[str, tuple[list[dict[str, Any]], int]] = {}
        self._cache: dict[tuple[str, str], Any] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                api._handle(self, None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.headers.get("Content-Type", "").startswith("application/x-www-form"):
                    api._handle(self, {k: v[-1] for k, v in parse_qs(raw.decode()).items()})
                else:
                    api._handle(self, json.loads(raw or b"{}"))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, vendor: str, obj: str, *records: dict[str, Any]) -> None:
        """Add or replace (by id) objects."""
        with self.lock:
            self._cache.pop((vendor, obj), None)
            items = self.objects.setdefault(vendor, {}).setdefault(obj, [])
            for record in records:
                key = record.get("id", record.get("Id"))
                items[:] = [r for r in items if r.get("id", r.get("Id")) != key]
                items.append(record)

    def load(self, vendor: str, obj: str, records: list[dict[str, Any]]) -> None:
        """Replace every object of ``vendor``'s ``obj`` (bulk, for benchmarks)."""
        with self.lock:
            self._cache.pop((vendor, obj), None)
            self.objects.setdefault(vendor, {})[obj] = list(records)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- dispatch ------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, body: Any) -> None:
        url = urlparse(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self.lock:
            queued = self.queue.popleft() if self.queue else None
        if url.path == "/services/oauth2/token":
            status, answer, headers = *self._refresh(body or {}), {}
        elif h.headers.get("Authorization") not in self._accepted():
            status, answer, headers = 401, {"error": "unauthorized"}, {}
            if url.path.startswith("/services/"):  # as Salesforce answers an expired token
                answer = [
                    {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
                ]
        elif queued is not None:
            status, headers = queued
            answer = {"error": "queued answer"}
        else:
            headers = {}
            status, answer = self._route(url.path, query, body)
        with self.lock:
            self.requests.append((time.monotonic(), url.path, status))
        data = json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _accepted(self) -> set[str]:
        found = {f"Bearer {self.token}"}
        if self.zendesk_api_token is not None:
            email, token = self.zendesk_api_token
            found.add("Basic " + base64.b64encode(f"{email}/token:{token}".encode()).decode())
        return found

    def _refresh(self, form: dict[str, str]) -> tuple[int, Any]:
        """Salesforce's token endpoint, ``grant_type=refresh_token``."""
        given = (form.get("client_id"), form.get("client_secret"), form.get("refresh_token"))
        if form.get("grant_type") != "refresh_token" or given != self.salesforce_app:
            return 400, {
                "error": "invalid_grant",
                "error_description": "expired access/refresh token",
            }
        with self.lock:
            self.refreshes += 1
            self.token = f"00Dsf!access-{self.refreshes}"
        return 200, {"access_token": self.token, "instance_url": self.url, "token_type": "Bearer",
                     "id": f"{self.url}/id/00D/005", "issued_at": str(int(time.time() * 1000)),
                     "signature": "sig"}  # fmt: skip

    def associate(self, from_type: str, from_id: str, to_type: str, *to_ids: str) -> None:
        """Associate a HubSpot object with others (a deal with its contacts)."""
        with self.lock:
            found = self.associations.setdefault((from_type, to_type), {})
            found.setdefault(from_id, []).extend(to_ids)

    def _route(self, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if m := re.fullmatch(r"/crm/v3/objects/(\w+)/search", path):
            return self._hubspot(m[1], body or {})
        if m := re.fullmatch(r"/crm/v4/associations/(\w+)/(\w+)/batch/read", path):
            return self._hubspot_associations(m[1], m[2], body or {})
        if m := re.fullmatch(r"/crm/v3/objects/(\w+)", path):
            return self._hubspot_archived(m[1], query)
        if m := re.fullmatch(r"/api/v2/incremental/(\w+)/cursor\.json", path):
            return self._zendesk(m[1], query)
        if m := re.fullmatch(r"/v1/(\w+)", path):
            return self._stripe(m[1], query)
        if path == "/services/data/v59.0/query":
            return self._soql(query.get("q", ""))
        if m := re.fullmatch(r"/services/data/v59\.0/query/([\w-]+)", path):
            return self._soql_more(m[1])
        return 404, {"error": f"no route {path}"}

    def _items(self, vendor: str, obj: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.objects.get(vendor, {}).get(obj, []))

    def _sorted(self, vendor: str, obj: str) -> tuple[list[dict[str, Any]], list[tuple[int, Any]]]:
        """Zendesk's objects by (updated_at, id), and those keys (kept until the next add)."""
        with self.lock:
            found = self._cache.get((vendor, obj))
        if found is None:
            items = self._items(vendor, obj)
            items.sort(key=lambda r: (_ms(r["updated_at"]), r.get("id", 0)))
            found = (items, [(_ms(r["updated_at"]), r.get("id", 0)) for r in items])
            with self.lock:
                self._cache[(vendor, obj)] = found
        return found

    # -- HubSpot: POST search, sorted by the modified property, `after` in the body ------------

    def _hubspot(self, obj: str, body: dict[str, Any]) -> tuple[int, Any]:
        items = [r for r in self._items("hubspot", obj) if not r.get("archived")]
        for group in body.get("filterGroups", []):
            for f in group["filters"]:
                assert f["operator"] == "GTE", f
                items = [r for r in items if _ms(r["updatedAt"]) >= int(f["value"])]
        items.sort(key=lambda r: (_ms(r["updatedAt"]), r["id"]))
        limit = min(int(body.get("limit", 10)), self.page_size or 100)
        start = int(body.get("after") or 0)
        if start >= self.hubspot_window:  # the search API's cap on one query's results
            return 400, {"status": "error", "message": "paging beyond the result window"}
        page = items[start : start + limit]
        out: dict[str, Any] = {"total": len(items), "results": page}
        if start + limit < len(items):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return 200, out

    def _hubspot_associations(self, src: str, dst: str, body: dict[str, Any]) -> tuple[int, Any]:
        """v4 batch read: ``{"inputs": [{"id"}]}`` -> each input's associated objects."""
        with self.lock:
            found = dict(self.associations.get((src, dst), {}))
        inputs = [str(i["id"]) for i in body.get("inputs", [])]
        if len(inputs) > 1000:
            return 400, {"status": "error", "message": "at most 1000 inputs"}
        results = [
            {"from": {"id": i}, "to": [
                {"toObjectId": int(t), "associationTypes": [
                    {"category": "HUBSPOT_DEFINED", "typeId": 3, "label": None}]}
                for t in found[i]]}
            for i in inputs if found.get(i)
        ]  # fmt: skip
        return 200, {"status": "COMPLETE", "results": results}

    def _hubspot_archived(self, obj: str, query: dict[str, str]) -> tuple[int, Any]:
        """The list API with ``archived=true``: archived objects only, paged by ``after``."""
        if query.get("archived") != "true":
            return 400, {"status": "error", "message": "only archived=true is served"}
        items = [r for r in self._items("hubspot", obj) if r.get("archived")]
        items.sort(key=lambda r: r["id"])
        limit = min(int(query.get("limit", 10)), self.page_size or 100)
        start = int(query.get("after") or 0)
        out: dict[str, Any] = {"results": items[start : start + limit]}
        if start + limit < len(items):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return 200, out

    # -- Zendesk: incremental export, cursor-based --------------------------------------------

    def _zendesk(self, obj: str, query: dict[str, str]) -> tuple[int, Any]:
        if "cursor" in query and "start_time" in query:
            return 400, {"error": "InvalidPaginationParameter"}
        items, keys = self._sorted("zendesk", obj)
        if "cursor" in query:  # the cursor: (updated_at ms, id) of the last object returned
            last = tuple(json.loads(base64.urlsafe_b64decode(query["cursor"])))
            items = items[bisect.bisect_right(keys, last) :]
        elif "start_time" in query:
            items = items[bisect.bisect_left(keys, (int(query["start_time"]) * 1000,)) :]
        else:
            return 400, {"error": "start_time or cursor is required"}
        size = self.page_size or 1000
        page = items[:size]
        if page:
            last = [_ms(page[-1]["updated_at"]), page[-1].get("id", 0)]
            cursor = base64.urlsafe_b64encode(json.dumps(last).encode()).decode()
        else:
            cursor = query.get("cursor") or base64.urlsafe_b64encode(b"[0, 0]").decode()
        return 200, {obj: page, "after_cursor": cursor, "end_of_stream": len(items) <= size}

    # -- Stripe: newest first, starting_after + has_more -------------------------------------

    def _stripe(self, obj: str, query: dict[str, str]) -> tuple[int, Any]:
        items = self._items("stripe", obj)
        if "created[gte]" in query:
            items = [r for r in items if r["created"] >= int(query["created[gte]"])]
        items.sort(key=lambda r: (-r["created"], r["id"]))
        if "starting_after" in query:
            ids = [r["id"] for r in items]
            if query["starting_after"] not in ids:
                return 400, {"error": {"type": "invalid_request_error", "param": "starting_after"}}
            items = items[ids.index(query["starting_after"]) + 1 :]
        limit = min(int(query.get("limit", 10)), self.page_size or 100)
        return 200, {"object": "list", "data": items[:limit], "has_more": len(items) > limit}

    # -- Salesforce: SOQL, nextRecordsUrl ----------------------------------------------------

    def _soql(self, soql: str) -> tuple[int, Any]:
        m = re.search(
            r"FROM (\w+)(?: WHERE SystemModstamp >= (\S+))? ORDER BY SystemModstamp, Id$", soql
        )
        if m is None:
            return 400, [{"errorCode": "MALFORMED_QUERY", "message": soql}]
        obj = {"Contact": "contacts", "Lead": "leads", "Opportunity": "opportunities"}[m[1]]
        items = self._items("salesforce", obj)
        if m[2]:
            items = [r for r in items if _ms(r["SystemModstamp"]) >= _ms(m[2])]
        items.sort(key=lambda r: (_ms(r["SystemModstamp"]), r["Id"]))
        return 200, self._soql_page(items, 0)

    def _soql_more(self, locator: str) -> tuple[int, Any]:
        with self.lock:
            found = self._queries.get(locator.rsplit("-", 1)[0])
        if found is None:
            return 400, [{"errorCode": "INVALID_QUERY_LOCATOR"}]
        return 200, self._soql_page(found[0], int(locator.rsplit("-", 1)[1]))

    def _soql_page(self, items: list[dict[str, Any]], start: int) -> dict[str, Any]:
        size = self.page_size or 2000
        out: dict[str, Any] = {"totalSize": len(items), "done": start + size >= len(items),
                               "records": items[start : start + size]}  # fmt: skip
        if not out["done"]:
            with self.lock:
                locator = f"01g{len(self._queries):06d}"
                self._queries[locator] = (items, 0)
            out["nextRecordsUrl"] = f"/services/data/v59.0/query/{locator}-{start + size}"
        return out


def person(vendor: str, n: int, email: str, at_ms: int, **extra: Any) -> tuple[str, dict[str, Any]]:
    """A person object of ``vendor`` (contacts, users, customers) as its API returns it."""
    if vendor == "hubspot":
        return "contacts", {"id": str(n), "createdAt": iso(at_ms), "updatedAt": iso(at_ms),
                            "properties": {"email": email, "firstname": f"P{n}", **extra}}  # fmt: skip
    if vendor == "zendesk":
        return "users", {"id": n, "email": email, "name": f"P{n}", "created_at": iso(at_ms),
                         "updated_at": iso(at_ms), **extra}  # fmt: skip
    if vendor == "stripe":
        return "customers", {"id": f"cus_{n}", "object": "customer", "email": email,
                             "created": at_ms // 1000, **extra}  # fmt: skip
    return "contacts", {"Id": f"003{n:015d}", "Email": email, "FirstName": f"P{n}",
                        "CreatedDate": iso(at_ms, True), "SystemModstamp": iso(at_ms, True),
                        **extra}  # fmt: skip
