"""Definitions and their watcher behave the same on SQLite and on shared PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from segflow.catalog.db import CatalogTarget
from segflow.errors import NotFoundError, ValidationError
from segflow.rules import SegmentProgram
from segflow.segments.service import DefinitionWatcher, SegmentService
from segflow.segments.store import DefinitionStore


@pytest.fixture
def store(catalog_target: CatalogTarget) -> Iterator[DefinitionStore]:
    store = DefinitionStore(catalog_target)
    yield store
    store.close()


def test_every_edit_is_a_version_and_a_delete_a_tombstone(store: DefinitionStore) -> None:
    assert store.put("segment", "dormant", "not did any event in last 14 days").version == 1
    assert store.put("segment", "dormant", "not did any event in last 21 days", "d").version == 2
    store.put("trait", "orders", 'count of "Order Completed"')
    assert [(d.name, d.version, d.description) for d in store.list("segment")] == [
        ("dormant", 2, "d")
    ]
    store.delete("segment", "dormant")
    assert store.list("segment") == []
    with pytest.raises(NotFoundError):
        store.get("segment", "dormant")
    history = store.history("segment", "dormant")
    assert [(d.version, d.rule) for d in history] == [
        (1, "not did any event in last 14 days"),
        (2, "not did any event in last 21 days"),
        (3, ""),
    ]
    assert store.put("segment", "dormant", "not did any event in last 7 days").version == 4
    assert store.get("trait", "orders").rule == 'count of "Order Completed"'
    assert history[0].created_at_ms > 1_600_000_000_000  # milliseconds fit the column


def test_bad_names_are_refused(store: DefinitionStore) -> None:
    with pytest.raises(ValidationError):
        store.put("segment", "Not A Slug", "did any event")


def test_the_watcher_applies_changes_once(store: DefinitionStore) -> None:
    service = SegmentService(store)
    applied: list[SegmentProgram] = []
    watcher = DefinitionWatcher(service, applied.append)
    assert watcher.refresh() and sorted(applied[-1].plan.order) == []
    assert not watcher.refresh()
    service.put_segment("buyers", 'did "Order Completed"')
    assert watcher.refresh() and sorted(applied[-1].plan.order) == ["buyers"]
    assert not watcher.refresh()
    service.delete("segment", "buyers")
    assert watcher.refresh() and sorted(applied[-1].plan.order) == []
