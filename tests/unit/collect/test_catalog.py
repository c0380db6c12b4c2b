"""The source catalog behaves the same on SQLite and on shared PostgreSQL (``catalog_target``)."""

from __future__ import annotations

import pytest

from segflow.collect.catalog import SourceCatalog, SourceConfig
from segflow.collect.exceptions import SourceExists, UnknownSource


def test_sources_are_created_found_and_authenticated(catalog: SourceCatalog) -> None:
    web, key = catalog.create("web")
    ios, _ = catalog.create("ios", SourceConfig(event_names={"Order Completed": ["order"]}))
    assert catalog.authenticate(key) == web
    assert catalog.authenticate(key + "x") is None and catalog.authenticate(None) is None
    assert catalog.get("ios") == ios
    assert catalog.get("ios").config.event_names == {"Order Completed": ["order"]}
    assert [s.name for s in catalog.list()] == ["ios", "web"]
    with pytest.raises(SourceExists):
        catalog.create("web")
    with pytest.raises(UnknownSource):
        catalog.get("android")


def test_configure_replaces_the_config(catalog: SourceCatalog) -> None:
    _, key = catalog.create("web")
    config = SourceConfig(event_names={"Signed Up": ["signup"]})
    assert catalog.configure("web", config).config == config
    authenticated = catalog.authenticate(key)
    assert authenticated is not None and authenticated.config == config


def test_violations_add_up_per_event_and_kind(catalog: SourceCatalog) -> None:
    web, _ = catalog.create("web")
    catalog.record_violations(web.id, {("Signed Up", "unplanned"): 2, ("Order", "type"): 1})
    catalog.record_violations(web.id, {("Signed Up", "unplanned"): 3})
    catalog.record_violations(web.id, {})
    got = [(v.event, v.violation, v.count) for v in catalog.violations("web")]
    assert got == [("Order", "type", 1), ("Signed Up", "unplanned", 5)]
    assert all(v.last_seen_ms == 1_700_000_000_000 for v in catalog.violations("web"))
