"""The ``segflow serve`` process: the collector, mounted apps and background services."""

from segflow.server.app import ServeApp, build_app, build_collector
from segflow.server.runtime import Runtime
from segflow.server.services import Service, ServiceGroup

__all__ = ["Runtime", "ServeApp", "Service", "ServiceGroup", "build_app", "build_collector"]
