"""An ASGI factory for running segflow under any ASGI server (granian, hypercorn, ...).

Settings come from the environment (``SEGFLOW_<SECTION>__<KEY>``) and ``SEGFLOW_CONFIG``
(a TOML file), e.g.::

    SEGFLOW_SERVER__DATA_DIR=./data granian --interface asgi --factory segflow.server.asgi:create_app
"""

from __future__ import annotations

import os

import msgspec

from segflow.config import Settings, load_settings
from segflow.server import compose
from segflow.server.app import ServeApp, build_app
from segflow.serving.runtime import Runtime
from segflow.telemetry.logs import configure_logging

SETTINGS_ENV = "SEGFLOW_SETTINGS_JSON"


def create_app() -> ServeApp:
    """The serve app on the data directory the environment names (``segflow serve
    --http-server granian`` passes its resolved settings in ``SEGFLOW_SETTINGS_JSON``)."""
    encoded = os.environ.get(SETTINGS_ENV)
    if encoded:
        settings = msgspec.json.decode(encoded, type=Settings)
    else:
        settings = load_settings(os.environ.get("SEGFLOW_CONFIG"))
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    runtime = Runtime.open(settings)
    parts = compose.assemble(runtime)
    return build_app(runtime, services=parts.services, mounts=parts.mounts, own_process=True)
