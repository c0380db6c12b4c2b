"""What every console page shares: the session check, CSRF, forms and rendering.

A page handler is ``fn(ctx, request, form) -> Response`` wrapped by :func:`Console.page`,
which (1) loads the signed session cookie or redirects to the login page, (2) refuses a role
below the page's with 403, (3) on POST checks the session's CSRF token (form field ``csrf`` or
header ``X-CSRF-Token``) and refuses a missing or wrong one with 403, and (4) runs the handler
in a thread (the stores it reads block).
"""

from __future__ import annotations

import hmac
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from segflow.catalog.tokens import ROLES
from segflow.serving.deps import ApiDeps
from segflow.serving.errors import refusal
from segflow.ui.charts import ChartCache
from segflow.ui.fmt import FILTERS
from segflow.ui.session import COOKIE, Session, Signer

TEMPLATES = Path(__file__).parent / "templates"
Form = dict[str, str]
Handler = Callable[["Console", Request, Form], Response]
Endpoint = Callable[[Request], Awaitable[Response]]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


async def read_form(request: Request) -> Form:
    """The urlencoded form (or JSON object) of a POST, last value per field."""
    if request.method != "POST":
        return {}
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = msgspec.json.decode(raw) if raw else {}
        except (msgspec.DecodeError, RecursionError):
            data = {}  # not a form: each page says which field is missing
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    pairs = urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
    return dict(pairs)


@dataclass
class Console:
    """The console's dependencies: the serve process's parts, templates and the signer."""

    deps: ApiDeps
    signer: Signer
    env: jinja2.Environment
    charts: ChartCache = field(default_factory=ChartCache)  # the segment list's size charts

    @classmethod
    def create(cls, deps: ApiDeps, signer: Signer) -> Console:
        return cls(deps, signer, _environment())

    def session(self, request: Request) -> Session | None:
        session = self.signer.load(request.cookies.get(COOKIE), now_ms=now_ms())
        if session is None or not self._live(session.token_id):
            return None
        if self.deps.tokens.session_ended(session.session_id):
            return None  # logged out: a copy of the cookie must not outlive the logout
        return session

    def _live(self, token_id: str) -> bool:
        info = self.deps.tokens.get(token_id)
        return info is not None and info.revoked_ms is None

    def label(self, profile_id: str) -> str:
        """A profile as people know it: its user id or email, else its first identifier, else
        its id (what the members list, previews and the delivery log show, linked to it)."""
        profile = self.deps.reader.get(profile_id)
        ids = {} if profile is None else {e.type: e.value for e in reversed(profile.identities)}
        return ids.get("user_id") or ids.get("email") or next(iter(ids.values()), profile_id)

    def labels(self, profile_ids: Iterable[str]) -> dict[str, str]:
        """:meth:`label` of each distinct id."""
        return {pid: self.label(pid) for pid in dict.fromkeys(profile_ids)}

    def render(
        self, request: Request, template: str, status: int = 200, **values: Any
    ) -> HTMLResponse:
        session: Session | None = getattr(request.state, "session", None)
        html = self.env.get_template(template).render(
            request=request, session=session, path=request.url.path, **values
        )
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def page(self, role: str, fn: Handler) -> Endpoint:
        """``fn`` behind the session, role and CSRF checks."""

        async def endpoint(request: Request) -> Response:
            session = self.session(request)
            if session is None:
                return _to_login(request)
            request.state.session = session
            if ROLES.index(session.role) < ROLES.index(role):
                return self.refuse(request, f"this page needs the {role} role")
            form = await read_form(request)
            if request.method == "POST" and not _csrf_ok(request, form, session):
                return self.refuse(request, "the form's CSRF token is missing or wrong")
            return await run_in_threadpool(fn, self, request, form)

        return endpoint

    def actor(self, request: Request) -> str:
        """Who is logged in, for the audit log: ``token:<id> (<name>)``, as the API writes it."""
        session: Session = request.state.session
        info = self.deps.tokens.get(session.token_id)
        name = info.name if info is not None else ""
        return f"token:{session.token_id}" + (f" ({name})" if name else "")

    def record(self, request: Request, action: str, target: str, before: Any, after: Any) -> None:
        """Write a change made in the console to the audit log."""
        if self.deps.audit is not None:
            self.deps.audit.record(self.actor(request), action, target, before, after)

    def refuse(self, request: Request, reason: str) -> Response:
        if request.headers.get("accept", "").startswith("application/json"):
            return refusal(403, "forbidden", reason)
        return self.render(request, "error.html", status=403, title="Forbidden", reason=reason)


_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _csrf_ok(request: Request, form: Mapping[str, str], session: Session) -> bool:
    sent = form.get("csrf") or request.headers.get("x-csrf-token") or ""
    return hmac.compare_digest(sent.encode(), session.csrf.encode())


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET" or request.headers.get("accept", "").startswith("application/json"):
        return refusal(401, "unauthorized", "log in first")
    query = urllib.parse.urlencode({"next": target})
    return RedirectResponse(f"/console/login?{query}", status_code=303)


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)
