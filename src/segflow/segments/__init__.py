"""Segment and computed-trait definitions: the versioned catalog, YAML as code, and the service
that the API and CLI call (create, edit, preview, members)."""
