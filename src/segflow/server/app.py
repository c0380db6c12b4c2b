"""The serve process's ASGI app: the collector at the root, more apps mounted by prefix,
and the lifespan that starts and stops the background services.

>>> import tempfile
>>> from segflow.config import load_settings
>>> from segflow.serving.runtime import Runtime
>>> rt = Runtime.open(load_settings(overrides={"server": {"data_dir": tempfile.mkdtemp()}}))
>>> app = build_app(rt, services=[], mounts={"/admin": build_collector(rt)})
>>> callable(app)
True
>>> rt.close()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from segflow.activate.secretbox import SecretBox
from segflow.collect.app import CollectorApp
from segflow.collect.asgi import ASGIApp, Receive, Scope, Send
from segflow.server.heap import settle_heap
from segflow.server.requests import RequestContext
from segflow.server.roles import not_found, parse_roles
from segflow.server.services import Service, ServiceGroup
from segflow.serving.runtime import Runtime


def build_collector(runtime: Runtime) -> CollectorApp:
    settings = runtime.settings
    box = SecretBox.open(settings.data_path, settings.activate.secrets_key)  # webhook secrets
    return CollectorApp(
        runtime.ingestor,
        clock=runtime.clock,
        secrets=box,
        shared_limits=settings.data_path / "run" / "buckets-collect.bin",
    )


class KeepPath:
    """Wraps a mounted app that routes on full paths (``/api/v1/...``): it gets the request's
    scope unchanged instead of the path below its prefix."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class ServeApp:
    """Dispatches by path prefix (longest first) and runs the lifespan."""

    def __init__(
        self,
        runtime: Runtime,
        root: ASGIApp,
        mounts: Mapping[str, ASGIApp],
        services: Sequence[Service],
        gc_threshold: int | None = None,
    ) -> None:
        self.runtime = runtime
        self.gc_threshold = gc_threshold  # None: the process's collector is left alone
        self.root = root
        self.mounts = sorted(
            ((p.rstrip("/"), a) for p, a in mounts.items()), key=lambda m: -len(m[0])
        )
        self.services = ServiceGroup(services)
        self._http = RequestContext(self._dispatch)  # request ids, latency, access log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self._http(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        for prefix, app in self.mounts:
            if path == prefix or path.startswith(prefix + "/"):
                if isinstance(app, KeepPath):
                    await app(scope, receive, send)
                    return
                child = dict(scope)
                child["root_path"] = scope.get("root_path", "") + prefix
                child["path"] = path[len(prefix) :] or "/"
                await app(child, receive, send)
                return
        await self.root(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.services.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                if self.gc_threshold is not None:  # start-up is over (services included)
                    settle_heap(self.gc_threshold)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.services.stop()
                self.runtime.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_app(
    runtime: Runtime,
    *,
    services: Sequence[Service] = (),
    mounts: Mapping[str, ASGIApp] | None = None,
    own_process: bool = False,
) -> ServeApp:
    """The whole serve app: collector at ``/``, ``mounts`` (e.g. ``{"/api": admin_app}``)
    under their prefixes, ``services`` started and stopped with the server. The runtime's
    stores are closed at shutdown, after the services stop. ``own_process``: the process is
    the server's alone (``segflow serve``, the granian factory), so once started the app tunes
    its garbage collector (:mod:`segflow.server.heap`); an app embedded in another process
    (tests) leaves it alone."""
    collect = "collect" in parse_roles(runtime.settings.server.roles)
    root = build_collector(runtime) if collect else not_found
    threshold = runtime.settings.server.gc_threshold if own_process else None
    return ServeApp(runtime, root, mounts or {}, services, gc_threshold=threshold)
