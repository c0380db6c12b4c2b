"""segflow.collect (see docs/architecture.md)."""
