"""segflow.ml (see docs/architecture.md)."""
