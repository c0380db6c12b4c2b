"""segflow.cli (see docs/architecture.md)."""
