"""segflow.server (see docs/architecture.md)."""
