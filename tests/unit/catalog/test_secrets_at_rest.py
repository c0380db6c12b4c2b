"""Write keys and API tokens are stored hashed: no byte of the data directory holds them."""

from __future__ import annotations

from pathlib import Path

from segflow.catalog.tokens import TokenStore
from segflow.collect.catalog import SourceCatalog


def test_write_keys_and_tokens_are_not_stored_in_clear(tmp_path: Path) -> None:
    catalog = SourceCatalog(tmp_path / "catalog.sqlite")
    tokens = TokenStore(tmp_path / "catalog.sqlite")
    source, write_key = catalog.create("web")
    token = tokens.create("admin", name="ci")
    secret = token.rsplit("_", 1)[1]
    assert catalog.authenticate(write_key) == source  # usable...
    assert tokens.verify(token) is not None
    for path in tmp_path.iterdir():  # ...while the database and its WAL hold neither
        data = path.read_bytes()
        assert write_key.encode() not in data, path.name
        assert secret.encode() not in data, path.name
    catalog.close()
    tokens.close()
    for path in tmp_path.iterdir():  # nor after the WAL is checkpointed into the file
        data = path.read_bytes()
        assert write_key.encode() not in data and secret.encode() not in data, path.name
