"""segflow.stream (see docs/architecture.md)."""
