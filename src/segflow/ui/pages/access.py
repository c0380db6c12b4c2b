"""Access (admin only): API tokens (create, shown once; revoke) and new sources (the write key,
shown once). The same services as ``/api/v1/tokens`` and ``/api/v1/sources``, audited."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from segflow.catalog import tokens as token_service
from segflow.catalog.tokens import ROLES
from segflow.errors import SegflowError
from segflow.ui.pages.activity import sources
from segflow.ui.web import Console, Form, redirect


def tokens(console: Console, request: Request, form: Form, **shown: object) -> Response:
    shown.setdefault("created", None)
    shown.setdefault("error", None)
    return console.render(
        request, "tokens.html", title="Tokens", tokens=console.deps.tokens.list(), roles=ROLES,
        status=400 if shown["error"] else 200, **shown,
    )  # fmt: skip


def create_token(console: Console, request: Request, form: Form) -> Response:
    body = {"role": form.get("role", ""), "name": form.get("name", "")}
    try:
        info, token = token_service.issue(
            console.deps.tokens, console.deps.audit, console.actor(request), body
        )
    except SegflowError as exc:
        return tokens(console, request, form, error=exc.message)
    return tokens(console, request, form, created={"info": info, "token": token})


def revoke_token(console: Console, request: Request, form: Form) -> Response:
    token_id = request.path_params["token_id"]
    try:
        token_service.revoke(
            console.deps.tokens, console.deps.audit, console.actor(request), token_id
        )
    except SegflowError as exc:
        return tokens(console, request, form, error=exc.message)
    session = request.state.session
    return redirect("/console/login" if token_id == session.token_id else "/console/tokens")


def create_source(console: Console, request: Request, form: Form) -> Response:
    name = form.get("name", "").strip()
    if not name:
        return sources(console, request, form, error="a source needs a name")
    try:
        source, key = console.deps.runtime.catalog.create(name)
    except SegflowError as exc:
        return sources(console, request, form, error=exc.message)
    console.record(request, "source.create", source.name, None, {"id": source.id, "name": name})
    return sources(console, request, form, created={"source": source, "write_key": key})


def routes(console: Console) -> list[Route]:
    return [
        Route("/console/tokens", console.page("admin", tokens), methods=["GET"]),
        Route("/console/tokens", console.page("admin", create_token), methods=["POST"]),
        Route(
            "/console/tokens/{token_id}/revoke",
            console.page("admin", revoke_token),
            methods=["POST"],
        ),
        Route("/console/sources", console.page("admin", create_source), methods=["POST"]),
    ]
