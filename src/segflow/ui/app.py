"""The web console at ``/console``: one Starlette app from the serve process's parts.

======================  ======  ==============================================================
/console                read    overview: event rate, events by source and name, lag, live feed
/console/segments       read    segments, sizes over time; the editor (save needs editor)
/console/profiles       read    search by any identifier; a profile, its links, scores, history
/console/clusters       read    the 2-D map and cluster cards (rename needs editor)
/console/models         read    model runs, metrics, calibration and lift charts
/console/destinations   read    delivery stats, log, dead letters (replay needs editor)
/console/sources        admin   sources (new: the write key, once), violations, refused events
/console/tokens         admin   API tokens: create (the secret, shown once), revoke
/console/login, logout  -       log in with an API token (``segflow tokens create``)
/console/static/...     -       the stylesheet and the script (no CDN: works offline)
======================  ======  ==============================================================

Mount it beside the collector with ``KeepPath``: its routes carry their full paths.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from segflow.serving.deps import ApiDeps
from segflow.serving.limits import BodyLimit
from segflow.ui.login import build_login
from segflow.ui.pages import access as access
from segflow.ui.pages import activity as activity
from segflow.ui.pages import models as models
from segflow.ui.pages import overview as overview
from segflow.ui.pages import profiles as profiles
from segflow.ui.pages import segments as segments
from segflow.ui.session import Signer, load_secret
from segflow.ui.web import Console

STATIC = Path(__file__).parent / "static"


def build_console(deps: ApiDeps) -> Starlette:
    """The console app over ``deps`` (the admin API's dependencies)."""
    console = Console.create(deps, Signer(load_secret(deps.runtime.settings.data_path)))
    show, login, logout = build_login(console)
    routes = [
        Route("/console/login", show, methods=["GET"]),
        Route("/console/login", login, methods=["POST"]),
        Route("/console/logout", logout, methods=["POST"]),
        *overview.routes(console),
        *segments.routes(console),
        *profiles.routes(console),
        *models.routes(console),
        *activity.routes(console),
        *access.routes(console),
        Mount("/console/static", StaticFiles(directory=STATIC), name="static"),
    ]
    limit = Middleware(BodyLimit, max_bytes=deps.runtime.settings.api.max_body_bytes)
    return Starlette(routes=routes, middleware=[limit])
