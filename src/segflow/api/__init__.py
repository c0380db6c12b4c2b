"""segflow.api (see docs/architecture.md)."""
