"""segflow.rules (see docs/architecture.md)."""
