"""Logging in with an API token, and out.

The login form is protected by a double-submit token: ``GET /console/login`` sets a random
``segflow_login_csrf`` cookie (HttpOnly, SameSite=Strict) and puts the same value in the form;
``POST`` refuses a form whose value differs. Logging out is an ordinary CSRF-checked POST that
ends the session on the server (its id is recorded as ended until the cookie would have
expired), not only in the browser.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from segflow.ui.session import COOKIE, LIFETIME_MS, LOGIN_COOKIE, Session
from segflow.ui.web import Console, Endpoint, Form, now_ms, read_form, redirect


def secure(request: Request) -> bool:
    """Cookies get ``Secure`` over HTTPS (behind a TLS proxy too: uvicorn takes the scheme from
    ``X-Forwarded-Proto`` of trusted proxies); plain HTTP would not send them back."""
    return request.url.scheme == "https"


def _next(value: str | None) -> str:
    ok = value and value.startswith("/console") and not value.startswith("/console/login")
    return value if ok and value else "/console"


def _form(console: Console, request: Request, error: str | None, status: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    response = console.render(
        request,
        "login.html",
        status=status,
        title="Log in",
        login_csrf=token,
        next=_next(request.query_params.get("next")),
        error=error,
    )
    response.set_cookie(
        LOGIN_COOKIE, token, max_age=3600, path="/console", httponly=True,
        samesite="strict", secure=secure(request),
    )  # fmt: skip
    return response


def build_login(console: Console) -> tuple[Endpoint, Endpoint, Endpoint]:
    """The login page, the login POST and the logout POST endpoints."""

    async def show(request: Request) -> Response:
        if console.session(request) is not None:
            return redirect(_next(request.query_params.get("next")))
        return _form(console, request, None)

    async def login(request: Request) -> Response:
        form = await read_form(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(form.get("csrf", ""), expected):
            return _form(console, request, "the form expired; please try again", 403)
        info = console.deps.tokens.verify(form.get("token", "").strip())
        if info is None:
            return _form(console, request, "that token is not valid (or was revoked)", 401)
        session = Session.new(info.token_id, info.role, now_ms=now_ms())
        response = redirect(_next(form.get("next")))
        response.set_cookie(
            COOKIE, console.signer.dump(session), max_age=LIFETIME_MS // 1000, path="/console",
            httponly=True, samesite="strict", secure=secure(request),
        )  # fmt: skip
        response.delete_cookie(LOGIN_COOKIE, path="/console")
        return response

    def logout(console: Console, request: Request, form: Form) -> Response:
        session: Session = request.state.session
        console.deps.tokens.end_session(session.session_id, session.expires_ms)
        response = redirect("/console/login")
        response.delete_cookie(COOKIE, path="/console")
        return response

    return show, login, console.page("read", logout)
