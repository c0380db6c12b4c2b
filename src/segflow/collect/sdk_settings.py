"""The settings documents SDKs fetch at start-up, pointing them back at segflow.

- analytics.js (``@segment/analytics-next``) and the mobile SDKs (analytics-kotlin,
  analytics-swift, analytics-android, analytics-ios) GET ``{cdn}/v1/projects/{writeKey}/settings``
  and send events to ``integrations["Segment.io"].apiHost`` (with ``protocol``, analytics-next).
- RudderStack's JavaScript SDK GETs ``{configUrl}/sourceConfig`` with the write key as Basic
  auth user name.

>>> doc = segment_settings("wk", "collector.example:8080", "http")
>>> doc["integrations"]["Segment.io"]["apiHost"]
'collector.example:8080/v1'
"""

from __future__ import annotations

from typing import Any


def segment_settings(write_key: str, host: str, scheme: str) -> dict[str, Any]:
    """The ``/v1/projects/{writeKey}/settings`` document."""
    api_host = f"{host}/v1"
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": scheme,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def rudderstack_source_config(source_id: str, name: str, write_key: str) -> dict[str, Any]:
    """The ``/sourceConfig`` document of RudderStack's SDKs (no device-mode destinations)."""
    return {
        "isHosted": False,
        "source": {
            "id": source_id,
            "name": name,
            "writeKey": write_key,
            "enabled": True,
            "config": {},
            "destinations": [],
        },
    }
