"""segflow.identity (see docs/architecture.md)."""
