"""The ``segflow serve`` process: the collector, mounted apps and background services."""

from segflow.server.app import ServeApp, build_app, build_collector
from segflow.server.services import Service, ServiceGroup
from segflow.serving.runtime import Runtime

__all__ = ["Runtime", "ServeApp", "Service", "ServiceGroup", "build_app", "build_collector"]
