"""``/api/v1/docs``: the OpenAPI document as a page where every route can be tried.

The page is rendered on the server from the document (readable without JavaScript); a small
script (``static/apidocs.js``, no dependencies) adds a token field and a *Send* button to each
route and shows the answer. Nothing is loaded from elsewhere, so it works offline; the page is
sent with a ``Content-Security-Policy`` that allows only its own script and stylesheet.

>>> from segflow.api.openapi import document
>>> html = page(document([("GET", "/api/v1/segments/{name}")]))
>>> 'data-path="/api/v1/segments/{name}"' in html and 'name="name"' in html
True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

STATIC = Path(__file__).parent / "static"
ASSETS = "/api/v1/docs/static"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    role = op.get("x-role", "none")
    params = "".join(
        f'<label>{escape(p["name"])} <input name="{escape(p["name"])}" data-param="path" '
        f"required></label>"
        for p in op.get("parameters", [])
    )
    media = op.get("requestBody", {}).get("content", {}).get("application/json")
    body = ""
    if media is not None:
        example = json.dumps(media.get("example", {}), indent=2, ensure_ascii=False)
        body = (
            f'<label class="wide">JSON body <span class="muted">({escape(media["schema"]["description"])})'
            f'</span><textarea name="body" rows="5" spellcheck="false">{escape(example)}</textarea></label>'
        )
    query = '<label class="wide">query <input name="query" placeholder="limit=10"></label>'
    return (
        f'<details class="op" id="{escape(op["operationId"])}"><summary>'
        f'<b class="m {method}">{method.upper()}</b> <code>{escape(path)}</code> '
        f'<span>{escape(op["summary"])}</span> <span class="role">{escape(role)}</span></summary>'
        f'<form class="try" data-method="{method.upper()}" data-path="{escape(path)}">'
        f"{params}{query if method == 'get' else ''}{body}"
        f'<button type="submit">Send</button></form><pre class="answer" hidden></pre></details>'
    )


def page(doc: dict[str, Any]) -> str:
    """The page of an OpenAPI document built by :func:`segflow.api.openapi.document`."""
    groups: dict[str, list[str]] = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            groups.setdefault(op["tags"][0], []).append(_operation(method, path, op))
    sections = "".join(
        f"<section><h2>{escape(tag)}</h2>{''.join(items)}</section>"
        for tag, items in groups.items()
    )
    error = json.dumps(doc["components"]["schemas"]["Error"]["example"], indent=2)
    return str(
        Markup(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<title>segflow admin API</title>"
            f"<link rel='icon' href='{ASSETS}/favicon.svg' type='image/svg+xml'>"
            f"<link rel='stylesheet' href='{ASSETS}/apidocs.css'>"
            f"<script src='{ASSETS}/apidocs.js' defer></script></head><body>"
            f"<h1>segflow admin API <span class='muted'>{escape(doc['info']['version'])}</span></h1>"
            "<p>Every route needs <code>Authorization: Bearer &lt;token&gt;</code> with the role "
            "shown beside it (<code>segflow tokens create --role read|editor|admin</code>). "
            "Machine-readable: <a href='/api/v1/openapi.json'>openapi.json</a>. "
            "Every error has one shape:</p>"
            f"<pre>{escape(error)}</pre>"
            "<form id='auth' class='auth'><label>API token "
            "<input id='token' type='password' autocomplete='off' placeholder='sft_...'></label>"
            "<span class='muted'>kept in this tab only; sent to this server only</span></form>"
        )
        + Markup(sections)
        + Markup("</body></html>")
    )
