"""segflow.profiles (see docs/architecture.md)."""
