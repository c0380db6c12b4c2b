"""segflow.activate (see docs/architecture.md)."""
