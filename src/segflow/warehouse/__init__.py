"""segflow.warehouse (see docs/architecture.md)."""
